"""Degradations that turn ground truth into low-quality input: batched, device-agnostic, float32 NCHW in [0, 1].

Four kinds (`DEGRADATIONS`):

- ``"bicubic"``: MATLAB-``imresize``-style bicubic downscale (Keys cubic a = -0.5, antialiased).
- ``"div2k-unknown"``: the fixed 36x36 blur + x4 decimation of the DIV2K "unknown" track
  (``LR[i, j] = sum_{u,v} k[u, v] * HR[4i + u - 16, 4j + v - 16]``, edges mirrored, see `div2k_unknown`).
- ``"blur+noise+jpeg"``: Gaussian blur (isotropic or anisotropic), bicubic downscale, Gaussian noise and JPEG,
  with parameters drawn per image from the ranges in `BlurNoiseJpeg`.
- ``"realistic"``: a random mix of blur kernels, resizes, noise and JPEG, once or twice, per image
  (`superres.data.realistic`, ranges in `Realistic`): for models meant for any photo.

Randomness comes only from the `generator` argument. It may live on any device: numbers are drawn on the
generator's device and then moved to the tensors' device, so a CPU generator works for CUDA tensors (same seed,
same generator device -> same batch; a CUDA generator gives a different, equally valid stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch
import torch.nn.functional as F

DEGRADATIONS = ("bicubic", "div2k-unknown", "blur+noise+jpeg", "realistic")

if TYPE_CHECKING:
    from superres.data.realistic import Realistic

Params = Union["BlurNoiseJpeg", "Realistic"]

_KERNEL_PATH = Path(__file__).parent / "kernel_x4.npy"
_KERNEL_OFFSET = 16  # HR index of kernel tap u for LR pixel i is 4*i + u - 16


# ---------------------------------------------------------------- random numbers on the generator's device


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 drawn on the generator's device, returned on `device`."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * _rand((n,), generator, device)


# ---------------------------------------------------------------- edges


EDGE_MODES = {"bicubic": "replicate", "div2k-unknown": "symmetric", "blur+noise+jpeg": "replicate", "realistic": "replicate"}


def edge_index(n: int, start: int, stop: int, mode: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices into a length-`n` axis for positions start .. stop - 1, outside ones mapped by the edge `mode`."""
    i = torch.arange(start, stop, device=device)
    if mode == "replicate":
        return i.clamp(0, n - 1)
    if mode == "symmetric":  # mirror that repeats the edge pixel: ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...
        i = i % (2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    raise ValueError(f"unknown edge mode {mode!r}; expected 'replicate' or 'symmetric'")


def _pad_axis(x: torch.Tensor, pad: int, mode: str, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    if mode == "replicate":
        shape = list(x.shape)
        shape[dim] = pad
        before, after = x.narrow(dim, 0, 1).expand(shape), x.narrow(dim, n - 1, 1).expand(shape)
    elif mode == "symmetric" and pad <= n:
        before, after = x.narrow(dim, 0, pad).flip(dim), x.narrow(dim, n - pad, pad).flip(dim)
    else:  # the general (and slower) way: gather
        return x.index_select(dim, edge_index(n, -pad, n + pad, mode, x.device))
    return torch.cat([before, x, after], dim)


def pad_edges(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of any tensor (any dtype, uint8 included) by `pad` on every side.

    ``mode="replicate"`` repeats the edge pixel; ``mode="symmetric"`` mirrors the image including its edge pixel
    (MATLAB's ``padarray(..., "symmetric")``), periodically if `pad` exceeds the image.
    """
    if pad == 0:
        return x
    return _pad_axis(_pad_axis(x, pad, mode, -2), pad, mode, -1)


# ---------------------------------------------------------------- bicubic


def resize_bicubic(
    x: torch.Tensor, size: tuple[int, int] | None = None, scale_factor: float | None = None
) -> torch.Tensor:
    """PIL ``Image.BICUBIC`` resize of (B, C, H, W) to `size` = (h, w) or by `scale_factor`; clamped to [0, 1].

    Keys cubic with a = -0.5, antialiased (kernel stretched) when downscaling. This is torch's
    ``interpolate(mode="bicubic", antialias=True)``, which matches PIL to about 0.1 to 0.2 levels of 255 mean
    absolute difference on photos, both ways (PIL keeps a uint8 intermediate between its two passes, we do not).
    """
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size or scale_factor")
    if size is None:
        size = (int(math.floor(x.shape[-2] * scale_factor)), int(math.floor(x.shape[-1] * scale_factor)))
    y = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp(0.0, 1.0)


def bicubic(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic downscale by an integer `scale`, like the official MATLAB ``imresize`` LR of the SR benchmarks.

    (B, C, H, W) -> (B, C, H // s, W // s); rows and columns past a multiple of `scale` are dropped first. Edges are
    replicated by 2*scale pixels (the kernel's reach) before resizing, which reproduces the official Set5/Set14 LR
    files at the 8-bit rounding floor (about 58 dB) right up to the border; symmetric padding (what MATLAB's code
    describes) or PIL's renormalised edge weights lose 1 to 8 dB there. Not clamped: a linear map.
    """
    h, w = gt.shape[-2] // scale, gt.shape[-1] // scale
    pad = 2 * scale
    x = pad_edges(gt[..., : h * scale, : w * scale], pad, EDGE_MODES["bicubic"])
    y = F.interpolate(x, size=(h + 4, w + 4), mode="bicubic", align_corners=False, antialias=True)
    return y[..., 2 : 2 + h, 2 : 2 + w]  # (B, C, H/s, W/s)


# ---------------------------------------------------------------- DIV2K unknown x4


@lru_cache(maxsize=1)
def _div2k_kernel_cpu() -> torch.Tensor:
    return torch.from_numpy(np.load(_KERNEL_PATH)).float()  # (36, 36), sum 1


def div2k_kernel(device: torch.device | str = "cpu") -> torch.Tensor:
    """The DIV2K unknown x4 kernel (36, 36) float32, fitted on real HR/LR pairs (see the data README)."""
    return _div2k_kernel_cpu().to(device)


def div2k_unknown(gt: torch.Tensor) -> torch.Tensor:
    """The DIV2K "unknown" x4 degradation, unquantised: (B, C, H, W) -> (B, C, H // 4, W // 4).

    ``LR[i, j, c] = sum_{u,v} k[u, v] * HR[4i + u - 16, 4j + v - 16, c]``, with HR outside the image taken from
    its mirror image including the edge pixel (symmetric padding). The data README says "edge pixels replicated",
    but the real LR files disagree: on the four DIV2K validation pairs, symmetric padding reproduces them at
    57.2 to 59.1 dB PSNR over all pixels, plain edge replication at only 48.8 to 55.8 dB (its errors sit in the
    outer 2 LR rows and columns); the interior is identical either way.
    """
    h4, w4 = gt.shape[-2] // 4, gt.shape[-1] // 4
    return _div2k_valid(pad_edges(gt[..., : 4 * h4, : 4 * w4], _KERNEL_OFFSET, EDGE_MODES["div2k-unknown"]))


def _div2k_valid(x: torch.Tensor) -> torch.Tensor:
    """The kernel applied where it fits: (B, C, H, W) -> (B, C, (H - 32) // 4, (W - 32) // 4), LR pixel i
    from HR rows 4i .. 4i + 35, i.e. the LR of the interior of `x` that has 16 pixels of context on each side."""
    b, c, h, w = x.shape
    k = div2k_kernel(x.device).to(x.dtype)
    y = F.conv2d(x.reshape(b * c, 1, h, w), k[None, None], stride=4)  # a correlation: tap u meets row 4i + u
    return y.reshape(b, c, y.shape[-2], y.shape[-1])


# ---------------------------------------------------------------- blur + noise + JPEG


@dataclass(frozen=True)
class BlurNoiseJpeg:
    """Ranges of the blur -> bicubic downscale -> noise -> JPEG chain; each image draws its own values.

    Sigmas of the blur are in HR pixels; noise sigma is in 0..255 units; JPEG quality is IJG quality (1..100).
    Each step happens with its probability, independently per image.
    """

    blur_prob: float = 1.0
    kernel_size: int = 21
    iso_sigma: tuple[float, float] = (0.2, 3.0)
    aniso_prob: float = 0.5
    aniso_sigma: tuple[float, float] = (0.2, 3.0)  # each axis of the ellipse, drawn independently, random angle
    noise_prob: float = 0.8
    noise_sigma: tuple[float, float] = (1.0, 25.0)
    jpeg_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        for name in ("blur_prob", "aniso_prob", "noise_prob", "jpeg_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("iso_sigma", "aniso_sigma", "noise_sigma", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        if self.iso_sigma[0] <= 0 or self.aniso_sigma[0] <= 0:
            raise ValueError("blur sigmas must be positive")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got {self.jpeg_quality}")


def gaussian_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Anisotropic Gaussian kernels (B, size, size), each summing to 1; sigma_x == sigma_y gives isotropic ones."""
    r = torch.arange(size, device=sigma_x.device, dtype=torch.float32) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")  # (k, k)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u = cos * xx + sin * yy  # coordinates in the ellipse's own axes, (B, k, k)
    v = -sin * xx + cos * yy
    k = torch.exp(-0.5 * ((u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2))
    k = torch.where(k < 1e-12, 0.0, k)  # no denormal floats: they make CPU convolutions 10x slower
    return k / k.sum(dim=(1, 2), keepdim=True)


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur each image of (B, C, H, W) with its own kernel from (B, k, k); edges replicated."""
    b, c, h, w = x.shape
    p = kernels.shape[-1] // 2
    xp = pad_edges(x.reshape(1, b * c, h, w), p, "replicate")
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0)[:, None]  # (B*C, 1, k, k)
    return F.conv2d(xp, weight, groups=b * c).reshape(b, c, h, w)


# The IJG (libjpeg) base tables, Annex K of the JPEG standard, in natural (row-major) order.
_LUMA_Q = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_Q = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)


def jpeg_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IJG quantisation tables scaled by quality (B,) in 1..100 -> (luma, chroma), each (B, 8, 8) float32."""
    q = quality.float().clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None, None]
    tables = []
    for base in (_LUMA_Q, _CHROMA_Q):
        t = torch.tensor(base, dtype=torch.float32, device=quality.device)
        tables.append(torch.floor((t * scale + 50.0) / 100.0).clamp(1, 255))
    return tables[0], tables[1]


@lru_cache(maxsize=4)
def _dct_matrix(device: str) -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float().to(device)  # orthonormal DCT-II: coefficients = D @ block @ D.T


def _blocks_roundtrip(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """DCT, quantise, dequantise, inverse DCT on every 8x8 block of (B, C, H, W) level-shifted samples."""
    b, c, h, w = plane.shape
    blocks = plane.reshape(b, c, h // 8, 8, w // 8, 8).transpose(3, 4)  # (B, C, H/8, W/8, 8, 8)
    coef = dct @ blocks @ dct.T
    t = table[:, None, None, None]  # (B, 1, 1, 1, 8, 8)
    coef = torch.round(coef / t) * t
    blocks = dct.T @ coef @ dct
    return blocks.transpose(3, 4).reshape(b, c, h, w)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Batched JPEG compression and decompression of (B, 3, H, W) in [0, 1] with per-image quality (B,).

    Baseline JFIF as PIL/libjpeg writes it by default: full-range YCbCr, 4:2:0 chroma (2x2 means), orthonormal
    8x8 DCT, IJG tables scaled by quality, rounding; decoding upsamples chroma with libjpeg's "fancy" triangle
    filter (bilinear, half-pixel centres). Edges are replicated up to whole 16x16 macroblocks, then cropped.
    """
    b, _, h, w = x.shape
    luma_q, chroma_q = jpeg_tables(quality.to(x.device))
    dct = _dct_matrix(str(x.device))
    ph, pw = -h % 16, -w % 16
    rgb = F.pad(x.float().clamp(0, 1) * 255.0, (0, pw, 0, ph), mode="replicate")  # as libjpeg fills MCUs
    r, g, bl = rgb.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl + 128.0
    y = torch.round(y)[:, None]  # (B, 1, H16, W16)
    chroma = torch.round(F.avg_pool2d(torch.stack([cb, cr], 1), 2))  # (B, 2, H16/2, W16/2)
    y = _blocks_roundtrip(y - 128.0, luma_q, dct) + 128.0
    chroma = _blocks_roundtrip(chroma - 128.0, chroma_q, dct) + 128.0
    y = y.round().clamp(0, 255)
    chroma = F.interpolate(chroma.round().clamp(0, 255), scale_factor=2, mode="bilinear", align_corners=False)
    y, cb, cr = y[:, 0], chroma[:, 0] - 128.0, chroma[:, 1] - 128.0
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)  # (B, 3, H16, W16)
    return (rgb[..., :h, :w].round().clamp(0, 255) / 255.0).to(x.dtype)


def blur_noise_jpeg(
    gt: torch.Tensor, scale: int, generator: torch.Generator, params: BlurNoiseJpeg | None = None
) -> torch.Tensor:
    """Blur -> bicubic downscale -> Gaussian noise -> JPEG, parameters drawn per image; unquantised output.

    Every call draws the same number of random values for a given batch size, whatever the probabilities say,
    so an image's parameters depend only on the seed and its position in the batch.
    """
    if generator is None:
        raise ValueError("blur+noise+jpeg is random: pass an explicit torch.Generator")
    p = params or BlurNoiseJpeg()
    b, dev = gt.shape[0], gt.device
    do_blur = _rand((b,), generator, dev) < p.blur_prob
    aniso = _rand((b,), generator, dev) < p.aniso_prob
    iso = _uniform(b, p.iso_sigma, generator, dev)
    sx = torch.where(aniso, _uniform(b, p.aniso_sigma, generator, dev), iso)
    sy = torch.where(aniso, _uniform(b, p.aniso_sigma, generator, dev), iso)
    theta = _uniform(b, (0.0, math.pi), generator, dev)
    do_noise = _rand((b,), generator, dev) < p.noise_prob
    noise_sigma = _uniform(b, p.noise_sigma, generator, dev) / 255.0
    do_jpeg = _rand((b,), generator, dev) < p.jpeg_prob
    quality = torch.floor(_uniform(b, (p.jpeg_quality[0], p.jpeg_quality[1] + 1), generator, dev))
    quality = quality.clamp(max=p.jpeg_quality[1])

    kernels = gaussian_kernels(sx, sy, theta, p.kernel_size)  # (B, k, k)
    x = torch.where(do_blur[:, None, None, None], blur(gt, kernels), gt)
    x = bicubic(x, scale)  # (B, C, H/s, W/s)
    noise = _randn(tuple(x.shape), generator, dev) * noise_sigma[:, None, None, None]
    x = (x + noise * do_noise[:, None, None, None]).clamp(0.0, 1.0)
    if p.jpeg_prob > 0:  # decided on the host: no device sync
        x = torch.where(do_jpeg[:, None, None, None], jpeg(x, quality), x)
    return x


# ---------------------------------------------------------------- the entry point


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels and clamp to [0, 1], as saving to a PNG and reading it back would."""
    return (x * 255.0).round().clamp(0.0, 255.0) / 255.0


def _check_kind(kind: str, scale: int) -> None:
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; expected one of {DEGRADATIONS}")
    if kind == "div2k-unknown" and scale != 4:
        raise ValueError(f"div2k-unknown exists for scale 4 only, got scale={scale}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")


def _check_batch(gt: torch.Tensor, kind: str, scale: int) -> None:
    _check_kind(kind, scale)
    if gt.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(gt.shape)}")


def make_params(kind: str, values: dict | None = None) -> Params | None:
    """The parameter object of a random degradation (`BlurNoiseJpeg` or `Realistic`) from plain values, as a TOML
    table gives them (arrays become tuples); None for the deterministic kinds, which take no parameters."""
    from superres.data.realistic import Realistic

    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items()}
    cls = {"blur+noise+jpeg": BlurNoiseJpeg, "realistic": Realistic}.get(kind)
    if cls is None:
        if values:
            raise ValueError(f"the {kind} degradation takes no parameters, got {sorted(values)}")
        return None
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"{kind} parameters: {error}") from None


def degrade(
    gt: torch.Tensor,
    kind: str,
    scale: int = 4,
    generator: torch.Generator | None = None,
    params: Params | None = None,
) -> torch.Tensor:
    """Low-quality input for ground truth: (B, C, H, W) in [0, 1] -> (B, C, H // s, W // s) on 8-bit levels.

    `generator` is needed by the random kinds only ("blur+noise+jpeg", "realistic"); `params` likewise
    (`BlurNoiseJpeg` or `Realistic`; None means the defaults).
    """
    _check_batch(gt, kind, scale)
    if kind == "bicubic":
        lq = bicubic(gt, scale)
    elif kind == "div2k-unknown":
        lq = div2k_unknown(gt)
    elif kind == "realistic":
        from superres.data.realistic import realistic

        lq = realistic(gt, scale, generator, params)
    else:
        lq = blur_noise_jpeg(gt, scale, generator, params)
    return quantize(lq)


def degrade_interior(
    gt: torch.Tensor,
    kind: str,
    scale: int = 4,
    generator: torch.Generator | None = None,
    params: Params | None = None,
) -> torch.Tensor:
    """Low-quality input for the interior of a crop that carries ``m = margin(kind, scale, params)`` HR pixels of
    context on each side: (B, C, H, W) -> (B, C, (H - 2m) // s, (W - 2m) // s), on 8-bit levels.

    For a crop of a larger image, this is the same crop of `degrade` of the whole image (see `margin`), computed
    without padding where the degradation allows it (div2k-unknown: 2.8x less work for 96 px patches).
    """
    _check_batch(gt, kind, scale)
    m = margin(kind, scale, params)
    if kind == "div2k-unknown":
        return quantize(_div2k_valid(gt))
    mm = m // scale
    lq = degrade(gt, kind, scale, generator, params)
    return lq[..., mm : lq.shape[-2] - mm, mm : lq.shape[-1] - mm]


def margin(kind: str, scale: int = 4, params: Params | None = None) -> int:
    """HR pixels of context, a multiple of `scale`, needed on each side of a crop so that degrading the crop and
    dropping ``margin // scale`` LR pixels on each side equals cropping the degraded whole image.

    Exact for the deterministic kinds; for blur+noise+jpeg the blur and downscale are exact, while the noise and
    the JPEG block grid are statistically the same (the grid sits at another phase); for realistic see
    `Realistic.margin`.
    """
    _check_kind(kind, scale)
    if kind == "realistic":
        return (params or make_params(kind)).margin(scale)
    if kind == "bicubic":
        reach = 2 * scale  # the antialiased cubic spans 4*scale HR pixels around each LR centre
    elif kind == "div2k-unknown":
        reach = _KERNEL_OFFSET  # taps 4i - 16 .. 4i + 19 around the HR block 4i .. 4i + 3
    else:
        reach = (params or BlurNoiseJpeg()).kernel_size // 2 + 2 * scale
    return -(-reach // scale) * scale
