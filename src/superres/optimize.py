"""Inference-time rewrites of a trained generator, chosen per device: batch norm folded into the convolution before
it, channels_last memory, weights and activations in bf16 or fp16.

The result takes and returns float32 NCHW RGB in [0, 1] like every model here, so `superres.inference.upscale`
needs no knowledge of it. The trained model is left untouched.

Measured on the shipped weights (`benchmarks/inference_speed.py`): bf16 keeps Y-PSNR within 0.02 dB of fp32 on
Set5/Set14 and 99.9% of output pixels within 2/255, at several times fp32's speed on a CPU with native bf16.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode in which every BatchNorm2d that directly follows a Conv2d inside an
    nn.Sequential is folded into that convolution's weight and bias and replaced by nn.Identity."""
    folded = copy.deepcopy(model).eval()
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


class FastModel(nn.Module):
    """A generator prepared for inference: float32 in, float32 out, `dtype` and `memory_format` inside."""

    def __init__(self, model: nn.Module, *, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.scale = model.scale
        if hasattr(model, "info"):
            self.info = model.info

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) float32 -> (B, 3, H*s, W*s) float32
        sr = self.model(x.to(self.dtype).contiguous(memory_format=self.memory_format))
        return sr.float().contiguous()


def optimize_for_inference(model: nn.Module, *, device: torch.device, precision: str) -> nn.Module:
    """`model` folded, in channels_last and in `precision` ('fp32', 'bf16' or 'fp16', already resolved) on `device`.

    A model without weights (bicubic) is returned as it is, on `device`: interpolation gains nothing and would
    lose accuracy in 16 bits.
    """
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(DTYPES)} here, got {precision!r}")
    if next(iter(model.parameters()), None) is None:
        return model.eval().to(device)
    folded = fold_batchnorm(model)
    if hasattr(model, "info"):
        folded.info = model.info
    folded = folded.to(device=device, dtype=DTYPES[precision], memory_format=torch.channels_last)
    return FastModel(folded, dtype=DTYPES[precision], channels_last=True).eval()


def load_for_inference(name_or_path: str, *, device: str = "auto", precision: str = "auto") -> nn.Module:
    """A shipped name, weights path or `bicubic`, loaded and prepared for `device` and `precision` ('auto' for both:
    the GPU when there is one; bf16 where the device runs it natively, else fp32/fp16)."""
    from superres.runtime import resolve_device, resolve_precision
    from superres.weights import load_model

    torch_device = resolve_device(device)
    model = load_model(name_or_path)
    return optimize_for_inference(model, device=torch_device, precision=resolve_precision(precision, torch_device))
