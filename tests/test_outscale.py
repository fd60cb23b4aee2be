"""`--outscale F`: any output size from the model's own scale and then a resize, in the CLI (the API's and the
UI's are in test_api.py and test_serve.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from superres.cli import main
from superres.imageio import Picture, read_picture, write_picture
from superres.inference import outscale_size, resize


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("size, factor, expected", [((21, 33), 2, (42, 66)), ((21, 33), 3.5, (74, 116)),
                                                    ((3, 5), 0.1, (1, 1)), ((10, 10), 16, (160, 160))])
def test_output_size_is_the_rounded_product(size, factor, expected):
    assert outscale_size(*size, factor) == expected


def test_resize_keeps_a_ramp_a_ramp_in_float():
    ramp = torch.linspace(0, 1, 64).repeat(1, 16, 1)  # (1, 16, 64)
    smaller = resize(ramp, (8, 32))
    assert smaller.shape == (1, 8, 32) and smaller.dtype == torch.float32
    assert torch.all(smaller[0, :, 1:] >= smaller[0, :, :-1])  # still monotone
    assert len(torch.unique((smaller * 65535).round())) > 30  # not cut to 8-bit levels
    assert resize(ramp, (16, 64)) is ramp  # the same size: nothing to do


def test_cli_outscale_keeps_16_bits_and_alpha(tmp_path, capsys):
    wide = np.dstack([np.tile(np.linspace(0, 65535, 30), (20, 1))] * 3 + [np.full((20, 30), 40000.0)])
    path = tmp_path / "rgba16.png"
    pixels = torch.from_numpy(wide[:, :, :3] / 65535).permute(2, 0, 1).float()
    alpha = torch.from_numpy(wide[:, :, 3:] / 65535).permute(2, 0, 1).float()
    write_picture(path, Picture(pixels=pixels, alpha=alpha, bit_depth=16))
    code, out, err = run(capsys, "upscale", path, "-o", tmp_path / "out.png", "--model", "bicubic", "--outscale", "1.5")
    assert code == 0, err
    assert out == f"{tmp_path / 'out.png'}: x4 with bicubic, resized to x1.5\n"
    result = read_picture(tmp_path / "out.png")
    assert result.pixels.shape == (3, 30, 45) and result.alpha.shape == (1, 30, 45) and result.bit_depth == 16
    levels = np.unique((result.pixels[0] * 65535).round().numpy())
    assert len(levels) > 40 and np.any(levels % 257 != 0)  # values between the 8-bit levels: no 8-bit stage


def test_outscale_at_the_models_scale_changes_nothing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    assert run(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "a.png", "--model", "bicubic")[0] == 0
    code, out, _ = run(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "b.png", "--model", "bicubic",
                       "--outscale", "4")
    assert code == 0 and out == f"{tmp_path / 'b.png'}: x4 with bicubic\n"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "17"])
def test_bad_outscale_is_one_line_before_any_work(tmp_path, capsys, value):
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    code, out, err = run(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "out.png", "--model", "bicubic",
                         f"--outscale={value}")
    assert code == 2 and out == "" and err.startswith("superres: error: outscale must be a number over 0 and at "
                                                      "most 16") and err.count("\n") == 1
    assert not (tmp_path / "out.png").exists()
