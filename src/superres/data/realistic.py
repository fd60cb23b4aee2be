"""The `realistic` degradation: a random mix of blur, resizing, noise and JPEG, once or twice, drawn per image.

A photo's history is unknown: it may be sharp or blurred, resized with any filter, noisy, compressed, and all of
that more than once. A model trained on one fixed degradation inverts that one on every input (and wrecks the
others), so a model meant for any photo is trained on a random mix, as Real-ESRGAN and BSRGAN do. Per image, with
the default `Realistic` ranges (sigmas in HR pixels, noise in 0..255 units):

    clean       clean_prob 0.2: only the plain bicubic downscale, so clean input keeps a real share
    first pass  blur     none 0.35, isotropic Gaussian 0.2, anisotropic Gaussian 0.1, generalized Gaussian 0.03,
                         plateau 0.03, sinc 0.04, div2k-unknown 0.25 (`kernel_weights`, in `KERNELS` order);
                         sigma 0.2..2.5 per axis at a random angle, generalized beta 0.5..4, plateau beta 1..2,
                         sinc cutoff pi/3..pi; div2k-unknown is the fixed DIV2K kernel with its own x4
                         decimation (and shift), so it replaces the resize
                resize   to f times the final LR size: f in (1, 2] with 0.2, in [0.75, 1) with 0.1, exactly 1
                         with 0.7 (`resize_weights`: up, down, keep); bicubic, bilinear or area
                noise    noise_prob 0.5: Gaussian sigma 1..20, or Poisson (poisson_prob 0.3 of the noisy images,
                         photon peak 50..3000, log-uniform); gray (the same in every channel) with 0.4
    second pass second_prob 0.1: JPEG (jpeg_prob, quality 30..95), blur (sigma 0.2..1.2), resize by 0.75..1.25,
                noise (sigma 1..10)
    final       resize to exactly the LR size (HR / scale): bicubic, bilinear or area; a sinc filter with
                final_sinc_prob 0.03; JPEG with jpeg_prob 0.6, quality 30..95

These defaults are a mild mix, centred on what photos commonly have (the named test conditions of
`superres.data.conditions` lie well inside it), so that a small network trained for hours rather than days learns
to tell them apart; Real-ESRGAN's far heavier ranges are a config away (`data.degradation_params`).

JPEG is `superres.data.degrade.jpeg`, which follows Pillow's (libjpeg's) encoder. Every step is a batched tensor
operation except the resizes: images take different sizes on the way, so each is resized by its own
``F.interpolate`` call and the batch is padded to a common canvas (edges replicated, as libjpeg and the blur pad)
for the batched steps. Knowing those sizes costs one host synchronisation per call on a GPU.

Randomness comes only from the `generator` (on any device, as in `superres.data.degrade`). Every parameter is
drawn before any pixel is touched, the same number of draws for a given batch size, so an image's parameters
depend only on the seed and its position in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from superres.data.degrade import (
    _rand,
    _randn,
    _uniform,
    bicubic,
    blur,
    div2k_kernel,
    div2k_unknown,
    gaussian_kernels,
    jpeg,
)

KERNELS = ("none", "isotropic", "anisotropic", "generalized", "plateau", "sinc", "div2k-unknown")
RESIZE_MODES = ("bicubic", "bilinear", "area")
_DIV2K = KERNELS.index("div2k-unknown")


@dataclass(frozen=True)
class Realistic:
    """Ranges and probabilities of the realistic mix (see the module docstring); each image draws its own values."""

    clean_prob: float = 0.2
    kernel_size: int = 21
    kernel_weights: tuple[float, ...] = (0.35, 0.2, 0.1, 0.03, 0.03, 0.04, 0.25)  # over KERNELS
    sigma: tuple[float, float] = (0.2, 2.5)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)  # radians per pixel
    resize_weights: tuple[float, float, float] = (0.2, 0.1, 0.7)  # up, down, keep (relative to the LR size)
    resize_up: tuple[float, float] = (1.0, 2.0)
    resize_down: tuple[float, float] = (0.75, 1.0)
    noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 20.0)
    poisson_prob: float = 0.3
    poisson_peak: tuple[float, float] = (50.0, 3000.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)
    second_prob: float = 0.1
    kernel_weights2: tuple[float, ...] = (0.2, 0.3, 0.2, 0.1, 0.1, 0.1, 0.0)
    sigma2: tuple[float, float] = (0.2, 1.2)
    resize2: tuple[float, float] = (0.75, 1.25)
    noise_sigma2: tuple[float, float] = (1.0, 10.0)
    final_sinc_prob: float = 0.03

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1], got {value}")
            if "weights" in f.name and (min(value) < 0 or sum(value) <= 0):
                raise ValueError(f"{f.name} must be non-negative weights with a positive sum, got {value}")
            if isinstance(value, tuple) and "weights" not in f.name and not 0 < value[0] <= value[1]:
                raise ValueError(f"{f.name} must be a range (lo, hi) with 0 < lo <= hi, got {value}")
        if len(self.kernel_weights) != len(KERNELS) or len(self.kernel_weights2) != len(KERNELS):
            raise ValueError(f"kernel weights need one value per kernel kind {KERNELS}")
        if self.kernel_weights2[_DIV2K]:
            raise ValueError("the div2k-unknown kernel decimates: it exists in the first pass only")
        if self.kernel_size < 3 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and at least 3, got {self.kernel_size}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got {self.jpeg_quality}")

    def margin(self, scale: int) -> int:
        """HR pixels of context each side of a crop: the reach of a blur, the div2k kernel and a resize, and of
        the second blur. Beyond it, only heavily resized second passes feel the crop's edge (statistically the
        same degradation, not the exact crop of a degraded whole image)."""
        reach = max(self.kernel_size // 2, 19) + 2 * scale + self.kernel_size // 2
        return -(-reach // scale) * scale


# ---------------------------------------------------------------- kernels


def shaped_kernels(
    kind: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, beta: torch.Tensor,
    cutoff: torch.Tensor, size: int,
) -> torch.Tensor:
    """Blur kernels (B, size, size), each summing to 1, one per `kind` index into KERNELS (B,).

    With q the squared distance in the ellipse of axes `sigma_x`, `sigma_y` at angle `theta`: Gaussian
    exp(-q / 2), generalized Gaussian exp(-q**beta / 2), plateau 1 / (1 + q**beta); sinc is the circular low-pass
    with `cutoff` (radians per pixel); none (and div2k-unknown, applied elsewhere) is the identity.
    """
    r = torch.arange(size, device=kind.device, dtype=torch.float32) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")  # (k, k)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u, v = cos * xx + sin * yy, -sin * xx + cos * yy  # the ellipse's own axes, (B, k, k)
    q = (u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2
    b = beta[:, None, None]
    radius = torch.sqrt(xx**2 + yy**2)[None]  # (1, k, k)
    wc = cutoff[:, None, None]
    sinc = torch.where(radius == 0, wc**2 / (4 * math.pi),
                       wc * torch.special.bessel_j1(wc * radius) / (2 * math.pi * radius.clamp(min=1e-6)))
    delta = (radius == 0).float().expand_as(q)
    k = kind[:, None, None]
    out = torch.where(k == KERNELS.index("generalized"), torch.exp(-0.5 * q**b), torch.exp(-0.5 * q))
    out = torch.where(k == KERNELS.index("plateau"), 1.0 / (1.0 + q**b), out)
    out = torch.where(k == KERNELS.index("sinc"), sinc, out)
    out = torch.where((k == KERNELS.index("none")) | (k == _DIV2K), delta, out)
    out = torch.where(out.abs() < 1e-12, 0.0, out)  # no denormal floats: they make CPU convolutions 10x slower
    return out / out.sum(dim=(1, 2), keepdim=True)


def div2k_blur(x: torch.Tensor) -> torch.Tensor:
    """The DIV2K unknown kernel as a same-size blur (no decimation), edges replicated: for scales other than 4."""
    b, c, h, w = x.shape
    k = div2k_kernel(x.device).to(x.dtype)
    xp = F.pad(x.reshape(b * c, 1, h, w), (16, 19, 16, 19), mode="replicate")
    return F.conv2d(xp, k[None, None]).reshape(b, c, h, w)


# ---------------------------------------------------------------- drawing the parameters


def _choice(weights: tuple[float, ...], n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`n` indices drawn with the given weights (one uniform draw each), int64 on `device`."""
    cdf = torch.tensor(weights, dtype=torch.float64).cumsum(0)
    u = _rand((n,), generator, device).double() * float(cdf[-1])
    return torch.bucketize(u, cdf.to(device), right=True).clamp(max=len(weights) - 1)


