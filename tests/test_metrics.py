import math

import pytest
import torch

import torch.nn.functional as F

from superres.evaluate import score_image
from superres.metrics import gradient_energy, periodic_energy, psnr, ssim


def test_identical_images_give_infinite_psnr_and_unit_ssim(generator):
    image = torch.rand(3, 32, 32, generator=generator)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0)


def test_equal_pixels_in_another_memory_layout_give_infinite_psnr(generator):
    samples = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
    channels_last = samples.permute(2, 0, 1).float().div(255)  # as read_rgb makes it: not contiguous
    assert psnr(channels_last, channels_last.contiguous()) == math.inf
    assert psnr(channels_last, channels_last.contiguous(), crop_border=4) == math.inf


def test_an_offset_of_one_level_gives_48_13_db():
    gt = torch.full((3, 16, 16), 100 / 255)
    sr = torch.full((3, 16, 16), 101 / 255)
    assert psnr(sr, gt, y_channel=False) == pytest.approx(48.13, abs=0.01)


def test_y_channel_follows_bt601_studio_range():
    # A one-level offset on all of R, G, B moves Y by 219/255 of a level.
    gt = torch.full((3, 16, 16), 100 / 255)
    sr = torch.full((3, 16, 16), 101 / 255)
    assert psnr(sr, gt, y_channel=True) == pytest.approx(48.13 - 20 * math.log10(219 / 255), abs=0.01)


def test_border_is_cropped(generator):
    gt = torch.rand(3, 20, 20, generator=generator)
    sr = gt.clone()
    sr[:, :4] = 0  # damage only the border
    assert psnr(sr, gt, crop_border=4) == math.inf


def test_grayscale_counts_as_y(generator):
    gt = torch.rand(1, 24, 24, generator=generator)
    sr = (gt + 2 / 255).clamp(0, 1)
    assert psnr(sr, gt) == psnr(sr, gt, y_channel=False)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sizes differ"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))


def test_blurring_lowers_gradient_energy(generator):
    image = torch.rand(3, 32, 32, generator=generator)
    blurred = torch.nn.functional.avg_pool2d(image[None], 3, 1, 1)[0]
    assert gradient_energy(blurred) < 0.5 * gradient_energy(image)


def photo_like(generator, size=96) -> torch.Tensor:
    """Smooth colour regions (random 12x12 colours, upscaled bicubically) with a little fine grain."""
    small = torch.rand(1, 3, 12, 12, generator=generator)
    smooth = F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[0]
    return (smooth + 0.02 * torch.randn(3, size, size, generator=generator)).clamp(0, 1)


def test_a_checkerboard_scores_high_and_a_clean_upscale_low(generator):
    gt = photo_like(generator)
    pattern = torch.tensor([[1.0, -1, 1, -1], [0, 1, 0, -1], [-1, 1, -1, 1], [0, -1, 0, 1]])
    checkered = (gt + 3 / 255 * pattern.repeat(24, 24)).clamp(0, 1)  # a 4-periodic pattern of +-3 levels
    clean = F.interpolate(F.interpolate(gt[None], scale_factor=0.25, mode="bicubic", antialias=True),
                          scale_factor=4, mode="bicubic").clamp(0, 1)[0]  # fmt: skip
    assert score_image(gt, gt, scale=4)["checkerboard"] == pytest.approx(1.0)
    assert score_image(checkered, gt, scale=4)["checkerboard"] > 3
    assert score_image(clean, gt, scale=4)["checkerboard"] < 1.5
    assert psnr(checkered, gt) > 40  # faint to PSNR, plain to this measure


def test_periodic_energy_sees_only_its_own_period(generator):
    flat = torch.full((3, 64, 64), 0.5)
    stripes = flat.clone()
    stripes[:, :, ::4] += 0.1  # 4-periodic along x
    assert periodic_energy(flat) < 1e-20
    assert periodic_energy(stripes) > 10
    odd = flat.clone()
    odd[:, :, ::5] += 0.1  # 5-periodic: off the 4-periodic bins
    assert periodic_energy(odd) < 0.01 * periodic_energy(stripes)
    assert periodic_energy(stripes[:, :63, :62]) == pytest.approx(periodic_energy(stripes[:, :60, :60]))  # cut to x4