"""Store small, upscale later: the rate-distortion pipeline, the Bjontegaard deltas and `superres rd`."""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from superres import bjontegaard, rd
from superres.cli import main
from superres.imageio import CODEC_FORMATS, encode, read_rgb

RATE = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]
PSNR = [24.0, 26.5, 29.0, 31.0, 33.5, 36.0]


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth colour ramp with noise: compressible, yet not trivially."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 64], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def flat_folder(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.fromarray(photo(50, 38)).save(folder / "a.png")  # not a multiple of 4: cropped to 48 x 36
    Image.fromarray(photo(40, 32, seed=1)).save(folder / "b.png")
    return folder


def small_grid():
    return rd.quality_grid(["jpeg", "webp", "png"], [1, 2, 4],
                           {("jpeg", None): [30, 90], ("webp", None): [50, None]})


def test_bpp_is_eight_times_the_encoded_files_bytes_over_the_full_size_pixels(tmp_path, flat_folder):
    rows = rd.measure(rd.hr_paths(flat_folder), small_grid(), {}, data="flat")
    assert {(r["image"], r["height"], r["width"]) for r in rows} == {("a", 36, 48), ("b", 32, 40)}
    for row in rows:
        gt = read_rgb(flat_folder / f"{row['image']}.png")[:, : row["height"], : row["width"]]
        quality = None if row["quality"] == rd.LOSSLESS else row["quality"]
        data = encode(rd.downscale(gt, row["scale"]), CODEC_FORMATS[row["codec"]], quality)
        file = tmp_path / "encoded"
        file.write_bytes(data)
        assert row["bytes"] == file.stat().st_size
        assert row["bpp"] == 8 * file.stat().st_size / (row["height"] * row["width"])


def test_a_lossless_round_trip_at_scale_1_scores_infinite_psnr_and_json_marks_it(flat_folder):
    rows = rd.measure(rd.hr_paths(flat_folder), small_grid(), {}, data="flat")
    lossless = [r for r in rows if r["scale"] == 1 and r["quality"] == rd.LOSSLESS]
    assert {r["codec"] for r in lossless} == {"webp", "png"} and len(lossless) == 4
    for row in lossless:
        assert row["psnr_y"] == row["psnr_rgb"] == math.inf and row["ssim_y"] == pytest.approx(1.0)
    assert all(math.isfinite(r["psnr_y"]) for r in rows if r["scale"] > 1 or r["codec"] == "jpeg")
    strict = json.loads(json.dumps(rd.json_rows(lossless), allow_nan=False))
    assert all(r["psnr_y"] is None and set(r["infinite"]) == {"psnr_y", "psnr_rgb"} for r in strict)
    mean = rd.mean_curves(rows)
    assert [m["psnr_y"] for m in mean if m["scale"] == 1 and m["quality"] == rd.LOSSLESS] == [math.inf, math.inf]


def test_upscalers_none_at_scale_1_bicubic_always_a_model_at_its_own_scale_only(tiny_weights):
    from superres.weights import load_model

    models = {"tiny": load_model(tiny_weights)}
    assert list(rd.upscalers_for(1, models)) == [rd.NO_UPSCALE]
    assert list(rd.upscalers_for(2, models)) == [rd.BICUBIC]
    assert list(rd.upscalers_for(4, models)) == [rd.BICUBIC, "tiny"]
    assert rd.model_notes([1, 2, 4], models) == ["tiny is x4: scale 2 has bicubic only"]
    assert rd.model_notes([1, 2], models) == ["tiny is x4 and x4 is not measured: not used"]


def test_quality_grid_defaults_overrides_and_refusals():
    grid = rd.quality_grid(["jpeg", "webp"], [1, 4], {("jpeg", 4): [90]})
    assert grid["jpeg", 4] == (90,) and grid["jpeg", 1] == rd.DEFAULT_QUALITIES["jpeg"][1]
    assert grid["webp", 1][-1] is None  # lossless WebP at full size by default
    refused = [(["gif"], [1], None), (["jpeg"], [3], None), (["jpeg"], [1], {("jpeg", None): [None]}),
               (["png"], [1], {("png", None): [50]}), (["jpeg"], [1], {("jpeg", None): [101]}),
               (["jpeg"], [1], {("webp", None): [50]})]
    for codecs, scales, overrides in refused:
        with pytest.raises(ValueError):
            rd.quality_grid(codecs, scales, overrides)


