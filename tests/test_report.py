"""Figures and tables: layout, colours, crop choice, learning curves, atomic writes."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from superres.report import (
    Panel,
    auto_crop,
    comparison_figure,
    moving_average,
    plot_learning_curves,
    read_minutes,
    read_log,
    save_figure,
    write_table,
)

COLOURS = [(1.0, 0.0, 0.0), (0.0, 0.8, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.5, 0.5, 0.5)]


def solid(rgb: tuple[float, float, float], height: int = 24, width: int = 32) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, height, width).clone()


def non_white_columns(image: Image.Image, row: int) -> np.ndarray:
    pixels = np.asarray(image)[row]  # (W, 3)
    return np.flatnonzero((pixels != 255).any(-1))


def write_log(run_dir, rows) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "log.csv", "w", newline="") as f:
        f.write("step,seconds,key,value\n")
        for step, key, value in rows:
            f.write(f"{step},{step * 0.5},{key},{value}\n")


def fake_rows(scale: float, steps: int = 60):
    for step in range(1, steps + 1):
        yield step, "g/pixel", scale * math.exp(-step / 10) + 1e-3
        yield step, "d/real", 0.5
        if step % 10 == 0:
            yield step, "val/psnr", 20 + step / 10


# --- comparison figure ----------------------------------------------------------------------------------------


def test_panels_appear_in_order_with_true_colours(tmp_path):
    panels = [Panel(f"p{i}", solid(c), psnr=30.0 + i, ssim=0.9) for i, c in enumerate(COLOURS)]
    image = comparison_figure(panels, crop=(4, 4, 8, 8), title="order")
    assert image.mode == "RGB" and 5 * 32 < image.width < 5 * 500 and image.height < 1200
    array = np.asarray(image)
    assert tuple(array[0, 0]) == (255, 255, 255)  # white background

    # The zoomed crops sit in one row; sample each run of coloured pixels along a row through them.
    wide_rows = [r for r in range(array.shape[0]) if len(non_white_columns(image, r)) > 5 * 100]
    zoom_row = wide_rows[len(wide_rows) // 2]
    columns = non_white_columns(image, zoom_row)
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    assert len(runs) == 5
    for run, colour in zip(runs, COLOURS):
        centre = tuple(int(v) for v in array[zoom_row, run[len(run) // 2]])
        assert centre == tuple(round(c * 255) for c in colour)

    path = save_figure(image, tmp_path / "sub" / "cmp.png")
    with Image.open(path) as reread:
        assert reread.size == image.size and reread.format == "PNG"
    assert [p.name for p in path.parent.iterdir()] == ["cmp.png"]  # no temp files left behind


def test_grayscale_is_gray_and_out_of_range_is_clamped():
    ramp = torch.linspace(-0.5, 1.5, 40).view(1, 1, 40).expand(1, 30, 40)
    image = comparison_figure([Panel("gray", ramp), Panel("gray2d", ramp[0])], crop=(0, 0, 40, 30))
    array = np.asarray(image).astype(int)
    # every non-red pixel is gray: the crop outline is the only colour
    red = (array[..., 0] > 150) & (array[..., 1] < 80) & (array[..., 2] < 80)
    gray = (array[..., 0] == array[..., 1]) & (array[..., 1] == array[..., 2])
    assert (red | gray).all()
    assert (array == 0).all(-1).any() and (array == 255).all(-1).any()  # clamped ends, no wrap-around


def test_many_panels_wrap_to_two_rows_and_long_labels_fit():
    long_label = "a very long model name that would not fit under a small crop"
    panels = [Panel(long_label if i == 3 else f"m{i}", solid(COLOURS[i % 5]), psnr=28.4213, ssim=0.81) for i in range(8)]
    image = comparison_figure(panels, crop=(0, 0, 16, 16))
    one_row = comparison_figure(panels[:4], crop=(0, 0, 16, 16))
    assert image.height > 1.8 * one_row.height - 100  # two rows of cells
    assert image.width == one_row.width  # 8 panels -> 4 + 4, same column count
    # text never touches the canvas edge
    array = np.asarray(image)
    assert (array[:, :4] == 255).all() and (array[:, -4:] == 255).all() and (array[-4:] == 255).all()


def test_comparison_figure_rejects_bad_input():
    with pytest.raises(ValueError):
        comparison_figure([])
    with pytest.raises(ValueError, match="same size"):
        comparison_figure([Panel("a", solid(COLOURS[0])), Panel("b", solid(COLOURS[1], 20, 20))])
    with pytest.raises(ValueError, match="inside"):
        comparison_figure([Panel("a", solid(COLOURS[0]))], crop=(30, 0, 8, 8))


def test_panel_captions():
    assert Panel("HR", torch.zeros(3, 2, 2)).caption() == ["HR"]
    assert Panel("cnn", torch.zeros(3, 2, 2), psnr=28.4213, ssim=0.81043).caption() == ["cnn", "28.42 dB / 0.8104"]
    assert Panel("x", torch.zeros(3, 2, 2), psnr=math.inf).caption() == ["x", "inf dB"]


# --- auto crop ------------------------------------------------------------------------------------------------


def test_auto_crop_finds_the_perturbed_region():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(3, 64, 80, generator=generator)
    changed = base.clone()
    changed[:, 40:52, 50:62] = 1.0 - changed[:, 40:52, 50:62]
    x, y, w, h = auto_crop([base, base.clone(), changed], 12)
    assert (w, h) == (12, 12)
    assert abs(x - 50) <= 1 and abs(y - 40) <= 1
    assert auto_crop([base, base.clone(), changed], 12) == (x, y, w, h)  # deterministic


def test_auto_crop_prefers_texture_when_images_agree_and_clamps_size():
    image = torch.full((3, 40, 40), 0.5)
    image[:, 20:30, 5:15] = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(1))
    x, y, w, h = auto_crop([image, image.clone()], 10)
    assert (x, y, w, h) == (5, 20, 10, 10)
    assert auto_crop([image], 100) == (0, 0, 40, 40)


# --- learning curves ------------------------------------------------------------------------------------------


def test_moving_average_is_trailing_and_same_length():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(moving_average(values, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(moving_average(values, 1), values)
    np.testing.assert_allclose(moving_average(values, 10), [1.0, 1.5, 2.0, 2.5, 3.0])
    assert moving_average([], 3).shape == (0,)
    with pytest.raises(ValueError):
        moving_average(values, 0)


def test_read_log_keeps_latest_value_per_step_and_skips_broken_rows(tmp_path):
    run = tmp_path / "run"
    write_log(run, [(1, "g/pixel", 0.5), (2, "g/pixel", 0.4), (2, "g/pixel", 0.3), (3, "g/pixel", "nan")])
    with open(run / "log.csv", "a") as f:
        f.write("4,2.0,g/pix")  # a line cut short by a crash
    steps, values = read_log(run)["g/pixel"]
    assert steps.tolist() == [1, 2] and values.tolist() == [0.5, 0.3]


def test_learning_curves_overlay_runs(tmp_path):
    write_log(tmp_path / "baseline", fake_rows(1.0))
    write_log(tmp_path / "wider", fake_rows(2.0))
    out = plot_learning_curves([tmp_path / "baseline", tmp_path / "wider"], tmp_path / "out" / "curves.png", window=5)
    with Image.open(out) as image:
        assert image.format == "PNG" and 600 < image.width < 3000 and 300 < image.height < 2000
        array = np.asarray(image.convert("RGB")).astype(int)
    # both runs drawn: matplotlib's first two default colours (blue C0, orange C1) are present
    blue = (abs(array - (31, 119, 180)).sum(-1) < 30).sum()
    orange = (abs(array - (255, 127, 14)).sum(-1) < 30).sum()
    assert blue > 100 and orange > 100
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]

    single = plot_learning_curves([tmp_path / "baseline"], tmp_path / "one.png", keys=["val/psnr"])
    with Image.open(single) as image:
        assert image.width < 1000  # one subplot


def test_learning_curves_against_wall_time(tmp_path):
    write_log(tmp_path / "run", fake_rows(1.0, steps=20))  # step k logged at k * 0.5 s
    steps, minutes = read_minutes(tmp_path / "run")
    assert steps.tolist() == list(range(1, 21)) and minutes[-1] == pytest.approx(10 / 60)
    out = plot_learning_curves([tmp_path / "run"], tmp_path / "t.png", keys=["val/psnr"], x="minutes")
    assert out.is_file()
    with pytest.raises(ValueError, match="step or minutes"):
        plot_learning_curves([tmp_path / "run"], tmp_path / "u.png", x="hours")


def test_learning_curves_reject_missing_or_empty_logs(tmp_path):
    with pytest.raises(ValueError, match="no training log"):
        plot_learning_curves([tmp_path / "nowhere"], tmp_path / "c.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.csv").write_text("step,seconds,key,value\n")
    with pytest.raises(ValueError, match="no values"):
        plot_learning_curves([tmp_path / "empty"], tmp_path / "c.png")
    write_log(tmp_path / "ok", fake_rows(1.0, steps=3))
    with pytest.raises(ValueError, match="in no log"):
        plot_learning_curves([tmp_path / "ok"], tmp_path / "c.png", keys=["g/adv"])
    assert not (tmp_path / "c.png").exists()


# --- tables ---------------------------------------------------------------------------------------------------


def test_write_table_round_trips(tmp_path):
    rows = [
        {"model": "bicubic", "set5/psnr": 28.4213456, "params": 0},
        {"model": "cnn|x4", "set5/psnr": 30.1, "params": 57281, "note": "new"},
    ]
    write_table(rows, tmp_path / "t.md", tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["model", "set5/psnr", "params", "note"]
    assert float(read[0]["set5/psnr"]) == 28.4213456 and read[0]["note"] == ""
    assert read[1] == {"model": "cnn|x4", "set5/psnr": "30.1", "params": "57281", "note": "new"}

    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0] == "| model | set5/psnr | params | note |"
    assert md[1] == "|---|---:|---:|---|"
    assert md[2] == "| bicubic | 28.4213 | 0 |  |"
    assert md[3] == "| cnn\\|x4 | 30.1000 | 57281 | new |"
    with pytest.raises(ValueError):
        write_table([], tmp_path / "x.md", None)
