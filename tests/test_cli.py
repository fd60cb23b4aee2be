"""The `superres` command, run in-process on tiny images and tiny models."""

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from superres.cli import main


def photo(size=(24, 16), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_upscale_keeps_16_bit_grayscale(tmp_path, capsys):
    src = tmp_path / "gray16.png"
    Image.fromarray((np.arange(12 * 10).reshape(10, 12) * 500).astype(np.uint16)).save(src)
    code, _, err = run(capsys, "upscale", src, "-o", tmp_path / "out.png", "--model", "bicubic")
    assert code == 0, err
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (48, 40) and out.mode in ("I;16", "I;16B", "I")
        assert np.asarray(out).max() > 255  # 16-bit values survived


def test_upscale_keeps_alpha_with_a_model(tmp_path, capsys, tiny_weights):
    rgba = np.dstack([photo(), np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (16, 1))])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    code, _, err = run(capsys, "upscale", tmp_path / "rgba.png", "-o", tmp_path / "out.png", "--model", tiny_weights)
    assert code == 0, err
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == (96, 64) and out.mode == "RGBA"
        alpha = np.asarray(out)[..., 3].astype(int)
        assert alpha[:, 0].mean() < 30 and alpha[:, -1].mean() > 225  # the alpha ramp was upscaled, not lost


