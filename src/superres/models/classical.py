"""Classical restorers at the same size, the baselines of the x1 tables: no weights, fp32 on the CPU.

    input            the degraded image itself (what a model has to beat)
    richardson-lucy  Richardson-Lucy deconvolution given the test condition's true Gaussian kernel: an oracle
                     baseline no blind method can count on; the input itself where the condition has no blur
    nl-means         non-local means (scikit-image, fast mode) given the condition's noise sigma where it has
                     noise (an oracle), else with a robust estimate from the image (`noise_sigma`)

The oracles need the condition (`superres.data.conditions`): `for_condition(model, name)` gives them one, and
evaluation and comparison figures call it for every model (a no-op for networks).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from superres.data.conditions import BLUR_SIZE, CONDITIONS, Condition, blur_kernel

RL_ITERATIONS = 30  # scikit-image's default is 50; fewer amplify the noise of the "camera" condition less


class Classical(nn.Module):
    """A per-image NumPy restorer as a module of scale 1: (B, 3, H, W) in [0, 1] -> the same shape."""

    scale = 1
    precisions = ("fp32",)
    needs_condition = False

    def __init__(self, condition: Condition | None = None) -> None:
        super().__init__()
        self.condition = condition

    def given(self, condition: Condition) -> Classical:
        return type(self)(condition)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.needs_condition and self.condition is None:
            raise ValueError(f"{type(self).__name__} is an oracle baseline: it needs a test condition "
                             "(--degradation) to know the blur and noise")
        images = x.detach().float().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)  # (B, H, W, 3)
        out = np.stack([self.restore(image) for image in images]).clip(0.0, 1.0)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device, torch.float32)

    def restore(self, image: np.ndarray) -> np.ndarray:  # (H, W, 3) float64 in [0, 1]
        return image


class Input(Classical):
    """The degraded input, unchanged."""


class RichardsonLucy(Classical):
    """Richardson-Lucy with the condition's Gaussian kernel, per channel, on the image padded by reflection so that
    the deconvolution sees no dark frame."""

    needs_condition = True

    def restore(self, image: np.ndarray) -> np.ndarray:
        from skimage.restoration import richardson_lucy

        if not self.condition.blur_sigma:
            return image
        psf = blur_kernel(self.condition)[0].double().numpy()
        pad = BLUR_SIZE
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        planes = [richardson_lucy(padded[..., c], psf, num_iter=RL_ITERATIONS, clip=True) for c in range(3)]
        return np.stack(planes, axis=-1)[pad:-pad, pad:-pad]


class NonLocalMeans(Classical):
    """Non-local means with h = 0.8 sigma (scikit-image's recommendation for fast mode), 5x5 patches, 13x13 search."""

    needs_condition = True

    def restore(self, image: np.ndarray) -> np.ndarray:
        from skimage.restoration import denoise_nl_means

        sigma = self.condition.noise_sigma / 255.0 or noise_sigma(image)
        return denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
                                channel_axis=-1)


def noise_sigma(image: np.ndarray) -> float:
    """Donoho's robust estimate of white Gaussian noise, averaged over channels: the median absolute value of the
    finest diagonal Haar detail over 0.6745 (the detail of a smooth image is near zero, that of noise is noise)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    x = image[:h, :w]
    detail = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0  # (H/2, W/2, 3)
    return float(np.mean(np.median(np.abs(detail), axis=(0, 1)) / 0.6745))


def for_condition(model: nn.Module, name: str) -> nn.Module:
    """`model` told the test condition `name` where it is an oracle baseline; any other model as it is."""
    return model.given(CONDITIONS[name]) if isinstance(model, Classical) else model
