"""A U-Net discriminator with spectral normalisation: one real/fake logit per pixel (the design Real-ESRGAN uses).

A global discriminator says whether a whole patch looks real; this one says where: its encoder sees context at 1/2,
1/4 and 1/8 of the size, its decoder brings that back to full size through skips, so G is told which pixels look
fake. Spectral normalisation bounds each layer's Lipschitz constant, which keeps this stronger D from overpowering
G. Downsampling is a 4x4 stride-2 conv (every input pixel is seen equally often, so D's gradients carry no 2-periodic
pattern into G) and upsampling is bilinear then a 3x3 conv (no transposed conv, no checkerboard).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Module:
    """A bias-free conv whose weight is divided by its largest singular value (power iteration in train mode)."""
    padding = (kernel - stride + 1) // 2  # 3x3 s1 -> 1, 4x4 s2 -> 1: output size input / stride
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False))


class UNetDiscriminator(nn.Module):
    """Stem conv, `num_levels` SN downsampling convs doubling the width, as many SN upsampling convs each adding
    the encoder's output of that size, two SN refining convs, a 1-channel head: (B, 3, H, W) -> (B, 1, H, W).

    `content_layers` index `features(x)` for the losses on D's features (`superres.losses`): the encoder at 1/2,
    1/4 and 1/8 of the size at the defaults."""

    def __init__(self, *, in_channels: int = 3, channels: int = 64, num_levels: int = 3) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"num_levels must be at least 1, got {num_levels}")
        widths = [channels * 2**i for i in range(num_levels + 1)]  # 64, 128, 256, 512 at the defaults
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList(sn_conv(widths[i], widths[i + 1], 4, 2) for i in range(num_levels))
        self.up = nn.ModuleList(sn_conv(widths[i + 1], widths[i], 3) for i in reversed(range(num_levels)))
        self.refine = nn.ModuleList([sn_conv(channels, channels, 3), sn_conv(channels, channels, 3)])
        self.head = nn.Conv2d(channels, 1, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.content_layers = tuple(range(1, num_levels + 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's, each encoder level's, each decoder level's and each refining conv's output, in that order."""
        x = self.act(self.stem((x - 0.5) * 2.0))  # (B, C, H, W), input in [-1, 1]
        outputs = [x]
        for down in self.down:
            x = self.act(down(x))  # (B, C*2^i, H/2^i, W/2^i)
            outputs.append(x)
        skips = outputs[:-1]
        for up in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)  # to the skip's size
            x = self.act(up(x)) + skip  # (B, C*2^i, H/2^i, W/2^i), back up to (B, C, H, W)
            outputs.append(x)
        for conv in self.refine:
            x = self.act(conv(x))  # (B, C, H, W)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])  # (B, 1, H, W) logits