def test_upscale_applies_exif_orientation(tmp_path, capsys):
    image = Image.fromarray(photo((24, 16)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    code, _, err = run(capsys, "upscale", tmp_path / "rotated.jpg", "-o", tmp_path / "out.jpg", "--model", "bicubic")
    assert code == 0, err
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (64, 96)  # upright: 16 x 24 displayed, times 4
        assert out.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"])
def test_a_bad_file_is_one_line_exit_2_and_no_output(tmp_path, capsys, content):
    (tmp_path / "bad.png").write_bytes(content)
    code, out, err = run(capsys, "upscale", tmp_path / "bad.png", "-o", tmp_path / "out.png", "--model", "bicubic")
    assert code == 2
    assert err.startswith("superres: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.png").exists() and not list(tmp_path.glob(".*partial*"))


def test_folder_run_reports_bad_files_and_does_the_rest(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(folder / f"good{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = run(capsys, "upscale", folder, "-o", tmp_path / "out", "--model", "bicubic")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0.png", "good1.png"]
    assert "broken.jpg" in err and "upscaled 2 of 3" in out


def test_output_equal_to_input_is_refused(tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "a.png", "--model", "bicubic")
    assert code == 2 and "overwrite its input" in err


def test_unknown_model_and_wrong_scale_are_clear_errors(tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "b.png", "--model", "nope")
    assert code == 2 and "unknown model 'nope'" in err
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "b.png", "--model", "bicubic", "--scale", "2")
    assert code == 2 and "does not match" in err


@pytest.fixture
def tiny_set(tmp_path):
    hr = tmp_path / "tinyset" / "HR"
    hr.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(photo((32, 24), seed=i)).save(hr / f"im{i}.png")
    return tmp_path / "tinyset"


def test_evaluate_writes_the_documented_json(tmp_path, capsys, tiny_set, tiny_weights):
    code, out, err = run(capsys, "evaluate", "--model", tiny_weights, "--data", tiny_set, "--json", tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert {"model", "data", "scale", "degradation", "images", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "per_image"} <= result.keys()
    assert result["images"] == 2 and len(result["per_image"]) == 2 and result["psnr_y"] > 5
    assert "mean of 2" in out


def test_evaluate_and_benchmark_with_ensemble_name_the_model_plus_x8(tmp_path, capsys, tiny_set, tiny_weights):
    code, _, err = run(capsys, "evaluate", "--model", tiny_weights, "--data", tiny_set, "--ensemble", "--json",
                       tmp_path / "r.json")
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["model"] == f"{tiny_weights.stem}+x8" and result["psnr_y"] > 5
    code, _, err = run(capsys, "benchmark", "--models", tiny_weights, "--data", tiny_set, "--ensemble", "--out",
                       tmp_path / "b")
    assert code == 0, err
    row = json.loads((tmp_path / "b" / "benchmark.json").read_text())[0]
    assert (row["model"], row["weights"]) == (f"{tiny_weights}+x8", f"{tiny_weights.stem}+x8")
    assert row["psnr_y"] == pytest.approx(result["psnr_y"])


def test_models_json_lists_bicubic_and_shipped_weights(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["name"] == "bicubic"
    for row in rows:
        assert {"name", "arch", "scale", "degradation", "params", "metrics"} <= row.keys()


def test_benchmark_writes_markdown_csv_and_json(tmp_path, capsys, tiny_set, tiny_weights):
    code, out, err = run(capsys, "benchmark", "--models", f"bicubic,{tiny_weights}", "--data", tiny_set, "--out", tmp_path / "b")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "b" / "benchmark.csv").read_text().splitlines()))
    assert [r["model"] for r in rows] == ["bicubic", str(tiny_weights)]
    assert float(rows[0]["psnr_y"]) > float(rows[1]["psnr_y"])  # an untrained model loses to bicubic
    assert (tmp_path / "b" / "benchmark.md").read_text().startswith("| model |")
    assert len(json.loads((tmp_path / "b" / "benchmark.json").read_text())) == 2


def test_benchmark_matrix_has_a_column_per_condition(tmp_path, capsys, tiny_set, tiny_weights):
    code, out, err = run(capsys, "benchmark", "--models", f"bicubic,{tiny_weights}", "--data", tiny_set,
                         "--degradations", "all", "--out", tmp_path / "b")
    assert code == 0, err
    matrix = (tmp_path / "b" / "matrix.md").read_text()
    assert "| model | bicubic | div2k-unknown | blur | noise | jpeg | camera |" in matrix and matrix in out
    assert matrix.count("\n| bicubic |") == 1 and matrix.count(f"\n| {tiny_weights} |") == 1
    assert "Y PSNR / SSIM" in matrix and "sharpness / checkerboard" in (tmp_path / "b" / "matrix_artifacts.md").read_text()
    rows = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert len(rows) == 12 and {r["degradation"] for r in rows} == {"bicubic", "div2k-unknown", "blur", "noise",
                                                                   "jpeg", "camera"}
    code, _, err = run(capsys, "benchmark", "--models", "bicubic", "--data", tiny_set, "--degradations", "noise,fog",
                       "--out", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1 and "fog" in err and not (tmp_path / "c").exists()


def test_compare_can_make_the_lr_by_a_condition(tmp_path, capsys, tiny_set):
    code, out, err = run(capsys, "compare", tiny_set / "HR" / "im0.png", "--degradation", "camera",
                         "--models", "bicubic", "-o", tmp_path / "fig.png")
    assert code == 0 and (tmp_path / "fig.png").is_file(), err
    code, _, err = run(capsys, "compare", tiny_set / "HR" / "im0.png", "--degradation", "camera", "--hr",
                       tiny_set / "HR" / "im0.png", "--models", "bicubic", "-o", tmp_path / "fig2.png")
    assert code == 2 and "--hr" in err


def test_compare_makes_a_figure_per_image(tmp_path, capsys, tiny_set, tiny_weights):
    lq = tmp_path / "lq"
    lq.mkdir()
    for i in range(2):
        Image.fromarray(photo((8, 6), seed=i)).save(lq / f"im{i}x4.png")
    code, _, err = run(capsys, "compare", lq, "--hr", tiny_set / "HR", "--models", f"bicubic,{tiny_weights}", "-o", tmp_path / "figs")
    assert code == 0, err
    for i in range(2):
        with Image.open(tmp_path / "figs" / f"im{i}x4_compare.png") as fig:
            assert fig.mode == "RGB" and fig.width > 300
    code, _, err = run(capsys, "compare", lq / "im0x4.png", "--models", "bicubic", "--crop", "0,0,8,8", "-o", tmp_path / "one.png")
    assert code == 0 and (tmp_path / "one.png").is_file(), err


def test_train_then_curves(tmp_path, capsys):
    hr, val = tmp_path / "hr", tmp_path / "val"
    for folder, seed in ((hr, 0), (val, 10)):
        folder.mkdir()
        for i in range(2):
            Image.fromarray(photo((40, 40), seed=seed + i)).save(folder / f"t{i}.png")
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--config", "configs/tiny.toml", "--run-dir", run_dir, "--quiet",
                         "--set", f"data.train_roots=[{json.dumps(str(hr))}]", "--set", "train.steps=4",
                         "--set", f"train.val_roots=[{json.dumps(str(val))}]", "--set", "train.val_every=4",
                         "--set", "train.log_every=2", "--set", "train.checkpoint_every=2")
    assert code == 0, err
    assert "completed at step 4" in out and (run_dir / "last.safetensors").is_file()
    assert re.search(r"speed of the last log window: [\d.]+ steps/s, [\d.e-]+ HR Mpx/s, [\d.e-]+ TFLOP/s", out), out
    code, out, err = run(capsys, "curves", run_dir, run_dir, "-o", tmp_path / "c.png")
    assert code == 0, err
    with Image.open(tmp_path / "c.png") as png:
        assert png.format == "PNG"
    code, _, err = run(capsys, "train", "--config", tmp_path / "missing.toml")
    assert code == 2 and "no such config" in err


def test_tune_runs_the_six_settings(tmp_path, capsys, tiny_weights):
    hr = tmp_path / "hr"
    hr.mkdir()
    for i in range(2):
        Image.fromarray(photo((48, 48), seed=i)).save(hr / f"t{i}.png")
    code, out, err = run(capsys, "tune", "--steps", "3", "--window", "2", "--out", tmp_path / "sweep",
                         "--content-loss", "pixel-l1",
                         "--set", f"data.train_roots=[{json.dumps(str(hr))}]", "--set", "data.patch_size=32",
                         "--set", "data.batch_size=2", "--set", 'train.device="cpu"', "--set", 'train.precision="fp32"',
                         "--set", f"gan.generator_weights={json.dumps(str(tiny_weights))}",
                         "--set", "gan.d_args={channels = 4, hidden_features = 16}")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").read_text().splitlines()))
    assert len(rows) == 6
    assert "| varied |" in (tmp_path / "sweep" / "sweep.md").read_text()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_upscale_fast_paths_with_threads_and_tile_batches(tmp_path, capsys, tiny_weights, precision):
    src, whole, tiled = tmp_path / "in.png", tmp_path / "whole.png", tmp_path / "tiled.png"
    Image.fromarray(photo((40, 28))).save(src)
    common = ["--model", tiny_weights, "--precision", precision, "--threads", "1"]
    assert run(capsys, "upscale", src, "-o", whole, *common)[0] == 0
    code, _, err = run(capsys, "upscale", src, "-o", tiled, *common, "--tile", "16", "--overlap", "12", "--batch", "3")
    assert code == 0, err
    a, b = np.asarray(Image.open(whole), dtype=int), np.asarray(Image.open(tiled), dtype=int)
    assert a.shape == (112, 160, 3) and (np.abs(a - b) > 2).mean() <= 0.001


def test_export_writes_onnx_and_checks_it(tmp_path, capsys, tiny_weights):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    code, out, err = run(capsys, "export", "--model", tiny_weights, "--onnx", tmp_path / "tiny.onnx")
    assert code == 0, err
    assert (tmp_path / "tiny.onnx").stat().st_size > 0
    difference = float(out.split("largest difference from PyTorch ")[1].split()[0])
    assert difference < 1e-4


def test_bad_thread_count_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["upscale", str(tmp_path / "x.png"), "-o", str(tmp_path / "y.png"), "--threads", "0"])
    assert exit_info.value.code == 2 and "--threads: must be at least 1" in capsys.readouterr().err


def test_16_bit_pictures_get_fp32_under_auto(tmp_path, capsys, monkeypatch):
    import superres.runtime

    monkeypatch.setattr(superres.runtime, "cpu_supports_bf16", lambda: True)  # auto would pick bf16 for 8-bit
    src = tmp_path / "ramp16.png"
    Image.fromarray((np.linspace(9000, 50000, 20 * 14).reshape(14, 20)).astype(np.uint16)).save(src)
    outputs = {}
    for precision in ("auto", "fp32", "bf16"):
        target = tmp_path / f"{precision}.png"
        assert run(capsys, "upscale", src, "-o", target, "--model", "cnn", "--precision", precision)[0] == 0
        outputs[precision] = np.asarray(Image.open(target), dtype=np.int64)
    assert np.array_equal(outputs["auto"], outputs["fp32"]) and outputs["fp32"].std() > 1000
    assert not np.array_equal(outputs["bf16"], outputs["fp32"])
