import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from superres.data import Realistic, degrade, degrade_interior, make_params, margin
from superres.data.degrade import div2k_unknown, jpeg, quantize
from superres.data.realistic import KERNELS, _Noise, add_noise, shaped_kernels
from superres.imageio import read_rgb_u8
from test_degrade import psnr, smooth_image, to_tensor

NONE_ONLY = (1, 0, 0, 0, 0, 0, 0)
QUIET = dict(clean_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, second_prob=0.0, final_sinc_prob=0.0,
             resize_weights=(0.0, 0.0, 1.0))  # one pass, blur and a resize straight to the LR size


def one_kernel(kind: str, sigma_x=1.5, sigma_y=1.5, theta=0.0, beta=1.0, cutoff=1.0, size=21) -> torch.Tensor:
    t = torch.tensor
    return shaped_kernels(t([KERNELS.index(kind)]), t([sigma_x]), t([sigma_y]), t([theta]), t([beta]),
                          t([cutoff]), size)[0]


def test_kernels_are_normalised_and_shaped_as_named():
    for kind in KERNELS:
        k = one_kernel(kind)
        assert k.shape == (21, 21) and torch.isclose(k.sum(), torch.tensor(1.0))
    gauss = one_kernel("isotropic")
    assert torch.allclose(gauss, gauss.T) and torch.allclose(gauss, gauss.flip(0))
    assert torch.allclose(one_kernel("generalized", beta=1.0), gauss, atol=1e-7)  # beta 1 is the Gaussian
    assert one_kernel("plateau", beta=1.0)[10, 0] > 10 * gauss[10, 0]  # heavy tails
    assert one_kernel("sinc", cutoff=1.0).min() < 0  # ringing lobes
    assert one_kernel("none")[10, 10] == 1 and one_kernel("div2k-unknown")[10, 10] == 1  # applied elsewhere
    aniso = one_kernel("anisotropic", sigma_x=3.0, sigma_y=0.5)
    assert aniso[10, 13] > aniso[13, 10]  # wide along x at angle 0


def test_realistic_is_seeded_per_image_and_quantised(generator):
    gt = smooth_image(generator, 96).expand(6, -1, -1, -1)
    noisy = Realistic(noise_prob=1.0)  # no two images alike, even where both drew the quiet path
    a = degrade(gt, "realistic", 4, torch.Generator().manual_seed(7), noisy)
    b = degrade(gt, "realistic", 4, torch.Generator().manual_seed(7), noisy)
    c = degrade(gt, "realistic", 4, torch.Generator().manual_seed(8), noisy)
    assert a.shape == (6, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(x.flatten()[:50].tolist()) for x in a}) == 6  # each image draws its own mix
    assert torch.equal(a, quantize(a))


def test_the_clean_share_is_the_plain_bicubic_downscale(generator):
    gt = smooth_image(generator).expand(3, -1, -1, -1)
    lq = degrade(gt, "realistic", 4, generator, Realistic(clean_prob=1.0))
    assert torch.equal(lq, degrade(gt, "bicubic", 4))


def test_a_quiet_mix_is_a_plain_resize_and_the_div2k_kernel_is_the_real_track(generator):
    gt = smooth_image(generator, 96).expand(4, -1, -1, -1)
    plain = degrade(gt, "realistic", 4, generator, Realistic(kernel_weights=NONE_ONLY, **QUIET))
    assert psnr(plain, degrade(gt, "bicubic", 4)) > 35  # bicubic, bilinear or area: all close on smooth input
    div2k = Realistic(kernel_weights=(0, 0, 0, 0, 0, 0, 1), **QUIET)
    assert torch.equal(degrade(gt, "realistic", 4, generator, div2k), quantize(div2k_unknown(gt)))


def test_every_step_leaves_its_mark(generator):
    gt = smooth_image(generator, 96).expand(8, -1, -1, -1)
    base = degrade(gt, "realistic", 4, torch.Generator().manual_seed(1), Realistic(kernel_weights=NONE_ONLY, **QUIET))
    for change in (dict(noise_prob=1.0), dict(jpeg_prob=1.0, jpeg_quality=(30, 40)), dict(final_sinc_prob=1.0),
                   dict(second_prob=1.0), dict(kernel_weights=(0, 1, 0, 0, 0, 0, 0), sigma=(2.0, 3.0))):
        params = Realistic(**{**QUIET, "kernel_weights": NONE_ONLY, **change})
        other = degrade(gt, "realistic", 4, torch.Generator().manual_seed(1), params)
        assert psnr(other, base) < 40, change


