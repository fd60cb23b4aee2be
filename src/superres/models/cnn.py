"""The seed baseline: a plain sub-pixel CNN (335,875 parameters at the defaults)."""

from __future__ import annotations

import torch
from torch import nn

from superres.models.blocks import conv3x3, upsample_stages

# Mean RGB of the DIV2K training set on the 0..255 scale: the standardisation the seed model used.
DIV2K_RGB_MEAN = (0.4488 * 255, 0.4371 * 255, 0.4040 * 255)


class SubPixelCNN(nn.Module):
    """(x - rgb_mean) / 127.5, conv 64, conv 64, sub-pixel upsampling, conv 3, de-standardise.

    At scale 1 (restoration at the same size) there is no upsampling and the output is the input plus the tail's
    correction; the tail starts at zero, so the untrained model is the identity."""

    def __init__(self, *, scale: int = 4, in_channels: int = 3, channels: int = 64) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1) / 255.0)
        self.head = nn.Sequential(conv3x3(in_channels, channels), conv3x3(channels, channels))
        self.upsample = upsample_stages(channels, scale, lambda: nn.ReLU(inplace=True))
        self.tail = conv3x3(channels, in_channels)
        if scale == 1:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W) in [0, 1]
        features = (x - self.rgb_mean) * (255.0 / 127.5)  # standardised as (x255 - mean) / 127.5
        features = self.head(features)  # (B, C, H, W)
        features = self.upsample(features)  # (B, C, H*s, W*s)
        out = self.tail(features) * (127.5 / 255.0)  # (B, 3, H*s, W*s)
        return x + out if self.scale == 1 else out + self.rgb_mean  # x1: a correction of the input
