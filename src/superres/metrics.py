"""Image quality by the community's SR protocol: 8-bit quantisation, Y of ITU-R BT.601, border crop.

PSNR and SSIM follow the published x4 tables (MATLAB `rgb2ycbcr`, SSIM with an 11x11 Gaussian window of sigma 1.5,
as scikit-image computes it with `gaussian_weights=True, use_sample_covariance=False`). Inputs are (C, H, W) float
tensors in [0, 1]; C = 1 counts as Y already. Two measures of this package's own compare SR with HR by ratio
(1.0 = as HR): `gradient_energy` (sharpness) and `periodic_energy` (checkerboard artifacts).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

# MATLAB rgb2ycbcr, Y row, for RGB on the 0..255 scale: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def _to_255(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, C) float64 on 0..255, rounded to 8-bit levels like a saved PNG."""
    if image.dim() != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
    array = image.detach().float().clamp(0, 1).mul(255).round().cpu().numpy().astype(np.float64)
    return array.transpose(1, 2, 0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Y of (H, W, 3) on 0..255, one element at a time: a matrix product's summation order depends on the memory
    layout, so equal pixels stored differently (a channels-last tensor) would get Y values a rounding apart."""
    return rgb[..., 0] * _Y_WEIGHTS[0] + rgb[..., 1] * _Y_WEIGHTS[1] + rgb[..., 2] * _Y_WEIGHTS[2] + 16.0


def _prepare(sr: torch.Tensor, gt: torch.Tensor, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != gt.shape:
        raise ValueError(f"image sizes differ: {tuple(sr.shape)} vs {tuple(gt.shape)}")
    a, b = _to_255(sr), _to_255(gt)
    if y_channel and a.shape[2] == 3:
        a, b = _luma(a), _luma(b)  # (H, W)
    elif a.shape[2] == 1 or y_channel:
        a, b = a[..., 0], b[..., 0]
    if crop_border:
        a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB on the 0..255 scale (inf for identical images)."""
    a, b = _prepare(sr, gt, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity, 11x11 Gaussian window with sigma 1.5; RGB is the mean over channels."""
    a, b = _prepare(sr, gt, crop_border, y_channel)
    return float(
        structural_similarity(
            a,
            b,
            data_range=255.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=2 if a.ndim == 3 else None,
        )
    )


def gradient_energy(image: torch.Tensor, *, crop_border: int = 0) -> float:
    """Mean Sobel gradient magnitude of the luma on the 0..255 scale: a sharpness measure.

    The ratio gradient_energy(sr) / gradient_energy(gt) is below 1 for over-smoothed output and near 1 when the
    output has as much fine detail as the ground truth.
    """
    y, _ = _prepare(image, image, crop_border, y_channel=True)
    y = torch.from_numpy(y)[None, None]  # (1, 1, H, W)
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=torch.float64)
    kernels = torch.stack([sobel, sobel.T])[:, None]  # (2, 1, 3, 3)
    grad = torch.nn.functional.conv2d(y, kernels)  # (1, 2, H-2, W-2)
    return float(grad.pow(2).sum(1).sqrt().mean())


def periodic_peaks(height: int, width: int, period: int) -> torch.Tensor:
    """(height, width) bool: the FFT bins of a `period`-periodic pattern, (k * height / period, l * width / period)
    for k, l = 0..period-1, except DC (the mean, not a pattern). The sizes must be multiples of `period`."""
    if height % period or width % period:
        raise ValueError(f"a {period}-periodic pattern needs sizes that are multiples of {period}, got {height}x{width}")
    peaks = torch.zeros(height, width, dtype=torch.bool)
    peaks[:: height // period, :: width // period] = True
    peaks[0, 0] = False
    return peaks


def periodic_energy(image: torch.Tensor, *, period: int = 4, crop_border: int = 0) -> float:
    """Spectral energy of the luma at the frequencies of a `period`-periodic pattern: a checkerboard measure.

    A x4 model's sub-pixel or transposed-conv artifacts repeat every 4 output pixels (and every 2), so their energy
    sits at the frequencies k/4 cycles per pixel on each axis. Definition: Y on the 0..255 scale (border cropped,
    then the bottom and right cut to a multiple of `period`, so those frequencies fall on exact FFT bins), its mean
    removed, times a 2-D periodic Hann window (so the image's own edges do not leak along the axes); the power
    spectrum |FFT|^2 summed over a 3x3-bin window (the Hann main lobe) around each (k*H/period, l*W/period),
    k, l = 0..period-1, except the DC term (0, 0), and divided by the number of pixels. Compare SR with HR by ratio,
    `periodic_energy(sr) / periodic_energy(gt)`: 1.0 for HR itself, below 1 for a blurry output, above 1 where
    the output has a periodic pattern the HR has not."""
    y, _ = _prepare(image, image, crop_border, y_channel=True)
    h, w = y.shape[0] // period * period, y.shape[1] // period * period
    y = torch.from_numpy(y[:h, :w])  # (h, w) float64
    window = torch.outer(torch.hann_window(h, dtype=torch.float64), torch.hann_window(w, dtype=torch.float64))
    power = torch.fft.fft2((y - y.mean()) * window).abs().square()  # (h, w)
    peaks = periodic_peaks(h, w, period)
    near = torch.zeros_like(peaks)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= peaks.roll((dy, dx), (0, 1))  # frequencies wrap around: bin -1 is bin h-1
    return float(power[near].sum()) / (h * w)
