"""The Python API: load a model once, then upscale (or restore) images in the types notebooks hold, getting the
same type back: a Pillow image (mode kept: L, LA, RGB, RGBA, I;16), a NumPy array (H, W) or (H, W, C) of uint8,
uint16 or float in [0, 1], or a torch tensor (C, H, W) or (N, C, H, W) of floats in [0, 1]. C may be 1 (gray),
2 (gray + alpha), 3 (RGB) or 4 (RGBA): alpha is upscaled apart, grayscale stays grayscale, as in files.

Under `precision="auto"`, 8-bit images run in bf16 where the device runs it natively; uint16, float and tensor
images run in fp32 (bf16 would cut them to a few hundred levels per channel).
"""

from __future__ import annotations

import os
from typing import TypeVar

from superres.imageio import Picture
from superres.optimize import PreparedModel

ImageT = TypeVar("ImageT")  # PIL.Image.Image, numpy.ndarray or torch.Tensor: what comes in goes out


def load_model(name_or_path: str | os.PathLike = "rescnn", *, device: str = "auto",
               precision: str = "auto", ensemble: bool = False) -> PreparedModel:
    """A model ready to pass to `upscale` many times: a shipped name (`rescnn`, `gan`, `rescnn-x4-bicubic`, ...),
    `bicubic`, a superres weights file, or another project's `.pth`/`.safetensors` that spandrel recognises.

    `device`: auto (a CUDA GPU when there is one), cpu or cuda; `precision`: auto, fp32, bf16 or fp16;
    `ensemble`: average the outputs for the 8 flips and rotations of each input (8 times the time).
    """
    from superres.runtime import resolve_device
    from superres.weights import load_model as load_weights

    return PreparedModel(load_weights(name_or_path), device=resolve_device(device), precision=precision,
                         ensemble=ensemble)


def upscale(image: ImageT, model: str | os.PathLike | PreparedModel = "rescnn", *, tile: int | None = 512,
            outscale: float | None = None, overlap: int = 32, device: str = "auto", precision: str = "auto",
            ensemble: bool = False) -> ImageT:
    """`image` upscaled by the model's scale, or to round(size * `outscale`) (the model's scale, then a bicubic
    resize), in the type and layout it came in.

    `model`: a name or path (loaded for this call with `device` and `precision`) or what `load_model` returned
    (used as it is, `ensemble` with it). `tile`: input pixels per tile (None: the whole image at once), which bounds
    memory.
    """
    from superres.inference import upscale_picture
    from superres.runtime import tile_batch

    prepared = (model if isinstance(model, PreparedModel)
                else load_model(model, device=device, precision=precision, ensemble=ensemble))

    def run(picture: Picture) -> Picture:
        return upscale_picture(prepared.for_picture(picture.bit_depth), picture, tile=tile, overlap=overlap,
                               batch=tile_batch(prepared.device), outscale=outscale)

    return _convert(image, run)


def restore(image: ImageT, model: str | os.PathLike | PreparedModel = "rescnn-x1-general", *,
            tile: int | None = 512, overlap: int = 32, device: str = "auto", precision: str = "auto",
            ensemble: bool = False) -> ImageT:
    """`image` through an x1 model (deblurring, denoising, JPEG artefact removal: ours, built with scale 1, or
    another project's model file that spandrel recognises), same size, same type."""
    prepared = (model if isinstance(model, PreparedModel)
                else load_model(model, device=device, precision=precision, ensemble=ensemble))
    if prepared.scale != 1:
        raise ValueError(f"{prepared.info.name} is an x{prepared.scale} model; restore takes x1 models (use upscale)")
    return upscale(image, prepared, tile=tile, overlap=overlap)


def _convert(image: ImageT, run) -> ImageT:
    """`run` (Picture -> Picture) applied to `image`, converted from and back to its own type."""
    import numpy as np
    import torch

    from superres.imageio import (picture_from_array, picture_from_tensor, picture_to_array,
                                  picture_to_tensor)

    if isinstance(image, np.ndarray):
        out = picture_to_array(run(picture_from_array(image)), np.float32 if image.dtype.kind == "f" else image.dtype)
        return out[:, :, 0] if image.ndim == 2 else out
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point() or image.ndim not in (3, 4):
            raise ValueError(f"expected a float tensor (C, H, W) or (N, C, H, W) in [0, 1], got "
                             f"{tuple(image.shape)} {image.dtype}")
        if image.ndim == 4:
            return torch.stack([_convert(one, run) for one in image])
        return picture_to_tensor(run(picture_from_tensor(image))).to(device=image.device, dtype=image.dtype)
    return _convert_pil(image, run)


def _convert_pil(image: ImageT, run) -> ImageT:
    from PIL import Image as PILImage

    from superres.imageio import picture_from_pil, picture_to_pil

    if not isinstance(image, PILImage.Image):
        raise TypeError(f"expected a PIL image, a NumPy array or a torch tensor, got {type(image).__name__}")
    out = picture_to_pil(run(picture_from_pil(image)))
    return out.convert("I") if image.mode == "I" else out
