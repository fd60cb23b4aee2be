"""The benchmark scripts run end to end on tiny settings and write their tables."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inference_speed_quick_writes_a_row_per_model_and_path(tmp_path):
    pytest.importorskip("cv2")  # the OpenCV rows and the machine description need it
    script = load_script("inference_speed")
    models = ["bicubic", "cnn", "rescnn", "cv2-cubic"]
    if (script.PEERS / "ESPCN_x4.pb").is_file():
        models.append("espcn")
    paths = list(dict.fromkeys(["fp32", "bf16", script.auto_path()]))  # auto: fast-fp32 on CPUs without bf16
    argv = ["--quick", "--tiny-models", "--untiled-limit-gib", "0", "--models", *models, "--paths", *paths,
            "--fidelity-sets", "none", "--out", str(tmp_path)]  # fidelity on crops is noise: tested below
    code = script.main(argv)  # a zero untiled limit skips the untiled large run: one child process fewer

    results = json.loads((tmp_path / "inference_speed.json").read_text())
    table = (tmp_path / "inference_speed.md").read_text()
    assert code == 0
    expected = [(m, p) for m in models for p in (paths if m in ("cnn", "rescnn") else
                                                 ["fp32"] if m == "bicubic" else ["opencv"])]
    assert [(row["model"], row["path"]) for row in results["speed"]] == expected
    for row in results["speed"]:
        assert row["status"] == "ok", row
        assert row["output"] == [4 * results["settings"]["size"]] * 2
        assert row["median_s"] > 0 and row["mp_per_s"] > 0 and row["peak_rss_mib"] > 0
        assert f"| {row['model']} | {row['path']} |" in table
        if row["model"] in ("cnn", "rescnn"):
            assert row["gflops"] > 0 and 0 < row["peak_share"]
    peak = results["conv_peak"]
    assert peak["status"] == "ok" and set(peak["gflops"]) == {"fp32", "bf16", "fp16"}
    assert all(value > 0 for value in peak["gflops"].values())
    tiled, untiled = results["large"]
    assert tiled["status"] == "ok" and tiled["tile"] and tiled["within_limit"] and tiled["mp_per_s"] > 0
    assert untiled["status"] == "skipped" and "predicted" in untiled["reason"]
    assert results["machine"]["cpu"] and results["machine"]["torch"]


def test_inference_speed_checks_fidelity_of_the_shipped_weights(tmp_path, shared_data):
    script = load_script("inference_speed")
    args = script.parse_args(["--quick", "--paths", "fp32", "bf16", "--benchmarks", str(shared_data / "benchmarks")])
    rows = script.fidelity_rows(args)
    from superres.weights import catalogue

    assert [(r["weights"], r["path"]) for r in rows] == [(info.name, "bf16") for info in catalogue()]
    for row in rows:
        assert set(row["delta_psnr_y"]) == set(row["pixels_over_2"]) == {"set5", "set14"}
        assert all(0 <= share <= 1 for share in row["pixels_over_2"].values())
        expected = "camera" if "-x1-" in row["weights"] else "bicubic"
        expected = "div2k-unknown" if "unknown" in row["weights"] else expected
        assert row["degradation"] == expected


def test_video_fps_times_every_model_and_precision(tmp_path):
    script = load_script("video_fps")
    rows = script.main(["--device", "cpu", "--size", "24x16", "--frames", "2", "--warmup", "1",
                        "--models", "cnn", "--precisions", "fp32", "bf16", "--out", str(tmp_path)])
    assert [(r["precision"], r["input"]) for r in rows] == [("fp32", [24, 16]), ("bf16", [24, 16])]
    assert all(r["fps"] > 0 and len(r["seconds"]) == 2 for r in rows)
    from superres.weights import load_model

    assert f"| {load_model('cnn').info.name} | bf16 |" in (tmp_path / "video_fps_cpu.md").read_text()
