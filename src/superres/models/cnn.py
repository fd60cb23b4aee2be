"""The seed baseline: a plain sub-pixel CNN (335,875 parameters at the defaults)."""

from __future__ import annotations

import torch
from torch import nn

from superres.models.blocks import conv3x3, upsample_stages

# Mean RGB of the DIV2K training set on the 0..255 scale: the standardisation the seed model used.
DIV2K_RGB_MEAN = (0.4488 * 255, 0.4371 * 255, 0.4040 * 255)


class SubPixelCNN(nn.Module):
    """(x - rgb_mean) / 127.5, conv 64, conv 64, sub-pixel upsampling, conv 3, de-standardise."""

    def __init__(self, *, scale: int = 4, in_channels: int = 3, channels: int = 64) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1) / 255.0)
        self.head = nn.Sequential(conv3x3(in_channels, channels), conv3x3(channels, channels))
        self.upsample = upsample_stages(channels, scale, lambda: nn.ReLU(inplace=True))
        self.tail = conv3x3(channels, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W) in [0, 1]
        x = (x - self.rgb_mean) * (255.0 / 127.5)  # standardised as (x255 - mean) / 127.5
        x = self.head(x)  # (B, C, H, W)
        x = self.upsample(x)  # (B, C, H*s, W*s)
        x = self.tail(x)  # (B, 3, H*s, W*s)
        return x * (127.5 / 255.0) + self.rgb_mean