def test_bd_rate_of_a_curve_against_itself_is_0_and_against_half_its_rate_is_minus_50():
    for method in bjontegaard.METHODS:
        assert bjontegaard.bd_rate(RATE, PSNR, RATE, PSNR, method=method).value == pytest.approx(0.0, abs=1e-9)
        half = bjontegaard.bd_rate(RATE, PSNR, [r / 2 for r in RATE], PSNR, method=method)
        assert half.value == pytest.approx(-50.0, abs=1e-9) and (half.low, half.high) == (24.0, 36.0)
        double = bjontegaard.bd_rate(RATE, PSNR, [r * 2 for r in RATE], PSNR, method=method)
        assert double.value == pytest.approx(100.0, abs=1e-9)
    assert bjontegaard.bd_psnr(RATE, PSNR, RATE, [p + 1 for p in PSNR]).value == pytest.approx(1.0)


def test_bd_rate_averages_over_the_overlapping_psnr_range_only():
    # log-rate linear in PSNR (pchip and the cubic fit reproduce a line exactly); the test curve spans 30..33 dB
    psnr = [24.0, 27.0, 30.0, 33.0, 36.0]
    rate = [0.1 * 2 ** ((p - 24) / 3) for p in psnr]
    for method, points in (("pchip", slice(2, 4)), ("cubic", slice(1, 5))):
        delta = bjontegaard.bd_rate(rate, psnr, [r * 0.8 for r in rate[points]], psnr[points], method=method)
        assert (delta.low, delta.high) == (psnr[points][0], psnr[points][-1])
        assert delta.value == pytest.approx(-20.0, abs=1e-9)


def test_pchip_area_equals_a_fine_numerical_integral():
    x, y = np.array(PSNR), np.log(RATE) + np.array([0, 0.3, -0.1, 0.2, 0.0, 0.4])
    d = bjontegaard._pchip_slopes(x, y)
    grid = np.linspace(x[0], x[-1], 200001)
    segment = np.clip(np.searchsorted(x, grid, side="right") - 1, 0, len(x) - 2)
    h = x[segment + 1] - x[segment]
    t = (grid - x[segment]) / h
    values = ((2 * t**3 - 3 * t**2 + 1) * y[segment] + (t**3 - 2 * t**2 + t) * h * d[segment]
              + (-2 * t**3 + 3 * t**2) * y[segment + 1] + (t**3 - t**2) * h * d[segment + 1])
    numeric = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)))
    assert bjontegaard._pchip_area(x, y, x[-1]) == pytest.approx(numeric, abs=1e-8)


def test_curves_that_do_not_overlap_give_nan_with_a_reason():
    far = bjontegaard.bd_rate(RATE, PSNR, RATE, [p + 40 for p in PSNR])
    assert math.isnan(far.value) and "no overlap" in far.reason
    few = bjontegaard.bd_rate(RATE, PSNR, RATE[:3], PSNR[:3], method="cubic")
    assert math.isnan(few.value) and "needs 4" in few.reason
    lossless_only = bjontegaard.bd_rate(RATE, PSNR, [9.0], [math.inf])
    assert math.isnan(lossless_only.value) and "0 distinct finite points" in lossless_only.reason


def test_advantage_finds_the_crossing_of_the_two_curves():
    rate = [0.1, 0.4, 1.6]
    lead = bjontegaard.advantage(rate, [25.0, 30.0, 35.0], rate, [27.0, 30.0, 33.0])  # crosses at 0.4
    assert lead.above == (pytest.approx((0.1, 0.4)),) and lead.max_gain == pytest.approx(2.0)
    assert lead.at_rate == pytest.approx(0.1)
    assert bjontegaard.advantage(rate, [25.0, 30.0, 35.0], rate, [24.0, 29.0, 34.0]).above == ()
    assert bjontegaard.advantage(rate, [25.0, 30.0, 35.0], [5.0, 9.0], [40.0, 41.0]) is None


