"""Inference-time rewrites of a trained generator, chosen per device: batch norm folded into the convolution before
it, channels_last memory, weights and activations in bf16 or fp16.

The result takes and returns float32 NCHW RGB in [0, 1] like every model here, so `superres.inference.upscale`
needs no knowledge of it. The trained model is left untouched.

Measured on the shipped weights (`benchmarks/inference_speed.py`, 2-core Xeon with AMX): bf16 keeps the mean Y-PSNR
within 0.01 dB of fp32 on Set5/Set14 and all but 0.008% of output pixels within 2/255, at 3.5 to 4 times fp32's speed.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode in which every BatchNorm2d that directly follows a Conv2d inside an
    nn.Sequential is folded into that convolution's weight and bias and replaced by nn.Identity, and every
    re-parameterisable convolution (`superres.models.repattn.RepConv`) by its single folded convolution."""
    from superres.models.repattn import fold_reparameterized

    folded = fold_reparameterized(copy.deepcopy(model).eval())
    for sequence in folded.modules():
        if not isinstance(sequence, nn.Sequential):
            continue
        names = list(sequence._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = sequence._modules[first], sequence._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequence._modules[first] = fuse_conv_bn_eval(conv, norm)
                sequence._modules[second] = nn.Identity()
    return folded


@torch.no_grad()
def copy_folded(model: nn.Module, plain: nn.Module) -> nn.Module:
    """Give `plain`, the architecture of `model` built without batch norm (`ResCNN(batch_norm=False)`), the weights
    that make it compute what `model` computes in eval mode: `model` with its batch norm folded into the convs has
    the same parameters, in the same order and shapes, as `plain`. Returns `plain`."""
    folded = list(fold_batchnorm(model).parameters())
    params = list(plain.parameters())
    if [p.shape for p in folded] != [p.shape for p in params]:
        raise ValueError("the model without batch norm does not have the parameters of the folded model")
    for param, value in zip(params, folded):
        param.copy_(value)
    return plain


class Float32Entry(nn.Module):
    """The model's first convolution in fp32 on the full-precision input, its output handed on in `dtype`.

    Rounding the input image itself to bf16 costs more than all the layers after it: on Set14 with the shipped
    rescnn, bf16 throughout left 0.065% of pixels more than 2/255 from fp32, this entry 0.007%, for 2% of the speed.
    """

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv, self.dtype = conv, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).to(self.dtype)


class FastModel(nn.Module):
    """A generator prepared for inference: float32 in, float32 out; `dtype` inside, channels_last memory."""

    def __init__(self, model: nn.Module, *, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype, self.scale = model, dtype, model.scale
        if hasattr(model, "info"):
            self.info = model.info

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) float32 -> (B, 3, H*s, W*s) float32
        sr = self.model(x.float().contiguous(memory_format=torch.channels_last))
        return sr.float().contiguous()


