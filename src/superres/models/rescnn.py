"""ResCNN: the SRResNet-style generator (and the SRGAN's generator)."""

from __future__ import annotations

import torch
from torch import nn

from superres.models.blocks import ResidualBlock, conv3x3, upsample_stages


class ResCNN(nn.Module):
    """conv 64 + PReLU, residual blocks, conv-BN with a long skip, sub-pixel upsampling, conv to RGB."""

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 16,
        head_kernel: int = 9,
        tail_kernel: int = 1,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, channels, head_kernel, padding=head_kernel // 2), nn.PReLU(channels)
        )
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))
        self.body_tail = nn.Sequential(conv3x3(channels, channels, bias=False), nn.BatchNorm2d(channels))
        self.upsample = upsample_stages(channels, scale, lambda: nn.PReLU(channels))
        self.tail = nn.Conv2d(channels, in_channels, tail_kernel, padding=tail_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W) in [0, 1]
        x = self.head(x)  # (B, C, H, W)
        x = x + self.body_tail(self.body(x))  # long skip from the first conv
        x = self.upsample(x)  # (B, C, H*s, W*s)
        return self.tail(x)  # (B, 3, H*s, W*s), image range [0, 1]
