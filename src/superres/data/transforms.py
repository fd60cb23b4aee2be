"""Paired transforms of (lq, gt) that keep them aligned by construction.

Both functions take one pair (C, H, W) or a batch (B, C, H, W) and draw per sample. Random numbers come only from
`generator`, drawn on the generator's device and moved to the tensors' device (CPU generators work for CUDA
tensors).
"""

from __future__ import annotations

from functools import lru_cache

import torch


def _check_pair(lq: torch.Tensor, gt: torch.Tensor, scale: int | None = None) -> None:
    if lq.ndim != gt.ndim or lq.ndim not in (3, 4):
        raise ValueError(
            f"expected lq and gt both (C, H, W) or both (B, C, H, W), got {tuple(lq.shape)}, {tuple(gt.shape)}"
        )
    if lq.ndim == 4 and lq.shape[0] != gt.shape[0]:
        raise ValueError(f"batch sizes differ: lq {lq.shape[0]}, gt {gt.shape[0]}")
    if scale is not None and (gt.shape[-2] < lq.shape[-2] * scale or gt.shape[-1] < lq.shape[-1] * scale):
        raise ValueError(f"gt {tuple(gt.shape[-2:])} is smaller than lq {tuple(lq.shape[-2:])} times scale {scale}")


def random_offsets(n: int, high: torch.Tensor | int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`n` integers, each uniform in 0 .. high - 1 (`high` a scalar or (n,) tensor of positive ints), int64."""
    u = torch.rand((n,), generator=generator, device=generator.device, dtype=torch.float64).to(device)
    high = torch.as_tensor(high, device=device)
    return torch.minimum((u * high).long(), high - 1)


def crop_batch(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Per-sample square crops: (B, C, H, W), offsets (B,) -> (B, C, size, size), one gather on any device."""
    r = torch.arange(size, device=x.device)
    b = torch.arange(x.shape[0], device=x.device)
    rows = (top[:, None] + r)[:, None, :, None]  # (B, 1, size, 1)
    cols = (left[:, None] + r)[:, None, None, :]  # (B, 1, 1, size)
    ch = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[b[:, None, None, None], ch, rows, cols]


def paired_random_crop(
    lq: torch.Tensor, gt: torch.Tensor, lq_size: int, scale: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned random crops: lq (.., lq_size, lq_size) and gt (.., lq_size*scale, lq_size*scale).

    Offsets are drawn on the LR grid and multiplied by `scale` for gt, so gt's crop covers exactly the HR pixels
    of lq's crop. A batch gets one offset per sample.
    """
    _check_pair(lq, gt, scale)
    h, w = lq.shape[-2:]
    if h < lq_size or w < lq_size:
        raise ValueError(f"lq {h}x{w} is smaller than the crop {lq_size}")
    single = lq.ndim == 3
    lq4, gt4 = (lq[None], gt[None]) if single else (lq, gt)
    n = lq4.shape[0]
    top = random_offsets(n, h - lq_size + 1, generator, lq.device)
    left = random_offsets(n, w - lq_size + 1, generator, lq.device)
    lq_crop = crop_batch(lq4, top, left, lq_size)  # (B, C, p, p)
    gt_crop = crop_batch(gt4, top * scale, left * scale, lq_size * scale)  # (B, C, p*s, p*s)
    return (lq_crop[0], gt_crop[0]) if single else (lq_crop, gt_crop)


@lru_cache(maxsize=8)
def _dihedral_tables(size: int, device: torch.device) -> torch.Tensor:
    """(8, size*size) source indices of the 8 flip/rotation combinations of a square, row-major."""
    grid = torch.arange(size * size, device=device).view(size, size)
    tables = [torch.rot90(grid.flip(-1) if f else grid, k, dims=(0, 1)) for f in (0, 1) for k in range(4)]
    return torch.stack(tables).view(8, -1)


def _flip_rotate(x: torch.Tensor, flip: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-sample horizontal flip then rotation by k*90 degrees of a square batch (B, C, S, S): one gather."""
    b, c, s, _ = x.shape
    index = _dihedral_tables(s, x.device)[flip.long() * 4 + k]  # (B, S*S)
    return x.reshape(b, c, s * s).gather(2, index[:, None].expand(b, c, s * s)).view(b, c, s, s)


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random horizontal flip (p = 0.5) and rotation by k*90 degrees per sample of a (B, C, S, S) batch."""
    n = x.shape[0]
    flip = random_offsets(n, 2, generator, x.device).bool()
    k = random_offsets(n, 4, generator, x.device)
    return _flip_rotate(x, flip, k)


def paired_augment(
    lq: torch.Tensor, gt: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random horizontal flip (p = 0.5) and rotation by k*90 degrees (k uniform in 0..3) for lq and gt.

    Per sample for a batch, whose patches must then be square (a quarter turn would change their shape);
    a single pair (C, H, W) may have any shape.
    """
    _check_pair(lq, gt)
    single = lq.ndim == 3
    lq4, gt4 = (lq[None], gt[None]) if single else (lq, gt)
    n = lq4.shape[0]
    flip = random_offsets(n, 2, generator, lq.device).bool()
    k = random_offsets(n, 4, generator, lq.device)
    if single:
        lq1, gt1 = (lq.flip(-1), gt.flip(-1)) if bool(flip[0]) else (lq, gt)
        j = int(k[0])
        return torch.rot90(lq1, j, dims=(-2, -1)), torch.rot90(gt1, j, dims=(-2, -1))
    if lq.shape[-2] != lq.shape[-1] or gt.shape[-2] != gt.shape[-1]:
        raise ValueError(f"batched augmentation needs square patches, got {tuple(lq.shape)}, {tuple(gt.shape)}")
    return _flip_rotate(lq4, flip, k), _flip_rotate(gt4, flip, k)