def _first_conv(model: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, attribute name) of the first Conv2d in module order (depth first, as `forward` meets them), or None."""
    for qualified, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent, _, name = qualified.rpartition(".")
            return model.get_submodule(parent), name
    return None


def optimize_for_inference(model: nn.Module, *, device: torch.device, precision: str) -> nn.Module:
    """`model` folded, in channels_last and in `precision` ('fp32', 'bf16' or 'fp16', already resolved) on `device`.

    In 16 bits, the first convolution and the buffers (the cnn's mean colour) stay fp32, so the input image is
    never rounded, except in a model that says it `casts_input` (another project's, `superres.community`): it is
    converted whole. A model without weights (bicubic) is returned as it is, on `device`: interpolation gains
    nothing and would lose accuracy in 16 bits.
    """
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(DTYPES)} here, got {precision!r}")
    if next(iter(model.parameters()), None) is None:
        return model.eval().to(device)
    dtype = DTYPES[precision]
    folded = fold_batchnorm(model).to(device=device, memory_format=torch.channels_last)
    if hasattr(model, "info"):
        folded.info = model.info
    if dtype != torch.float32 and getattr(model, "casts_input", False):
        folded = folded.to(dtype=dtype)
    elif dtype != torch.float32:
        entry = _first_conv(folded)
        first = copy.deepcopy(getattr(*entry)) if entry else None  # kept in fp32: .to() below works in place
        folded = folded.to(dtype=dtype)
        for buffer_owner in folded.modules():
            for name, buffer in buffer_owner.named_buffers(recurse=False):
                if buffer.is_floating_point():
                    setattr(buffer_owner, name, buffer.float())
        if entry:
            setattr(entry[0], entry[1], Float32Entry(first, dtype))
    return FastModel(folded, dtype=dtype).eval()


class SelfEnsemble(nn.Module):
    """A model's output averaged over the eight flips and 90-degree rotations of its input, each undone on its
    output (the "x8 self-ensemble" of EDSR, Lim et al. 2017): errors that depend on the orientation partly cancel,
    for 8 times the time. Named `NAME+x8` (as EDSR+) in tables and messages."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.scale = model, model.scale
        if getattr(model, "info", None) is not None:
            self.info = ensemble_info(model.info)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H*s, W*s)
        total = None
        for turns in range(4):
            for flip in (False, True):
                turned = x.rot90(turns, (2, 3))
                out = self.model(turned.flip(3) if flip else turned)
                out = (out.flip(3) if flip else out).rot90(-turns, (2, 3))
                total = out if total is None else total + out
        return total / 8


def ensemble_name(name: str) -> str:
    """How a `SelfEnsemble` of the model `name` is named, in tables and messages: NAME+x8 (as EDSR+)."""
    return f"{name}+x8"


def ensemble_info(info):
    """A model's WeightsInfo as its `SelfEnsemble` is named."""
    return dataclasses.replace(info, name=ensemble_name(info.name))


class PreparedModel:
    """A trained model with its inference versions for one device, each made when first asked for.

    `for_picture(bit_depth)` applies `--precision auto` to a picture: a 16-bit one runs in fp32, because bf16 and
    fp16 carry about 8 and 11 significant bits and would cut a 16-bit output to a few hundred levels per channel.
    An explicit precision is used for every picture. A model with `.precisions` (the ones it supports) runs
    `auto` in fp32 where the device's choice is not among them, and refuses an explicit one that is not.
    With `ensemble`, every version is a `SelfEnsemble` of the prepared model.
    """

    def __init__(self, model: nn.Module, *, device: torch.device, precision: str = "auto",
                 ensemble: bool = False) -> None:
        from superres.runtime import resolve_precision

        self.model, self.device, self.requested, self.ensemble = model, device, precision, ensemble
        self.precision = resolve_precision(precision, device)
        self.scale, self.info = model.scale, getattr(model, "info", None)
        if ensemble and self.info is not None:
            self.info = ensemble_info(self.info)
        supported = getattr(model, "precisions", None)
        if supported is not None and self.precision not in supported:
            if precision != "auto":
                name = self.info.name if self.info else type(model).__name__
                raise ValueError(f"{name} does not run in {precision} (it runs in {', '.join(supported)})")
            self.precision = "fp32"
        self._versions: dict[str, nn.Module] = {}

    def __repr__(self) -> str:
        name = self.info.name if self.info else type(self.model).__name__
        return f"PreparedModel({name}, x{self.scale}, {self.device}, {self.precision})"

    def at(self, precision: str | None = None) -> nn.Module:
        """The version in `precision` (resolved; None: the one this model was prepared for)."""
        precision = precision or self.precision
        if precision not in self._versions:
            version = optimize_for_inference(self.model, device=self.device, precision=precision)
            self._versions[precision] = SelfEnsemble(version) if self.ensemble else version
        return self._versions[precision]

    def for_picture(self, bit_depth: int) -> nn.Module:
        return self.at("fp32" if self.requested == "auto" and bit_depth > 8 else self.precision)


def load_for_inference(name_or_path: str, *, device: str = "auto", precision: str = "auto") -> nn.Module:
    """A shipped name, weights path or `bicubic`, loaded and prepared for `device` and `precision` ('auto' for both:
    the GPU when there is one; bf16 where the device runs it natively, else fp32/fp16)."""
    from superres.runtime import resolve_device
    from superres.weights import load_model

    return PreparedModel(load_model(name_or_path), device=resolve_device(device), precision=precision).at()
