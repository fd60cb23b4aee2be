"""Named test conditions: the low-quality input a benchmark image gets, one name per kind of damage photos have.

Each condition is deterministic: the LR of an image depends only on its pixels and the condition's name (the noise
is seeded by a hash of both), and compression uses Pillow's real JPEG encoder. Sigmas of blur are in HR pixels,
noise sigmas in 0..255 units.

    bicubic        bicubic x4 (MATLAB imresize), the classic benchmark input
    div2k-unknown  the DIV2K "unknown" track's blur and decimation (`superres.data.degrade.div2k_unknown`)
    blur           isotropic Gaussian sigma 1.6, then bicubic x4
    noise          bicubic x4, then Gaussian noise sigma 10
    jpeg           bicubic x4, then JPEG quality 40
    camera         Gaussian sigma 1.2, bicubic x4, Gaussian noise sigma 5, JPEG quality 60
    jpeg90         x1 only: JPEG quality 90, a good photo as cameras and phones save it

At x1 (restoration at the same size) the decimation is left out and bicubic and div2k-unknown do not exist
(`applies`). There a clean input would be a trivial test (the identity passes it), so the test that a model does
no harm to a good photo, which `bicubic` is at x4, is `jpeg90`. Where a test folder holds real LR files for a
condition (`LR_bicubic/`, `LR_unknown/`), those are used instead (`superres.evaluate.test_images`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from superres.data.degrade import blur, degrade, gaussian_kernels, quantize
from superres.imageio import encode_decode


@dataclass(frozen=True)
class Condition:
    name: str
    decimation: str = "bicubic"  # "bicubic" or "div2k-unknown"
    blur_sigma: float = 0.0  # isotropic Gaussian before the decimation, HR pixels; 0 = none
    noise_sigma: float = 0.0  # Gaussian noise after it, 0..255; 0 = none
    jpeg_quality: int = 0  # Pillow JPEG last; 0 = none
    only_scale: int = 0  # the one scale at which the condition exists; 0 = any


CONDITIONS = {
    c.name: c
    for c in (
        Condition("bicubic"),
        Condition("div2k-unknown", decimation="div2k-unknown", only_scale=4),
        Condition("blur", blur_sigma=1.6),
        Condition("noise", noise_sigma=10.0),
        Condition("jpeg", jpeg_quality=40),
        Condition("camera", blur_sigma=1.2, noise_sigma=5.0, jpeg_quality=60),
        Condition("jpeg90", jpeg_quality=90, only_scale=1),
    )
}
BLUR_SIZE = 21  # taps of the Gaussian: +-10 pixels, beyond 6 sigma for sigma 1.6


def blur_kernel(condition: Condition) -> torch.Tensor:
    """The condition's isotropic Gaussian, (1, BLUR_SIZE, BLUR_SIZE) summing to 1 (for a condition with blur)."""
    sigma = torch.tensor([condition.blur_sigma])
    return gaussian_kernels(sigma, sigma, torch.zeros(1), BLUR_SIZE)


def applies(name: str, scale: int) -> bool:
    """Whether the condition `name` exists at `scale`: div2k-unknown is x4 only, jpeg90 x1 only, and at x1
    (restoration at the same size) only the conditions that damage the image (blur, noise, jpeg, camera, jpeg90) are
    tests."""
    condition = CONDITIONS[name]
    if condition.only_scale and condition.only_scale != scale:
        return False
    return scale != 1 or bool(condition.blur_sigma or condition.noise_sigma or condition.jpeg_quality)


def conditions_at(scale: int) -> list[str]:
    """The names of the conditions that exist at `scale`, in `CONDITIONS` order (what `--degradations all` runs)."""
    return [name for name in CONDITIONS if applies(name, scale)]


def own_conditions(degradation: str, scale: int) -> list[str]:
    """The test conditions a model trained for `degradation` at `scale` is checked under: its own, or for a model
    for any photo the clean (bicubic) and the camera condition where they exist at its scale (camera only at x1)."""
    return [degradation] if degradation in CONDITIONS else [c for c in ("bicubic", "camera") if applies(c, scale)]


def condition_seed(gt: torch.Tensor, name: str) -> int:
    """A 63-bit seed from the image's pixels and the condition's name."""
    digest = hashlib.sha256(name.encode() + b"\0" + gt.detach().to("cpu", torch.float32).numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def condition_lq(gt: torch.Tensor, name: str, scale: int = 4) -> torch.Tensor:
    """The LR of the condition `name` for one ground truth (3, H, W) in [0, 1] -> (3, H // s, W // s), 8-bit levels."""
    condition = CONDITIONS.get(name)
    if condition is None:
        raise ValueError(f"unknown test condition {name!r}; expected one of {', '.join(CONDITIONS)}")
    if not applies(name, scale):
        raise ValueError(f"the test condition {name} does not exist at x{scale}; at x{scale} there are "
                         f"{', '.join(conditions_at(scale))}")
    x = gt[None].float()  # (1, 3, H, W)
    if condition.blur_sigma:
        x = blur(x, blur_kernel(condition))
    lq = degrade(x, condition.decimation, scale)[0]  # on 8-bit levels
    if condition.noise_sigma:
        generator = torch.Generator().manual_seed(condition_seed(gt, name))
        noise = torch.randn(lq.shape, generator=generator) * (condition.noise_sigma / 255.0)
        lq = quantize(lq + noise)
    if condition.jpeg_quality:
        lq, _ = encode_decode(lq, "JPEG", condition.jpeg_quality)
    return lq
