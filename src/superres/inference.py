"""Upscaling with any model, whole or in overlapping tiles: pure functions, no printing.

Tiles are cut with `overlap` pixels of context on each side; only each tile's core is kept, so the result equals
untiled inference wherever the model's receptive field fits in the overlap. Memory is bounded by one tile batch
plus the output buffer, whatever the image size.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from superres.imageio import Picture


def model_device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _tile_starts(length: int, tile: int) -> list[int]:
    return list(range(0, max(length - tile, 0) + 1, tile)) + ([length - tile] if length > tile and length % tile else [])


@torch.no_grad()
def _run(model: nn.Module, lq: torch.Tensor, autocast: Callable[[], contextlib.AbstractContextManager]) -> torch.Tensor:
    device = model_device(model)
    with autocast():
        sr = model(lq.to(device))
    return sr.float().clamp_(0, 1).to("cpu")


@torch.no_grad()
def upscale(
    model: nn.Module,
    image: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int = 32,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (3, H*s, W*s) on the CPU, clamped to [0, 1].

    `tile`: the core size in input pixels (None: whole image at once). `on_tile(done, total)` reports progress.
    On CUDA, a tile that runs out of memory is retried at half the size.
    """
    lq = image[0] if image.dim() == 4 else image
    if lq.dim() != 3 or lq.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB image, got shape {tuple(image.shape)}")
    scale = model.scale
    _, h, w = lq.shape
    if tile is None or (h <= tile and w <= tile):
        sr = _run(model, lq[None], autocast)[0]
        if on_tile:
            on_tile(1, 1)
        return sr
    while True:
        try:
            return _upscale_tiled(model, lq, tile, overlap, scale, autocast, on_tile)
        except torch.OutOfMemoryError:
            if tile <= 32:
                raise
            torch.cuda.empty_cache()
            tile //= 2


def _upscale_tiled(model, lq, tile, overlap, scale, autocast, on_tile) -> torch.Tensor:
    _, h, w = lq.shape
    out = torch.empty(3, h * scale, w * scale)
    ys, xs = _tile_starts(h, tile), _tile_starts(w, tile)
    total, done = len(ys) * len(xs), 0
    for y in ys:
        for x in xs:
            th, tw = min(tile, h - y), min(tile, w - x)
            y0, x0 = max(y - overlap, 0), max(x - overlap, 0)
            y1, x1 = min(y + th + overlap, h), min(x + tw + overlap, w)
            sr = _run(model, lq[None, :, y0:y1, x0:x1], autocast)[0]  # (3, (y1-y0)*s, (x1-x0)*s)
            cy, cx = (y - y0) * scale, (x - x0) * scale
            out[:, y * scale : (y + th) * scale, x * scale : (x + tw) * scale] = sr[:, cy : cy + th * scale, cx : cx + tw * scale]
            done += 1
            if on_tile:
                on_tile(done, total)
    return out


def upscale_picture(
    model: nn.Module,
    picture: Picture,
    *,
    tile: int | None = None,
    overlap: int = 32,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_tile: Callable[[int, int], None] | None = None,
) -> Picture:
    """Upscale a decoded picture, keeping its kind: grayscale stays grayscale, alpha is upscaled separately
    (bicubic) and reattached, bit depth, format and ICC profile carry over."""
    pixels = picture.pixels
    colour = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
    sr = upscale(model, colour, tile=tile, overlap=overlap, autocast=autocast, on_tile=on_tile)
    if pixels.shape[0] == 1:
        sr = sr.mean(0, keepdim=True)
    alpha = None
    if picture.alpha is not None:
        size = (picture.alpha.shape[-2] * model.scale, picture.alpha.shape[-1] * model.scale)
        alpha = F.interpolate(picture.alpha[None], size=size, mode="bicubic", antialias=True)[0].clamp_(0, 1)
    return dataclasses.replace(picture, pixels=sr, alpha=alpha)
