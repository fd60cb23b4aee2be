"""Building blocks shared by the generators: the upsampling stages (sub-pixel, ICNR-initialised, or nearest-neighbour
then a conv) and the residual block."""

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


class NearestConvUpsample(nn.Sequential):
    """Nearest-neighbour upsampling by `factor`, conv3x3 at the new size, then an activation (Real-ESRGAN's stages).
    Nearest-neighbour upsampling leaves no energy at the period-`factor` frequencies, and a conv is the same at every
    output pixel, so, unlike a sub-pixel conv, the stage has no per-phase kernels from which to learn a grid."""

    def __init__(self, channels: int, factor: int, activation: nn.Module) -> None:
        super().__init__(
            nn.Upsample(scale_factor=factor, mode="nearest"),  # (B, C, H*f, W*f)
            conv3x3(channels, channels),
            activation,
        )


UPSAMPLERS = {"pixel-shuffle": SubPixelUpsample, "nearest-conv": NearestConvUpsample}


def upsample_stages(
    channels: int, scale: int, make_activation: Callable[[], nn.Module], kind: str = "pixel-shuffle"
) -> nn.Sequential:
    """x2 stages for scales 2, 4 and 8, one x3 stage for scale 3, none for scale 1 (restoration at the same size);
    each stage of `kind`, a key of UPSAMPLERS."""
    if kind not in UPSAMPLERS:
        raise ValueError(f"upsampler must be one of {', '.join(UPSAMPLERS)}, got {kind!r}")
    if scale == 1:
        factors = []
    elif scale == 3:
        factors = [3]
    elif scale in (2, 4, 8):
        factors = [2] * (scale.bit_length() - 1)
    else:
        raise ValueError(f"scale must be 1, 2, 3, 4 or 8, got {scale}")
    return nn.Sequential(*(UPSAMPLERS[kind](channels, f, make_activation()) for f in factors))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity skip (SRResNet); with `batch_norm` False conv-ReLU-conv with biases (EDSR),
    which computes the same as a batch-norm block in eval mode once each norm is folded into its conv."""

    def __init__(self, channels: int, *, batch_norm: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_norm(channels, batch_norm), nn.ReLU(inplace=True), *conv_norm(channels, batch_norm)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def conv_norm(channels: int, batch_norm: bool) -> list[nn.Module]:
    """conv3x3 then BatchNorm2d (the conv without a bias, which the norm's shift replaces), or the conv alone."""
    if batch_norm:
        return [conv3x3(channels, channels, bias=False), nn.BatchNorm2d(channels)]
    return [conv3x3(channels, channels)]
