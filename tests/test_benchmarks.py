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


def test_inference_speed_quick_writes_a_row_per_model(tmp_path):
    pytest.importorskip("cv2")  # the OpenCV rows and the machine description need it
    script = load_script("inference_speed")
    models = ["bicubic", "cnn", "rescnn", "cv2-cubic"]
    if (script.PEERS / "ESPCN_x4.pb").is_file():
        models.append("espcn")
    argv = ["--quick", "--tiny-models", "--untiled-limit-gib", "0", "--models", *models, "--out", str(tmp_path)]
    code = script.main(argv)  # a zero untiled limit skips the untiled large run: one child process fewer

    results = json.loads((tmp_path / "inference_speed.json").read_text())
    table = (tmp_path / "inference_speed.md").read_text()
    assert code == 0
    assert [row["model"] for row in results["speed"]] == models
    for row in results["speed"]:
        assert row["status"] == "ok", row
        assert row["output"] == [4 * results["settings"]["size"]] * 2
        assert row["median_s"] > 0 and row["mp_per_s"] > 0 and row["peak_rss_mib"] > 0
        assert f"| {row['model']} |" in table
    tiled, untiled = results["large"]
    assert tiled["status"] == "ok" and tiled["tile"] and tiled["within_limit"] and tiled["mp_per_s"] > 0
    assert untiled["status"] == "skipped" and "predicted" in untiled["reason"]
    assert results["machine"]["cpu"] and results["machine"]["torch"]