def test_gray_noise_is_the_same_in_every_channel_and_poisson_grows_with_brightness(generator):
    x = torch.cat([torch.full((1, 3, 64, 64), 0.1), torch.full((1, 3, 64, 64), 0.8)]).repeat(2, 1, 1, 1)
    on = torch.ones(4, dtype=torch.bool)
    gray = torch.tensor([True, True, False, False])
    noise = _Noise(on=on, poisson=torch.ones(4, dtype=torch.bool), gray=gray, sigma=torch.zeros(4),
                   peak=torch.full((4,), 200.0))
    y = add_noise(x, noise, generator, shot=[0, 1, 2, 3]) - x
    assert torch.equal(y[0, 0], y[0, 1]) and not torch.equal(y[2, 0], y[2, 1])
    assert y[1].std() > 2 * y[0].std()  # shot noise: variance = intensity / peak
    assert math.isclose(y[3].std().item(), math.sqrt(0.8 / 200), rel_tol=0.1)
    gauss = _Noise(on=on, poisson=torch.zeros(4, dtype=torch.bool), gray=gray, sigma=torch.full((4,), 0.05),
                   peak=torch.ones(4))
    assert math.isclose((add_noise(x, gauss, generator, shot=[]) - x)[1].std().item(), 0.05, rel_tol=0.1)


def test_a_crop_with_its_margin_matches_the_whole_image_where_the_mix_is_exact(generator):
    gt = torch.rand(1, 3, 160, 152, generator=generator)
    params = Realistic(kernel_weights=(0, 0.3, 0.3, 0.2, 0.2, 0, 0), **QUIET)  # blur and one resize: exact
    m, s = margin("realistic", 4, params), 4
    assert m % s == 0 and m >= params.kernel_size // 2 + 2 * s
    whole = degrade(gt, "realistic", s, torch.Generator().manual_seed(1), params)
    top, left, size = 64, 56, 32
    crop = gt[..., top - m : top + size + m, left - m : left + size + m]
    expected = whole[..., top // s : (top + size) // s, left // s : (left + size) // s]
    got = degrade_interior(crop, "realistic", s, torch.Generator().manual_seed(1), params)
    assert got.shape == expected.shape == (1, 3, 8, 8)
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6


def test_training_jpeg_matches_pillows_encoder(shared_data):
    for name in ("set5/HR/img_003.png", "set14/HR/img_005.png"):
        u8 = read_rgb_u8(shared_data / "benchmarks" / name)[:120, :136]  # not a multiple of 16
        x = to_tensor(u8)
        for q in (30, 60, 95):
            buf = io.BytesIO()
            Image.fromarray(u8).save(buf, format="JPEG", quality=q)
            pil = to_tensor(np.asarray(Image.open(buf).convert("RGB")))
            ours = jpeg(x, torch.tensor([q]))
            assert (ours - pil).abs().mean() * 255 < 1.2, (name, q)  # about one level of 255 on average
            assert psnr(ours, pil) > psnr(pil, x) + 8  # far closer to Pillow's output than JPEG's own damage
            assert abs(psnr(ours, x) - psnr(pil, x)) < 0.3  # and just as damaging


def test_params_from_a_config_table_and_clear_errors():
    params = make_params("realistic", {"noise_sigma": [2, 30], "second_prob": 0.5})
    assert params.noise_sigma == (2, 30) and params.second_prob == 0.5
    assert make_params("bicubic") is None
    with pytest.raises(ValueError, match="takes no parameters"):
        make_params("bicubic", {"noise_prob": 1})
    with pytest.raises(ValueError, match="unexpected keyword"):
        make_params("realistic", {"noise": 1})
    with pytest.raises(ValueError, match="second_prob"):
        Realistic(second_prob=2)
    with pytest.raises(ValueError, match="first pass only"):
        Realistic(kernel_weights2=(0, 0, 0, 0, 0, 0, 1))
    with pytest.raises(ValueError, match="Generator"):
        degrade(torch.rand(1, 3, 16, 16), "realistic", 4)


def test_other_scales_use_the_div2k_kernel_as_a_blur(generator):
    gt = smooth_image(generator, 64).expand(2, -1, -1, -1)
    params = Realistic(kernel_weights=(0, 0, 0, 0, 0, 0, 1), **QUIET)
    lq = degrade(gt, "realistic", 2, generator, params)
    assert lq.shape == (2, 3, 32, 32)
    assert psnr(lq, degrade(gt, "bicubic", 2)) < 40  # blurred, not a plain downscale
