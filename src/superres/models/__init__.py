"""The model registry, written out by hand: name -> builder taking keyword-only arguments."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from superres.models.bicubic import Bicubic
from superres.models.cnn import SubPixelCNN
from superres.models.discriminator import Discriminator
from superres.models.rescnn import ResCNN
from superres.models.unet_discriminator import UNetDiscriminator

ARCHS: dict[str, Callable[..., nn.Module]] = {
    "bicubic": Bicubic,
    "cnn": SubPixelCNN,
    "rescnn": ResCNN,
    "discriminator": Discriminator,
    "unet-discriminator": UNetDiscriminator,
}
GENERATORS = ("bicubic", "cnn", "rescnn")
# gan.discriminator -> architecture: SRGAN's 10-block D with one logit per image, or the U-Net with one per pixel
DISCRIMINATORS = {"srgan": "discriminator", "unet": "unet-discriminator"}


def build_model(arch: str, **kwargs) -> nn.Module:
    """Build a registered architecture from keyword arguments (the same ones stored in weights files)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "ARCHS", "DISCRIMINATORS", "GENERATORS", "Bicubic", "Discriminator", "ResCNN", "SubPixelCNN", "UNetDiscriminator",
    "build_model", "count_parameters",
]  # fmt: skip
