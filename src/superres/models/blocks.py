"""Building blocks shared by the generators: sub-pixel upsampling (ICNR-initialised) and the residual block."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


@torch.no_grad()
def icnr_(conv: nn.Conv2d, factor: int) -> nn.Conv2d:
    """ICNR (Aitken et al. 2017): give the f*f sub-pixel channels that pixel shuffle turns into one output channel
    the same kernel and bias, drawn by the conv's own initialiser at 1/(f*f) of the width. The shuffled output then
    starts as nearest-neighbour upsampling of a conv's output: constant within each f x f block, no checkerboard.
    Training moves the channels apart; it changes only the initial weights, not the architecture."""
    groups = factor * factor
    seed = nn.Conv2d(conv.in_channels, conv.out_channels // groups, conv.kernel_size, padding=conv.padding)
    conv.weight.copy_(seed.weight.repeat_interleave(groups, dim=0))  # channel c*f*f + k takes kernel c
    if conv.bias is not None:
        conv.bias.copy_(seed.bias.repeat_interleave(groups))
    return conv


class SubPixelUpsample(nn.Sequential):
    """conv3x3 to factor**2 * channels (ICNR-initialised), pixel shuffle by `factor`, then an activation."""

    def __init__(self, channels: int, factor: int, activation: nn.Module) -> None:
        super().__init__(
            icnr_(conv3x3(channels, channels * factor * factor), factor),  # (B, C*f*f, H, W)
            nn.PixelShuffle(factor),  # (B, C, H*f, W*f)
            activation,
        )


def upsample_stages(channels: int, scale: int, make_activation: Callable[[], nn.Module]) -> nn.Sequential:
    """x2 stages for scales 2, 4 and 8, one x3 stage for scale 3, none for scale 1 (restoration at the same size)."""
    if scale == 1:
        factors = []
    elif scale == 3:
        factors = [3]
    elif scale in (2, 4, 8):
        factors = [2] * (scale.bit_length() - 1)
    else:
        raise ValueError(f"scale must be 1, 2, 3, 4 or 8, got {scale}")
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
