import math

import pytest
import torch

from superres.metrics import gradient_energy, psnr, ssim


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