def _log_uniform(n: int, bounds: tuple[float, float], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.exp(_uniform(n, (math.log(bounds[0]), math.log(bounds[1])), generator, device))


@dataclass
class _Blur:
    kind: torch.Tensor
    kernels: torch.Tensor  # (B, k, k)


@dataclass
class _Noise:
    on: torch.Tensor
    poisson: torch.Tensor
    gray: torch.Tensor
    sigma: torch.Tensor  # of 1.0
    peak: torch.Tensor


def _draw_blur(n: int, weights, sigma, p: Realistic, generator, device) -> _Blur:
    kind = _choice(weights, n, generator, device)
    sx, sy = _uniform(n, sigma, generator, device), _uniform(n, sigma, generator, device)
    sy = torch.where(kind == KERNELS.index("isotropic"), sx, sy)
    theta = _uniform(n, (0.0, math.pi), generator, device)
    beta = torch.where(kind == KERNELS.index("plateau"), _uniform(n, p.plateau_beta, generator, device),
                       _uniform(n, p.generalized_beta, generator, device))
    cutoff = _uniform(n, p.sinc_cutoff, generator, device)
    return _Blur(kind, shaped_kernels(kind, sx, sy, theta, beta, cutoff, p.kernel_size))


def _draw_noise(n: int, sigma, p: Realistic, generator, device) -> _Noise:
    on = _rand((n,), generator, device) < p.noise_prob
    poisson = _rand((n,), generator, device) < p.poisson_prob
    gray = _rand((n,), generator, device) < p.gray_noise_prob
    return _Noise(on, poisson, gray, _uniform(n, sigma, generator, device) / 255.0,
                  _log_uniform(n, p.poisson_peak, generator, device))


def _draw_quality(n: int, p: Realistic, generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    on = _rand((n,), generator, device) < p.jpeg_prob
    q = torch.floor(_uniform(n, (p.jpeg_quality[0], p.jpeg_quality[1] + 1), generator, device))
    return on, q.clamp(max=p.jpeg_quality[1])


def _draw_factor(n: int, p: Realistic, generator, device) -> torch.Tensor:
    """The first resize as a multiple of the final LR size."""
    way = _choice(p.resize_weights, n, generator, device)
    up, down = _log_uniform(n, p.resize_up, generator, device), _uniform(n, p.resize_down, generator, device)
    return torch.where(way == 0, up, torch.where(way == 1, down, torch.ones_like(up)))


# ---------------------------------------------------------------- steps on images of different sizes


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, *size); bicubic and bilinear antialiased when shrinking, like PIL."""
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area") if size[0] <= x.shape[-2] else \
            F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # area only shrinks
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True).clamp(0.0, 1.0)


def _canvas(images: list[torch.Tensor]) -> torch.Tensor:
    """(1, C, h_i, w_i) images -> (B, C, H, W) at the largest size, each padded by repeating its edge pixels."""
    h, w = max(x.shape[-2] for x in images), max(x.shape[-1] for x in images)
    return torch.cat([F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), mode="replicate") for x in images])


def _uncanvas(canvas: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    return [canvas[i : i + 1, :, :h, :w] for i, (h, w) in enumerate(sizes)]


def add_noise(x: torch.Tensor, noise: _Noise, generator: torch.Generator, shot: list[int]) -> torch.Tensor:
    """Gaussian or Poisson noise, in colour or gray, on the images of (B, C, H, W) whose `noise.on` is set.

    `shot` lists (on the host) the images that get Poisson noise: only those are drawn, Poisson draws are slow."""
    b, c, h, w = x.shape
    n = _randn((b, c, h, w), generator, x.device)
    n = torch.where(noise.gray[:, None, None, None], n[:, :1].expand(-1, c, -1, -1), n)
    n = n * noise.sigma[:, None, None, None]
    if shot:
        index = torch.tensor(shot, device=x.device)
        source = torch.cat([x[index], x[index].mean(1, keepdim=True)], 1)  # the colour planes and a gray one
        peak = noise.peak[index][:, None, None, None]
        counts = torch.poisson((source.clamp(0, 1) * peak).to(generator.device), generator=generator)
        grains = counts.to(x.device) / peak - source  # (S, C + 1, H, W)
        grains = torch.where(noise.gray[index][:, None, None, None], grains[:, c:].expand(-1, c, -1, -1),
                             grains[:, :c])
        n = n.index_copy(0, index, grains)
    return (x + n * noise.on[:, None, None, None]).clamp(0.0, 1.0)


def _indices(flags: list[bool]) -> list[int]:
    return [i for i, flag in enumerate(flags) if flag]


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask[:, None, None, None], a, b)


def realistic(gt: torch.Tensor, scale: int, generator: torch.Generator, params: Realistic | None = None) -> torch.Tensor:
    """The realistic mix on (B, C, H, W) in [0, 1] -> (B, C, H // s, W // s), unquantised (see the module)."""
    if generator is None:
        raise ValueError("the realistic degradation is random: pass an explicit torch.Generator")
    p = params or Realistic()
    b, dev = gt.shape[0], gt.device
    h, w = gt.shape[-2] // scale, gt.shape[-1] // scale
    gt = gt[..., : h * scale, : w * scale]

    # Every parameter first, in a fixed order.
    clean = _rand((b,), generator, dev) < p.clean_prob
    blur1 = _draw_blur(b, p.kernel_weights, p.sigma, p, generator, dev)
    factor = _draw_factor(b, p, generator, dev)
    modes = _choice((1.0, 1.0, 1.0), 3 * b, generator, dev).view(3, b)  # resize modes: first, second, final
    noise1 = _draw_noise(b, p.noise_sigma, p, generator, dev)
    second = _rand((b,), generator, dev) < p.second_prob
    jpeg_mid, quality_mid = _draw_quality(b, p, generator, dev)
    blur2 = _draw_blur(b, p.kernel_weights2, p.sigma2, p, generator, dev)
    factor2 = _uniform(b, p.resize2, generator, dev)
    noise2 = _draw_noise(b, p.noise_sigma2, p, generator, dev)
    sinc = _draw_blur(b, (0, 0, 0, 0, 0, 1, 0), p.sigma, p, generator, dev).kernels
    final_sinc = _rand((b,), generator, dev) < p.final_sinc_prob
    jpeg_end, quality_end = _draw_quality(b, p, generator, dev)

    # The sizes are needed on the host: one synchronisation.
    kind1, f1, f2, mode_ids, two, shot1, shot2 = (t.tolist() for t in (
        blur1.kind, factor, factor2, modes, second, noise1.on & noise1.poisson, second & noise2.on & noise2.poisson))
    names = [[RESIZE_MODES[m] for m in row] for row in mode_ids]

    # First pass: blur and resize (the div2k kernel decimates by itself), then noise.
    blurred = blur(gt, blur1.kernels)
    div2k = [k == _DIV2K for k in kind1]
    decimated = div2k_unknown(gt) if any(div2k) and scale == 4 else None  # (B, C, H/4, W/4)
    if any(div2k) and scale != 4:
        blurred = _where(blur1.kind == _DIV2K, div2k_blur(gt), blurred)
    sizes = [(h, w) if d and decimated is not None else (max(1, round(h * f)), max(1, round(w * f)))
             for d, f in zip(div2k, f1)]
    images = [decimated[i : i + 1] if div2k[i] and decimated is not None
              else _resize(blurred[i : i + 1], sizes[i], names[0][i]) for i in range(b)]
    images = _uncanvas(add_noise(_canvas(images), noise1, generator, _indices(shot1)), sizes)

    # Second pass: JPEG, blur, resize, noise.
    if any(two):
        canvas = _canvas(images)
        canvas = _where(second & jpeg_mid, jpeg(canvas, quality_mid), canvas)
        canvas = _where(second, blur(canvas, blur2.kernels), canvas)
        images = _uncanvas(canvas, sizes)
        for i in range(b):
            if two[i]:
                sizes[i] = (max(1, round(sizes[i][0] * f2[i])), max(1, round(sizes[i][1] * f2[i])))
                images[i] = _resize(images[i], sizes[i], names[1][i])
        canvas = _canvas(images)
        images = _uncanvas(_where(second, add_noise(canvas, noise2, generator, _indices(shot2)), canvas), sizes)

    # Final: resize to the LR size, sinc, JPEG; the clean share is the plain bicubic downscale.
    x = torch.cat([_resize(images[i], (h, w), names[2][i]) for i in range(b)])  # (B, C, H/s, W/s)
    x = _where(final_sinc, blur(x, sinc), x).clamp(0.0, 1.0)
    x = _where(jpeg_end, jpeg(x, quality_end), x) if p.jpeg_prob > 0 else x
    return _where(clean, bicubic(gt, scale), x)