def test_bd_table_compares_each_upscaled_curve_with_the_codec_alone():
    mean = [{"data": "d", "codec": "jpeg", "scale": scale, "model": model, "quality": q, "bpp": rate * factor,
             "psnr_y": psnr, "decode_s": 0.01, "upscale_s": 0.0 if scale == 1 else 0.5}
            for scale, model, factor in ((1, rd.NO_UPSCALE, 1.0), (4, "m", 0.5))
            for q, rate, psnr in zip(range(6), RATE, PSNR)]
    (row,) = rd.bd_table(mean)
    assert (row["codec"], row["scale"], row["model"]) == ("jpeg", 4, "m")
    assert row["bd_rate"] == pytest.approx(-50.0) and row["bd_psnr"] > 0 and row["reason"] == ""
    assert row["decode_s"] == pytest.approx(0.51) and row["codec_decode_s"] == pytest.approx(0.01)
    assert row["better_bpp"] == "0.1-1.6"  # above everywhere both reach
    (orphan,) = rd.bd_table([m for m in mean if m["scale"] == 4])
    assert math.isnan(orphan["bd_rate"]) and "no scale-1 jpeg curve" in orphan["reason"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_every_file_for_a_flat_folder_and_a_benchmark_folder(tmp_path, capsys, flat_folder, tiny_weights):
    bench = tmp_path / "bench"
    (bench / "HR").mkdir(parents=True)
    Image.fromarray(photo(32, 32, seed=2)).save(bench / "HR" / "c.png")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "rd", "--data", flat_folder, bench, "--codecs", "jpeg,png", "--scales", "1,2,4",
                            "--models", f"bicubic,{tiny_weights}", "--qualities", "jpeg=20,50,80", "--qualities",
                            "jpeg:4=90,95", "--out", out)
    assert code == 0, err
    assert f"{tiny_weights} is x4: scale 2 has bicubic only" in err and "rd flat: 2/2 b" in err
    for name, images in (("flat", 2), ("bench", 1)):
        folder = out / name
        for file in ("rd.csv", "rd.json", "rd_mean.md", "rd_mean.csv", "bd_rate.md", f"rd_{name}.png"):
            assert (folder / file).is_file(), file
        with open(folder / "rd.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        models = {(r["scale"], r["model"]) for r in rows}
        assert models == {("1", "none"), ("2", "bicubic"), ("4", "bicubic"), ("4", str(tiny_weights))}
        assert {r["psnr_y"] for r in rows if r["codec"] == "png" and r["scale"] == "1"} == {"inf"}
        assert {r["quality"] for r in rows if r["codec"] == "jpeg" and r["scale"] == "4"} == {"90", "95"}
        summary = json.loads((folder / "rd.json").read_text(), parse_constant=pytest.fail)
        assert summary["images"] == images and len(summary["rows"]) == len(rows)
        assert {b["model"] for b in summary["bd_rate"]} == {"bicubic", str(tiny_weights)}
        assert "| inf |" in (folder / "rd_mean.md").read_text()
    assert "BD-rate" in stdout and "wrote" in stdout


@pytest.mark.parametrize("argv, words", [
    (["--codecs", "jpeg,gif"], "unknown codec 'gif'"),
    (["--scales", "1,3"], "unknown scale 3"),
    (["--scales", "1,x"], "--scales"),
    (["--qualities", "jpeg=lossless"], "jpeg has no lossless mode"),
    (["--qualities", "jpeg"], "--qualities 'jpeg'"),
    (["--data", "/no/such/folder"], "no such folder"),
])
def test_cli_refuses_bad_arguments_with_one_line_and_exit_2(tmp_path, capsys, flat_folder, argv, words):
    options = {"--data": str(flat_folder), "--codecs": "jpeg", "--scales": "1,4", "--models": "bicubic"}
    options.update(zip(argv[::2], argv[1::2]))
    code, _, err = run(capsys, "rd", *[item for pair in options.items() for item in pair], "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and err.startswith("superres: error:") and words in err, err
    assert not (tmp_path / "out").exists()


def test_cli_skips_a_codec_this_pillow_lacks_with_a_note(tmp_path, capsys, flat_folder, monkeypatch):
    import superres.imageio

    monkeypatch.setattr(superres.imageio, "codec_available", lambda image_format: image_format != "AVIF")
    code, _, err = run(capsys, "rd", "--data", flat_folder, "--codecs", "jpeg,avif", "--scales", "1",
                       "--qualities", "jpeg=50", "--max-images", "1", "--models", "bicubic", "--out", tmp_path / "out")
    assert code == 0 and "this Pillow cannot encode avif: skipped" in err, err
    assert "only scale 1" in (tmp_path / "out" / "flat" / "bd_rate.md").read_text()
    with open(tmp_path / "out" / "flat" / "rd.csv", newline="") as f:
        assert {r["codec"] for r in csv.DictReader(f)} == {"jpeg"}
