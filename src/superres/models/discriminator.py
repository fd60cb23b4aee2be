"""The SRGAN discriminator, extended to 10 conv blocks with a skip from block 7 to block 10."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True), "relu": lambda: nn.ReLU(inplace=True)}


def block_plan(num_blocks: int, channels: int) -> list[tuple[int, int]]:
    """(out_channels, stride) per block. Blocks 1-6 follow SRGAN (k3n64s1, k3n64s2, k3n128s1, k3n128s2, k3n256s1,
    k3n256s2); block 7 is k3n512s2; the rest are k3n512s1, so blocks 7 to 10 share one shape and the skip from
    block 7 to block 10 needs no projection. 96x96 in -> (512, 6, 6) out."""
    plan = [(channels * 2 ** (i // 2), 1 + i % 2) for i in range(6)]
    plan.append((channels * 8, 2))
    plan += [(channels * 8, 1)] * (num_blocks - 7)
    return plan


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, stride: int, *, bn: bool, activation: str) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)


class Discriminator(nn.Module):
    """10 conv-BN-activation blocks (the first without BN), skip 7 -> 10, dense head, one real/fake logit.

    `content_layers` index `features(x)` for the losses on D's features (`superres.losses`): blocks 5, 6 and 10, at
    1/4, 1/8 and 1/16 of the input size, a choice of this package, not of a paper."""

    content_layers = (4, 5, 9)

    def __init__(
        self,
        *,
        in_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 10,
        hidden_layers: int = 1,
        hidden_features: int = 1024,
        activation: str = "leaky_relu",
        pooled_size: int = 6,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if num_blocks < 10:
            raise ValueError(f"num_blocks must be at least 10 (the skip joins block 7 to block 10), got {num_blocks}")
        plan = block_plan(num_blocks, channels)
        widths = [in_channels] + [w for w, _ in plan]
        self.blocks = nn.ModuleList(
            ConvBlock(widths[i], w, s, bn=i > 0, activation=activation) for i, (w, s) in enumerate(plan)
        )
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)  # identity for 96x96 patches: (B, 512, 6, 6)
        head: list[nn.Module] = [nn.Flatten()]
        features = widths[-1] * pooled_size * pooled_size
        for _ in range(hidden_layers):
            head += [nn.Linear(features, hidden_features), ACTIVATIONS[activation]()]
            features = hidden_features
        head.append(nn.Linear(features, 1))
        self.head = nn.Sequential(*head)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output; block 10's includes the skip from block 7."""
        x = (x - 0.5) * 2.0  # (B, 3, H, W) in [-1, 1]
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 9:
                x = x + outputs[6]  # skip: block 7's output joins block 10's
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)[-1]  # (B, 512, H/16, W/16)
        return self.head(self.pool(x)).squeeze(1)  # (B,) logits
