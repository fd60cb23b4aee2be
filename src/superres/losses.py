"""Training losses: pixel, content (VGG19 "VGG54", pixel L1, or discriminator features), texture (FFT amplitude,
Gram matrices of discriminator features) and adversarial (vanilla or relativistic average).

Networks come in as arguments; nothing here trains or prints. The VGG19 weights are never downloaded: they are found
by `resolve_vgg_weights` (flag, environment variable, torchvision's cache) or a `MissingWeightsError` says how to get
them and which content losses need no file. Every loss but VGG54 needs no pretrained network: the content loss
"auto" is VGG54 when a VGG19 file is given and the discriminator's features otherwise.
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

from superres.metrics import periodic_peaks

CONTENT_LOSSES = ("auto", "vgg54", "pixel-l1", "disc-features")
ADVERSARIAL_LOSSES = ("vanilla", "relativistic")

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


def pixel_psnr(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Minus the mean PSNR of the batch's images, each from its own MSE (pixels in [0, 1], at most 50 dB).

    Benchmarks average PSNR over images, so an image counts by its gain in dB. With L1 or MSE over the batch a
    slightly damaged image (a good JPEG) hardly counts next to a badly damaged one, and a model for any photo learns
    to do to the first what helps the second; here 0.1 dB is worth the same on both (HINet trains with this loss).
    """
    mse = (sr.float() - gt.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(mse + 1e-5).mean()


PIXEL_LOSSES = {"l1": pixel_l1, "mse": pixel_mse, "psnr": pixel_psnr}  # supervised training's train.loss, by name


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


class DiscriminatorLoss(nn.Module):
    """A distance between the discriminator's features of sr and of gt, averaged over `layers`.

    `layers` index `discriminator.features(x)` (default: the discriminator's `content_layers`). Each layer's features
    are divided by the root mean square of gt's (detached) before the distance, so the loss is relative: its size,
    and so its weight, does not depend on how large a discriminator's features are (BatchNorm or spectral norm, and
    as D trains). D is frozen for the call, so these losses never give D a gradient, and sr and gt go through D as
    one batch, so BatchNorm normalises both with the same statistics. D is held by reference, not registered: it
    belongs to the training loop."""

    def __init__(self, discriminator: nn.Module, layers: Sequence[int] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "discriminator", discriminator)  # a reference: not a submodule, not in state_dict
        self.layers = tuple(discriminator.content_layers if layers is None else layers)

    def distance(self, sr_features: torch.Tensor, gt_features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        with frozen(self.discriminator):
            features = self.discriminator.features(torch.cat([sr, gt]))  # each (2B, C_i, H_i, W_i)
        losses = []
        for f in (features[i].float() for i in self.layers):
            sr_f, gt_f = f[: len(sr)], f[len(sr) :].detach()
            scale = gt_f.square().mean().sqrt().clamp_min(1e-8)  # gt's RMS feature
            losses.append(self.distance(sr_f / scale, gt_f / scale))
        return torch.stack(losses).mean()


class DiscriminatorFeatureLoss(DiscriminatorLoss):
    """Feature matching: the MSE between D's features of sr and gt, relative to gt's mean square (the content loss
    "disc-features")."""

    def distance(self, sr_features: torch.Tensor, gt_features: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(sr_features, gt_features)


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): channel co-activations, divided by C*H*W (independent of size and width)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class DiscriminatorGramLoss(DiscriminatorLoss):
    """Texture: the L1 distance between Gram matrices of D's features of sr and gt. A Gram matrix keeps which
    features occur together and drops where, so this asks for the same kind of texture, not the same pixels."""

    def distance(self, sr_features: torch.Tensor, gt_features: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(gram(sr_features), gram(gt_features))


def amplitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W/2 + 1): |rfft2| of each channel, orthonormal (Parseval: the same energy), fp32."""
    return torch.fft.rfft2(images.float(), norm="ortho").abs()


def fft_amplitude_loss(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L1 between the amplitude spectra of sr and gt (see `amplitude_spectrum`).

    Phase is left out, so a texture that is as strong as gt's at each frequency scores well wherever its details sit;
    too little fine detail (blur) and too much at a few frequencies (a checkerboard's peaks at multiples of 1/4 of
    the size) both cost."""
    return F.l1_loss(amplitude_spectrum(sr), amplitude_spectrum(gt))


class FFTAmplitudeLoss(nn.Module):
    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return fft_amplitude_loss(sr, gt)


def periodic_amplitude_loss(sr: torch.Tensor, gt: torch.Tensor, period: int) -> torch.Tensor:
    """L1 between the amplitude spectra of sr and gt at the `period`-periodic frequencies only: where a x`period`
    sub-pixel upsampler's checkerboard puts all its energy (`superres.metrics.periodic_energy` measures the same on
    whole images). The all-frequency `fft_amplitude_loss` weighs those few bins as 1 in thousands, too little to stop
    an adversarially trained upsampler from growing one."""
    height, width = sr.shape[-2:]
    bins = periodic_peaks(height, width, period)[:, : width // 2 + 1].to(sr.device)  # rfft2 keeps half the columns
    return F.l1_loss(amplitude_spectrum(sr)[..., bins], amplitude_spectrum(gt)[..., bins])


class PeriodicAmplitudeLoss(nn.Module):
    def __init__(self, period: int) -> None:
        super().__init__()
        self.period = period

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return periodic_amplitude_loss(sr, gt, self.period)


def resolve_content_loss(kind: str, vgg_weights: str | os.PathLike | None = None) -> str:
    """"auto" is "vgg54" when a VGG19 file is given (`vgg_weights`, i.e. gan.vgg_weights or --vgg-weights, or
    $SUPERRES_VGG19_WEIGHTS) and "disc-features" otherwise; torchvision's cache alone does not switch it, so what a
    machine happens to hold never changes a run. Other kinds are returned as they are."""
    if kind != "auto":
        return kind
    return "vgg54" if vgg_weights or os.environ.get(VGG19_ENV_VAR) else "disc-features"


def build_content_loss(
    kind: str, *, vgg_weights: str | os.PathLike | None = None, discriminator: nn.Module | None = None
) -> nn.Module:
    """"vgg54" (needs the VGG19 file, see `resolve_vgg_weights`), "pixel-l1", "disc-features" (needs D), or "auto"
    (see `resolve_content_loss`)."""
    kind = resolve_content_loss(kind, vgg_weights)
    if kind == "vgg54":
        return VGGContentLoss(load_vgg54(resolve_vgg_weights(vgg_weights)))
    if kind == "pixel-l1":
        return PixelL1Loss()
    if kind == "disc-features":
        if discriminator is None:
            raise ValueError("content loss 'disc-features' needs the discriminator")
        return DiscriminatorFeatureLoss(discriminator)
    raise ValueError(f"unknown content loss {kind!r}; known: {', '.join(CONTENT_LOSSES)}")


def build_texture_losses(*, fft_weight: float = 0.0, gram_weight: float = 0.0, periodic_weight: float = 0.0,
                         period: int = 4, discriminator: nn.Module | None = None,
                         ) -> dict[str, tuple[float, nn.Module]]:  # fmt: skip
    """The texture terms with a weight above 0, by log name: {"fft": (fft_weight, loss), "gram": (...),
    "periodic": (...)}; `period` is the model's scale (the checkerboard's period)."""
    terms: dict[str, tuple[float, nn.Module]] = {}
    if fft_weight > 0:
        terms["fft"] = (fft_weight, FFTAmplitudeLoss())
    if periodic_weight > 0:
        terms["periodic"] = (periodic_weight, PeriodicAmplitudeLoss(period))
    if gram_weight > 0:
        if discriminator is None:
            raise ValueError("the Gram texture loss needs the discriminator")
        terms["gram"] = (gram_weight, DiscriminatorGramLoss(discriminator))
    return terms


# Adversarial losses ------------------------------------------------------------------------------------------------


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of logits (one per image or one per pixel, averaged) against all-real or all-fake."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def adversarial_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None, *,
                     kind: str = "vanilla") -> torch.Tensor:  # fmt: skip
    """The generator's loss. "vanilla": D should call its output real. "relativistic" (ESRGAN's relativistic average
    GAN; needs `real_logits`, which the caller detaches): D should find the output more real than the average real
    image, and the real images less real than the average output; the mean of the two terms. Averages are over all
    logits of the other batch (every image, and every pixel for a per-pixel D)."""
    if kind == "vanilla":
        return bce(fake_logits, True)
    if real_logits is None:
        raise ValueError("the relativistic adversarial loss needs the logits of the real images")
    return 0.5 * (bce(fake_logits - real_logits.mean(), True) + bce(real_logits - fake_logits.mean(), False))


def discriminator_logits(real_logits: torch.Tensor, fake_logits: torch.Tensor, *,
                         kind: str = "vanilla") -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """What D's loss judges: the logits themselves ("vanilla"), or each relative to the other batch's mean
    ("relativistic"). A logit above 0 means "real"."""
    if kind == "vanilla":
        return real_logits, fake_logits
    return real_logits - fake_logits.mean(), fake_logits - real_logits.mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, *,
                       kind: str = "vanilla") -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(real part, fake part): BCE of the real images' (relative) logits against real and of the fakes' against
    fake. Give the raw logits; `kind` says how they are judged (see `discriminator_logits`)."""
    real, fake = discriminator_logits(real_logits, fake_logits, kind=kind)
    return bce(real, True), bce(fake, False)
