import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from superres.data.degrade import (
    DEGRADATIONS,
    BlurNoiseJpeg,
    bicubic,
    degrade,
    degrade_interior,
    div2k_kernel,
    div2k_unknown,
    gaussian_kernels,
    jpeg,
    jpeg_tables,
    margin,
    pad_edges,
    resize_bicubic,
)
from superres.imageio import read_rgb_u8


def to_tensor(u8: np.ndarray) -> torch.Tensor:  # (H, W, 3) uint8 -> (1, 3, H, W) float
    return torch.from_numpy(np.array(u8.transpose(2, 0, 1)))[None].float() / 255


def to_u8(x: torch.Tensor) -> np.ndarray:
    return (x[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def smooth_image(generator: torch.Generator, size: int = 64) -> torch.Tensor:
    """A photo-like test image: smooth colour fields plus some edges, (1, 3, size, size) on 8-bit levels."""
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=generator)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    x[..., size // 3 :, : size // 2] += 0.3
    return (x.clamp(0, 1) * 255).round() / 255


# ---------------------------------------------------------------- bicubic


def test_resize_bicubic_matches_pil_both_ways(shared_data):
    u8 = read_rgb_u8(shared_data / "benchmarks/set5/HR/img_002.png")
    x = to_tensor(u8)
    h, w = u8.shape[:2]
    for size in [(h // 4, w // 4), (h // 3 + 1, w // 2), (h * 2, w * 2)]:
        ours = to_u8(resize_bicubic(x, size=size)).astype(float)
        pil = np.asarray(Image.fromarray(u8).resize(size[::-1], Image.BICUBIC)).astype(float)
        assert np.abs(ours - pil).mean() < 0.5, size
    assert resize_bicubic(x, scale_factor=0.5).shape[-2:] == (h // 2, w // 2)


def test_bicubic_reproduces_the_official_matlab_lr_of_set5(shared_data):
    for hr in sorted((shared_data / "benchmarks/set5/HR").glob("*.png")):
        lr = to_tensor(read_rgb_u8(hr.parent.parent / "LR_bicubic/X4" / hr.name))
        ours = degrade(to_tensor(read_rgb_u8(hr)), "bicubic", 4)
        assert psnr(ours, lr) > 57.0, hr.name


def test_bicubic_of_a_constant_image_is_constant_and_drops_the_remainder():
    x = torch.full((2, 3, 21, 18), 0.4)
    y = bicubic(x, 4)
    assert y.shape == (2, 3, 5, 4)
    assert torch.allclose(y, torch.full_like(y, 0.4), atol=1e-6)


# ---------------------------------------------------------------- DIV2K unknown


def test_div2k_unknown_reproduces_the_real_lr_files(shared_data):
    folder = shared_data / "div2k_unknown_x4"
    for hr in sorted((folder / "HR").glob("*.png")):
        lr = to_tensor(read_rgb_u8(folder / "LR_unknown/X4" / f"{hr.stem}x4.png"))
        ours = degrade(to_tensor(read_rgb_u8(hr)), "div2k-unknown", 4)
        assert ours.shape == lr.shape
        assert psnr(ours, lr) >= 55.0, hr.name


def test_div2k_unknown_follows_the_written_convention(generator):
    hr = torch.rand(1, 2, 40, 44, generator=generator, dtype=torch.float64)
    k = div2k_kernel().double().numpy()
    padded = np.pad(hr[0].numpy(), ((0, 0), (16, 16), (16, 16)), mode="symmetric")  # HR index n -> padded n + 16
    ours = div2k_unknown(hr)[0].numpy()
    assert ours.shape == (2, 10, 11)
    for c, i, j in [(0, 0, 0), (1, 9, 10), (0, 4, 7), (1, 0, 10)]:
        expected = (k * padded[c, 4 * i : 4 * i + 36, 4 * j : 4 * j + 36]).sum()
        assert ours[c, i, j] == pytest.approx(expected, abs=1e-9)
    assert k.shape == (36, 36) and k.sum() == pytest.approx(1.0, abs=1e-4)


def test_pad_edges_modes():
    x = torch.arange(3).view(1, 1, 1, 3).expand(1, 1, 3, 3)
    assert pad_edges(x, 2, "replicate")[0, 0, 2].tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert pad_edges(x, 2, "symmetric")[0, 0, 2].tolist() == [1, 0, 0, 1, 2, 2, 1]
    assert pad_edges(x.byte(), 1, "symmetric").dtype == torch.uint8


# ---------------------------------------------------------------- margins


@pytest.mark.parametrize("kind", [k for k in DEGRADATIONS if k != "realistic"])  # realistic: test_realistic.py
def test_degrading_a_crop_with_its_margin_equals_cropping_the_degraded_image(kind, generator):
    gt = torch.rand(1, 3, 96, 88, generator=generator)
    params = BlurNoiseJpeg(blur_prob=1.0, noise_prob=0.0, jpeg_prob=0.0, kernel_size=9)
    m, s = margin(kind, 4, params), 4
    assert m % s == 0
    whole = degrade(gt, kind, s, torch.Generator().manual_seed(1), params)
    top, left, size = 28, 32, 32  # an interior crop, on the LR grid
    crop = gt[..., top - m : top + size + m, left - m : left + size + m]
    expected = whole[..., top // s : (top + size) // s, left // s : (left + size) // s]
    lq = degrade(crop, kind, s, torch.Generator().manual_seed(1), params)[..., m // s : -m // s, m // s : -m // s]
    interior = degrade_interior(crop, kind, s, torch.Generator().manual_seed(1), params)
    for got in (lq, interior):
        assert got.shape == expected.shape == (1, 3, 8, 8)
        assert (got - expected).abs().max() <= 1 / 255 + 1e-6  # equal up to a rare rounding flip
        assert (got == expected).float().mean() > 0.99


def test_margins():
    assert margin("bicubic", 4) == 8
    assert margin("div2k-unknown", 4) == 16
    assert margin("blur+noise+jpeg", 4, BlurNoiseJpeg(kernel_size=21)) == 20


# ---------------------------------------------------------------- JPEG


def test_jpeg_tables_follow_ijg_scaling():
    luma, chroma = jpeg_tables(torch.tensor([50, 100, 10]))
    assert luma[0, 0].tolist()[:3] == [16, 11, 10] and chroma[0, 0, 0] == 17
    assert (luma[1] == 1).all() and (chroma[1] == 1).all()
    assert luma[2, 0, 0] == 80  # 16 * 500 / 100


def test_jpeg_simulation_matches_pil(shared_data):
    u8 = read_rgb_u8(shared_data / "benchmarks/set5/HR/img_003.png")[:120, :136]  # not a multiple of 16
    x = to_tensor(u8)
    qualities = [20, 50, 90]
    ours = jpeg(x.expand(3, -1, -1, -1), torch.tensor(qualities))  # one batch, one quality per image
    for i, q in enumerate(qualities):
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=q)
        pil = to_tensor(np.asarray(Image.open(buf).convert("RGB")))
        assert psnr(ours[i : i + 1], pil) > 35.0, q
    assert psnr(ours[0:1], x) < psnr(ours[2:3], x)  # lower quality, more loss


# ---------------------------------------------------------------- blur + noise + JPEG


def test_gaussian_kernels_are_normalised_and_isotropic_ones_symmetric():
    k = gaussian_kernels(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.7]), 9)
    assert k.shape == (2, 9, 9)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(2))
    assert torch.allclose(k[0], k[0].T) and torch.allclose(k[0], k[0].flip(0))
    assert not torch.allclose(k[1], k[1].T)


def test_blur_noise_jpeg_is_seeded_per_image_and_quantised(generator):
    gt = smooth_image(generator).expand(4, -1, -1, -1)
    a = degrade(gt, "blur+noise+jpeg", 4, torch.Generator().manual_seed(7))
    b = degrade(gt, "blur+noise+jpeg", 4, torch.Generator().manual_seed(7))
    c = degrade(gt, "blur+noise+jpeg", 4, torch.Generator().manual_seed(8))
    assert a.shape == (4, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each image draws its own parameters
    assert torch.equal(a, (a * 255).round() / 255) and a.min() >= 0 and a.max() <= 1


def test_blur_noise_jpeg_with_every_step_off_is_bicubic(generator):
    gt = smooth_image(generator)
    off = BlurNoiseJpeg(blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    assert torch.equal(degrade(gt, "blur+noise+jpeg", 4, generator, off), degrade(gt, "bicubic", 4))


def test_clear_errors():
    gt = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(gt, "gaussian", 4)
    with pytest.raises(ValueError, match="scale 4 only"):
        degrade(gt, "div2k-unknown", 2)
    with pytest.raises(ValueError, match="Generator"):
        degrade(gt, "blur+noise+jpeg", 4)
    with pytest.raises(ValueError, match="odd"):
        BlurNoiseJpeg(kernel_size=4)
    with pytest.raises(ValueError, match="jpeg_quality"):
        BlurNoiseJpeg(jpeg_quality=(50, 120))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_cuda_matches_cpu(kind, generator):
    gt = smooth_image(generator).expand(2, -1, -1, -1).contiguous()
    cpu = degrade(gt, kind, 4, torch.Generator().manual_seed(3))
    gpu = degrade(gt.cuda(), kind, 4, torch.Generator().manual_seed(3))  # CPU generator, CUDA tensors
    assert gpu.device.type == "cuda"
    if kind == "realistic":  # a rounding flip before a JPEG step can move a whole 8x8 block a little
        assert (gpu.cpu() - cpu).abs().mean() <= 1 / 255
    else:
        assert (gpu.cpu() - cpu).abs().max() <= 2 / 255
    other = degrade(gt.cuda(), kind, 4, torch.Generator("cuda").manual_seed(3))  # or a CUDA generator
    assert other.shape == cpu.shape
