"""ResCNN: the SRResNet-style generator (and the SRGAN's generator)."""

from __future__ import annotations

import torch
from torch import nn

from superres.models.blocks import ResidualBlock, conv_norm, upsample_stages


class ResCNN(nn.Module):
    """conv 64 + PReLU, residual blocks, conv-BN with a long skip, sub-pixel upsampling, conv to RGB.

    `upsampler` "pixel-shuffle" is SRResNet's sub-pixel conv; "nearest-conv" (nearest-neighbour, then a conv) cannot
    learn a sub-pixel grid, for the GAN. At scale 1 (restoration at the same size) there is no upsampling and the
    output is the input plus the tail's correction; the tail starts at zero, so the untrained model is the identity.
    With `batch_norm` False the convs carry biases and no norm follows them (EDSR's blocks): the network trains as
    it is used, with no batch statistics, and a trained batch-norm model converts into it exactly
    (`superres.optimize.copy_folded`)."""

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 16,
        head_kernel: int = 9,
        tail_kernel: int = 1,
        upsampler: str = "pixel-shuffle",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, channels, head_kernel, padding=head_kernel // 2), nn.PReLU(channels)
        )
        self.body = nn.Sequential(*(ResidualBlock(channels, batch_norm=batch_norm) for _ in range(num_blocks)))
        self.body_tail = nn.Sequential(*conv_norm(channels, batch_norm))
        self.upsample = upsample_stages(channels, scale, lambda: nn.PReLU(channels), upsampler)
        self.tail = nn.Conv2d(channels, in_channels, tail_kernel, padding=tail_kernel // 2)
        if scale == 1:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W) in [0, 1]
        features = self.head(x)  # (B, C, H, W)
        features = features + self.body_tail(self.body(features))  # long skip from the first conv
        features = self.upsample(features)  # (B, C, H*s, W*s)
        out = self.tail(features)  # (B, 3, H*s, W*s), image range [0, 1]
        return x + out if self.scale == 1 else out  # x1: a correction of the input
