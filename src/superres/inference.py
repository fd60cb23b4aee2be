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


MAX_OUTSCALE = 16.0


def check_outscale(outscale: float) -> float:
    """`outscale` as a float; ValueError (one line) unless it is a number over 0 and at most MAX_OUTSCALE."""
    try:
        factor = float(outscale)
    except (TypeError, ValueError):
        factor = float("nan")
    if not 0 < factor <= MAX_OUTSCALE:  # also refuses NaN
        raise ValueError(f"outscale must be a number over 0 and at most {MAX_OUTSCALE:g}, got {outscale!r}")
    return factor


def outscale_size(height: int, width: int, outscale: float) -> tuple[int, int]:
    """The output size for `--outscale`: round(input size * outscale), at least 1 pixel."""
    factor = check_outscale(outscale)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) float in [0, 1] -> (C, *size): bicubic, antialiased when shrinking, on float data (16-bit
    pictures never pass through 8 bits), clamped to [0, 1]. The same tensor when it has that size already."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None].float(), size=size, mode="bicubic", antialias=True)[0].clamp_(0, 1)


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


def _windows(length: int, tile: int, overlap: int) -> tuple[int, list[tuple[int, int, int]]]:
    """The window length and (core start, core length, window start) of each tile along one axis. Every window has
    that one length, tile + 2 * overlap (or the whole axis), shifted inwards at the borders, so tiles batch together
    and each core keeps at least `overlap` pixels of context or the image border on both sides."""
    window = min(tile + 2 * overlap, length)
    return window, [
        (start, min(tile, length - start), min(max(start - overlap, 0), length - window))
        for start in _tile_starts(length, tile)
    ]


@torch.no_grad()
def upscale(
    model: nn.Module,
    image: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int = 32,
    batch: int = 1,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> (3, H*s, W*s) on the CPU, clamped to [0, 1].

    `tile`: the core size in input pixels (None: whole image at once); `batch`: tiles per model call (helps GPUs).
    `on_tile(done, total)` reports progress. On CUDA, an image or batch that runs out of memory is retried in
    tiles: with half the batch, then with half the tile size.
    """
    lq = image[0] if image.dim() == 4 else image
    if lq.dim() != 3 or lq.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB image, got shape {tuple(image.shape)}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    _, h, w = lq.shape
    if tile is None or (h <= tile and w <= tile):
        try:
            sr = _run(model, lq[None], autocast)[0]
            if on_tile:
                on_tile(1, 1)
            return sr
        except torch.OutOfMemoryError:  # the whole image did not fit: go on in tiles of half its size
            if max(h, w) <= 32:
                raise
            torch.cuda.empty_cache()
            tile = max(h, w) // 2
    while True:
        try:
            return _upscale_tiled(model, lq, tile, overlap, batch, autocast, on_tile)
        except torch.OutOfMemoryError:
            if batch == 1 and tile <= 32:
                raise
            torch.cuda.empty_cache()
            batch, tile = (batch // 2, tile) if batch > 1 else (1, tile // 2)


def _upscale_tiled(model, lq, tile, overlap, batch, autocast, on_tile) -> torch.Tensor:
    _, h, w = lq.shape
    scale = model.scale
    out = torch.empty(3, h * scale, w * scale)
    (window_h, rows), (window_w, columns) = _windows(h, tile, overlap), _windows(w, tile, overlap)
    tiles = [(ty, tx) for ty in rows for tx in columns]
    for first in range(0, len(tiles), batch):
        group = tiles[first : first + batch]
        windows = torch.stack([lq[:, y0 : y0 + window_h, x0 : x0 + window_w] for (_, _, y0), (_, _, x0) in group])
        sr = _run(model, windows, autocast)  # (b, 3, window_h*s, window_w*s)
        for one, ((y, th, y0), (x, tw, x0)) in zip(sr, group):
            cy, cx = (y - y0) * scale, (x - x0) * scale
            out[:, y * scale : (y + th) * scale, x * scale : (x + tw) * scale] = one[:, cy : cy + th * scale, cx : cx + tw * scale]
        if on_tile:
            on_tile(first + len(group), len(tiles))
    return out


def upscale_picture(
    model: nn.Module,
    picture: Picture,
    *,
    tile: int | None = None,
    overlap: int = 32,
    batch: int = 1,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_tile: Callable[[int, int], None] | None = None,
    outscale: float | None = None,
) -> Picture:
    """Upscale a decoded picture, keeping its kind: grayscale stays grayscale, alpha is upscaled separately
    (bicubic) and reattached, bit depth, format and ICC profile carry over.

    `outscale`: the output is round(input size * outscale), the model's scale first, then `resize` (None or the
    model's own scale: no resize).
    """
    pixels = picture.pixels
    height, width = pixels.shape[-2:]
    size = (height * model.scale, width * model.scale) if outscale is None else outscale_size(height, width, outscale)
    colour = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
    sr = upscale(model, colour, tile=tile, overlap=overlap, batch=batch, autocast=autocast, on_tile=on_tile)
    if pixels.shape[0] == 1:
        sr = sr.mean(0, keepdim=True)
    alpha = None if picture.alpha is None else resize(picture.alpha, size)
    return dataclasses.replace(picture, pixels=resize(sr, size), alpha=alpha)
