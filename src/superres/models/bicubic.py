"""Bicubic upscaling as a model with no parameters, so every command can compare against it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bicubic(nn.Module):
    """PIL-style bicubic (Keys a = -0.5) interpolation by `scale`."""

    def __init__(self, *, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H*s, W*s)
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
