"""RepAttn: an efficient generator of re-parameterisable convolutions with cheap large-kernel attention.

What the efficient-SR literature found works, in few lines: plain 3x3 convolutions at inference (trained with a
parallel 1x1 branch and an identity that fold into them, as RepVGG and ECBSR do), a cheap spatial attention that
sees far (a 7x7 depthwise convolution and a sigmoid gate, as large-kernel attention does), one pixel shuffle at the
end, and a nearest-neighbour global skip added before it (each output pixel's 4x4 block starts from its input
pixel, as ABPN's anchor does), so the network only learns the detail. At 48 channels and 8 blocks it has about a
third of ResCNN's parameters and 28% of its multiply-adds at x4 (`superres models` counts them).

Its last convolution starts at zero, so the untrained model is nearest-neighbour upsampling; at scale 1 the shuffle
and the skip make it a correction of the input, and the untrained model the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RepConv(nn.Module):
    """A 3x3 convolution trained beside a 1x1 one and (with as many outputs as inputs) the identity; `fold()` sums
    the three into one plain 3x3 convolution with the same output."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.identity = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(x) + self.conv1(x)
        return y + x if self.identity else y

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.conv3.in_channels, self.conv3.out_channels, 3, padding=1).to(self.conv3.weight)
        weight = self.conv3.weight.clone()
        weight[:, :, 1, 1] += self.conv1.weight[:, :, 0, 0]
        if self.identity:
            channels = torch.arange(weight.shape[0])
            weight[channels, channels, 1, 1] += 1.0
        conv.weight.copy_(weight)
        conv.bias.copy_(self.conv3.bias + self.conv1.bias)
        return conv


class AttentionBlock(nn.Module):
    """Three RepConvs with SiLU between, gated per pixel and channel by sigmoid(7x7 depthwise conv of the result),
    added to the block's input."""

    def __init__(self, channels: int, attention_kernel: int = 7) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            RepConv(channels, channels), nn.SiLU(), RepConv(channels, channels), nn.SiLU(), RepConv(channels, channels)
        )
        self.attention = nn.Conv2d(channels, channels, attention_kernel, padding=attention_kernel // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        return x + y * torch.sigmoid(self.attention(y))


class RepAttn(nn.Module):
    """conv 3x3, attention blocks with a long skip, conv 3x3 to 3 * s * s channels plus the input repeated s * s
    times (a nearest-neighbour skip), pixel shuffle."""

    def __init__(self, *, scale: int = 4, in_channels: int = 3, channels: int = 48, num_blocks: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*(AttentionBlock(channels) for _ in range(num_blocks)))
        self.body_tail = RepConv(channels, channels)
        self.tail = nn.Conv2d(channels, in_channels * scale * scale, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # untrained: nearest-neighbour upsampling (the identity at x1)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W) in [0, 1]
        features = self.head(x)  # (B, C, H, W)
        features = features + self.body_tail(self.body(features))  # long skip
        detail = self.tail(features)  # (B, 3*s*s, H, W)
        anchor = x.repeat_interleave(self.scale * self.scale, dim=1)  # each input pixel for its s x s block
        return F.pixel_shuffle(detail + anchor, self.scale)  # (B, 3, H*s, W*s)


def fold_reparameterized(model: nn.Module) -> nn.Module:
    """`model` (changed in place) with every RepConv replaced by its folded plain 3x3 convolution."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RepConv):
                setattr(parent, name, child.fold())
    return model
