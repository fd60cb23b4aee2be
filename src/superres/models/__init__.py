"""The model registry, written out by hand: name -> builder taking keyword-only arguments."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from superres.models.bicubic import Bicubic
from superres.models.classical import Input, NonLocalMeans, RichardsonLucy
from superres.models.cnn import SubPixelCNN
from superres.models.discriminator import Discriminator
from superres.models.repattn import RepAttn, fold_reparameterized
from superres.models.rescnn import ResCNN
from superres.models.unet_discriminator import UNetDiscriminator

ARCHS: dict[str, Callable[..., nn.Module]] = {
    "bicubic": Bicubic,
    "cnn": SubPixelCNN,
    "rescnn": ResCNN,
    "repattn": RepAttn,
    "discriminator": Discriminator,
    "unet-discriminator": UNetDiscriminator,
    "input": Input,
    "richardson-lucy": RichardsonLucy,
    "nl-means": NonLocalMeans,
}
GENERATORS = ("bicubic", "cnn", "rescnn", "repattn")
# The models without weights, by name, with their arguments: bicubic, and the classical x1 restorers.
BASELINES = {"bicubic": {"scale": 4}, "input": {}, "richardson-lucy": {}, "nl-means": {}}
# gan.discriminator -> architecture: SRGAN's 10-block D with one logit per image, or the U-Net with one per pixel
DISCRIMINATORS = {"srgan": "discriminator", "unet": "unet-discriminator"}


def build_model(arch: str, **kwargs) -> nn.Module:
    """Build a registered architecture from keyword arguments (the same ones stored in weights files)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    return ARCHS[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-adds of one forward pass on a (1, 3, size, size) input as run for inference (re-parameterised
    branches folded), counted by torch's FlopCounterMode on the meta device: no memory, no compute."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    meta = fold_reparameterized(copy.deepcopy(model).eval()).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() // 2


__all__ = [
    "ARCHS", "BASELINES", "DISCRIMINATORS", "GENERATORS", "Bicubic", "RepAttn", "Discriminator", "ResCNN", "SubPixelCNN", "UNetDiscriminator",
    "build_model", "count_macs", "count_parameters",
]  # fmt: skip
