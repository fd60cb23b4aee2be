"""Building blocks shared by the generators: sub-pixel upsampling and the residual block."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class SubPixelUpsample(nn.Sequential):
    """conv3x3 to factor**2 * channels, pixel shuffle by `factor`, then an activation."""

    def __init__(self, channels: int, factor: int, activation: nn.Module) -> None:
        super().__init__(
            conv3x3(channels, channels * factor * factor),  # (B, C*f*f, H, W)
            nn.PixelShuffle(factor),  # (B, C, H*f, W*f)
            activation,
        )


def upsample_stages(channels: int, scale: int, make_activation: Callable[[], nn.Module]) -> nn.Sequential:
    """x2 stages for scales 2 and 4, one x3 stage for scale 3."""
    if scale == 3:
        factors = [3]
    elif scale in (2, 4, 8):
        factors = [2] * (scale.bit_length() - 1)
    else:
        raise ValueError(f"scale must be 2, 3, 4 or 8, got {scale}")
    return nn.Sequential(*(SubPixelUpsample(channels, f, make_activation()) for f in factors))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity skip (SRResNet)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            conv3x3(channels, channels, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
