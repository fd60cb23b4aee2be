"""Training losses: pixel, content (VGG19 "VGG54", pixel L1, or discriminator features) and adversarial.

Networks come in as arguments; nothing here trains or prints. The VGG19 weights are never downloaded: they are found
by `resolve_vgg_weights` (flag, environment variable, torchvision's cache) or a `MissingWeightsError` says how to get
them and which content losses need no file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

CONTENT_LOSSES = ("vgg54", "pixel-l1", "disc-features")

VGG19_ENV_VAR = "SUPERRES_VGG19_WEIGHTS"
VGG19_URL = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url  # .../vgg19-dcbb9e9d.pth
VGG54_END = 36  # features[:36] = conv1_1 ... conv5_4 and the ReLU after it (features[34] conv, features[35] ReLU)
VGG_RESCALE = 1.0 / 12.75  # SRGAN: features / 12.75 before the MSE, i.e. the loss times about 0.006
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# Pixel losses ------------------------------------------------------------------------------------------------------


def pixel_l1(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(sr, gt)


def pixel_mse(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(sr, gt)


PIXEL_LOSSES = {"l1": pixel_l1, "mse": pixel_mse}  # supervised training's train.loss, by name


class PixelL1Loss(nn.Module):
    """`pixel_l1` as a module, so every content loss has the same (sr, gt) -> scalar shape."""

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return pixel_l1(sr, gt)


# VGG19 weights: found, never downloaded ----------------------------------------------------------------------------


class MissingWeightsError(FileNotFoundError):
    """The VGG19 weights file is not where it was looked for. The message is one line, fit for a CLI to print."""


def torchvision_cache_path() -> Path:
    """Where `torchvision.models.vgg19(weights=IMAGENET1K_V1)` would have cached the file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(VGG19_URL).path).name


def _missing(looked: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"VGG19 weights for --content-loss vgg54 not found (looked at: {looked}); download {VGG19_URL} on a machine "
        f"with internet, then pass --vgg-weights PATH, set {VGG19_ENV_VAR}=PATH, or copy it to "
        f"{torchvision_cache_path()}; or train without it: --content-loss pixel-l1 or --content-loss disc-features"
    )


def resolve_vgg_weights(path: str | os.PathLike | None = None) -> Path:
    """The VGG19 weights file: `path` (--vgg-weights), else $SUPERRES_VGG19_WEIGHTS, else torchvision's cache.

    A path that is given (flag or variable) but missing is an error, not a reason to look further."""
    if path is not None:
        if Path(path).is_file():
            return Path(path)
        raise _missing(f"--vgg-weights {path} (no such file)")
    env = os.environ.get(VGG19_ENV_VAR)
    if env:
        if Path(env).is_file():
            return Path(env)
        raise _missing(f"{VGG19_ENV_VAR}={env} (no such file)")
    cache = torchvision_cache_path()
    if cache.is_file():
        return cache
    raise _missing(f"--vgg-weights not given, {VGG19_ENV_VAR} not set, {cache} (no such file)")


def load_vgg54(path: str | os.PathLike) -> nn.Sequential:
    """torchvision's VGG19 `features[:36]` (to the ReLU after conv5_4), frozen and in eval mode.

    Reads a torchvision state dict (`features.N.*` keys, `classifier.*` ignored) or just its `features` part, with or
    without the `features.` prefix, in any float dtype, from .pth (`torch.load(weights_only=True)`) or .safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    state = {k: v for k, v in state.items() if not k.split(".")[0].isdigit() or int(k.split(".")[0]) < VGG54_END}
    with torch.device("meta"):  # torchvision's own layer list, without allocating (or initialising) the classifier
        features = torchvision.models.vgg19(weights=None).features[:VGG54_END]
    features = features.to_empty(device="cpu")
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} is not a VGG19 state dict: {error}") from None
    return features.eval().requires_grad_(False)


# Content losses ----------------------------------------------------------------------------------------------------


class VGGContentLoss(nn.Module):
    """SRGAN's VGG54 loss: MSE between VGG19 phi_5,4 features of sr and gt, each divided by 12.75.

    phi_5,4 is "the feature map obtained by the 4th convolution (after activation) before the 5th maxpooling" (Ledig
    et al. 2017), so the ReLU after conv5_4 is included: `features[:36]`, not ESRGAN's pre-activation `[:35]`.
    Inputs are [0, 1] images, normalised here by the ImageNet mean and std that torchvision's weights expect. The VGG
    stays frozen and in eval mode whatever `.train()` is called with; gradients flow only to `sr`."""

    def __init__(self, features: nn.Sequential, *, rescale: float = VGG_RESCALE) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.rescale = rescale
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGContentLoss:
        super().train(mode)
        self.features.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 512, H/16, W/16)
        return self.features((x - self.mean) / self.std) * self.rescale

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.embed(gt)
        return F.mse_loss(self.embed(sr), target)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of `module` take no gradient inside the block; their previous flags come back after it."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class DiscriminatorFeatureLoss(nn.Module):
    """Mean over `layers` of the MSE between the discriminator's block outputs for sr and for gt (gt's detached).

    `layers` index `Discriminator.features(x)` from 0; the default takes the last block at 1/4, 1/8 and 1/16 of the
    input size (blocks 5, 6 and 10), a choice of this package, not of a paper. D is frozen for the call, so this loss
    never gives D a gradient, and sr and gt go through D as one batch, so BatchNorm normalises both with the same
    statistics. D is held by reference, not registered: it belongs to the training loop."""

    def __init__(self, discriminator: nn.Module, layers: Sequence[int] = (4, 5, 9)) -> None:
        super().__init__()
        object.__setattr__(self, "discriminator", discriminator)  # a reference: not a submodule, not in state_dict
        self.layers = tuple(layers)

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        with frozen(self.discriminator):
            features = self.discriminator.features(torch.cat([sr, gt]))  # each (2B, C_i, H_i, W_i)
        losses = [F.mse_loss(f[: len(sr)], f[len(sr) :].detach()) for f in (features[i] for i in self.layers)]
        return torch.stack(losses).mean()


def build_content_loss(
    kind: str, *, vgg_weights: str | os.PathLike | None = None, discriminator: nn.Module | None = None
) -> nn.Module:
    """"vgg54" (needs the VGG19 file, see `resolve_vgg_weights`), "pixel-l1", or "disc-features" (needs D)."""
    if kind == "vgg54":
        return VGGContentLoss(load_vgg54(resolve_vgg_weights(vgg_weights)))
    if kind == "pixel-l1":
        return PixelL1Loss()
    if kind == "disc-features":
        if discriminator is None:
            raise ValueError("content loss 'disc-features' needs the discriminator")
        return DiscriminatorFeatureLoss(discriminator)
    raise ValueError(f"unknown content loss {kind!r}; known: {', '.join(CONTENT_LOSSES)}")


# Adversarial losses ------------------------------------------------------------------------------------------------


def adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss: D should call its output real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(real part, fake part): BCE of real logits against ones and of fake logits against zeros."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real, fake
