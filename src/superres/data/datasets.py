"""Where training and evaluation images come from: folder layouts, a decoded-image cache, patch sampling.

- `find_pairs` reads the benchmark layout (``HR/``, ``LR_bicubic/X4/``, ``LR_unknown/X4/NAMEx4.png``), the real
  DIV2K layout (``DIV2K_train_HR/``, ``DIV2K_train_LR_unknown/X4/0001x4.png``) and a flat folder of HR images
  (Kodak24: no LR files, so every test condition is made from the HR).
- `ImageCache` decodes each file once and keeps it as a uint8 (3, H, W) tensor, in RAM or as a memory-mapped
  ``.npy`` file in a cache folder for sets bigger than RAM.
- `PatchSampler` is the training data path: whole images on one device, batches drawn in a few tensor operations.
- `PatchDataset` is the same sampling as a ``torch.utils.data.Dataset`` for DataLoader workers.

Nothing here prints or warns: skipped images are listed in the ``skipped`` attribute of the sampler or dataset.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from superres.data.degrade import (
    DEGRADATIONS,
    EDGE_MODES,
    Params,
    degrade_interior,
    edge_index,
    margin,
    pad_edges,
)
from superres.data.conditions import CONDITIONS
from superres.data.transforms import paired_augment, paired_random_crop, random_dihedral, random_offsets
from superres.imageio import list_images, read_rgb_u8

SPLITS = ("train", "valid")
_LR_FOLDER = {"bicubic": "bicubic", "div2k-unknown": "unknown"}  # blur+noise+jpeg has no LR files


# ---------------------------------------------------------------- folder layouts


@dataclass(frozen=True)
class Pair:
    """One image by name, with its LR file and HR file; either may be missing (None)."""

    name: str
    lq_path: Path | None
    gt_path: Path | None


def _layout_dirs(root: Path, degradation: str, scale: int, split: str | None) -> tuple[Path, Path | None]:
    tag = _LR_FOLDER.get(degradation)
    if (root / "HR").is_dir() or any(root.glob("LR_*")):
        return root / "HR", (root / f"LR_{tag}" / f"X{scale}" if tag else None)
    present = [s for s in SPLITS if any(root.glob(f"DIV2K_{s}_*"))]
    if not present:
        if list_images(root, recursive=False):
            return root, None  # a flat folder of HR images
        raise ValueError(f"{root}: neither a benchmark layout (HR/, LR_*/X{scale}/), DIV2K folders (DIV2K_train_HR/) "
                         "nor a folder of HR images")
    if split is None:
        if len(present) > 1:
            raise ValueError(f"{root} holds DIV2K splits {present}: choose one with split=")
        split = present[0]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    lr_dir = root / f"DIV2K_{split}_LR_{tag}" / f"X{scale}" if tag else None
    return root / f"DIV2K_{split}_HR", lr_dir


def find_pairs(
    root: str | os.PathLike, degradation: str = "bicubic", scale: int = 4, split: str | None = None
) -> list[Pair]:
    """LR/HR files under `root`, matched by name, sorted by name.

    LR files are ``NAME.png`` (benchmark LR_bicubic) or ``NAMEx{scale}.png`` (DIV2K, LR_unknown); a flat folder of
    images is all HR, without LR files. `degradation` picks the LR folder ("bicubic" -> LR_bicubic,
    "div2k-unknown" -> LR_unknown; "blur+noise+jpeg" has none, so every pair lacks its LR). `split` ("train" or
    "valid") picks DIV2K's folders and may be left out when only one is there. Names with only an LR file or only
    an HR file are returned too, with None for the other.
    """
    if degradation not in DEGRADATIONS and degradation not in CONDITIONS:
        raise ValueError(f"unknown degradation {degradation!r}; expected one of {(*DEGRADATIONS, *CONDITIONS)}")
    root = Path(root)
    hr_dir, lr_dir = _layout_dirs(root, degradation, scale, split)
    hr = list_images(hr_dir, recursive=False) if hr_dir.is_dir() else []
    lr = list_images(lr_dir, recursive=False) if lr_dir is not None and lr_dir.is_dir() else []
    return match_pairs(lr, hr, scale)


def match_pairs(lq_paths: Iterable[Path], gt_paths: Iterable[Path], scale: int) -> list[Pair]:
    """LR and HR files matched by name, sorted: an LR file ``NAME`` or ``NAMEx{scale}`` (DIV2K's naming) goes
    with the HR file ``NAME``. Names with only one of the two get None for the other."""
    gt = {p.stem: p for p in gt_paths}
    suffix = f"x{scale}"
    lq = {}
    for path in lq_paths:
        stem = path.stem
        if stem not in gt and stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
        lq[stem] = path
    return [Pair(name, lq.get(name), gt.get(name)) for name in sorted(gt.keys() | lq.keys())]


# ---------------------------------------------------------------- decoded images


class ImageCache:
    """Each image file decoded once into a uint8 (3, H, W) tensor.

    With `folder`, decoded pixels are also written there as one ``.npy`` per image (keyed by the file's path, size
    and modification time) and memory-mapped back, so later runs skip decoding and sets bigger than RAM stay on
    disk until touched. The mapping is copy-on-write: changing a returned tensor never changes the cache file.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._images: dict[Path, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._images)

    def __call__(self, path: str | os.PathLike) -> torch.Tensor:
        path = Path(path).resolve()
        if path not in self._images:
            self._images[path] = self._load(path)
        return self._images[path]

    def _load(self, path: Path) -> torch.Tensor:
        if self.folder is None:
            return _decode_chw(path)
        stat = path.stat()
        key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
        file = self.folder / f"{key}.npy"
        if not file.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{os.getpid()}.tmp.npy"
            np.save(tmp, _decode_chw(path).numpy())
            os.replace(tmp, file)
        return torch.from_numpy(np.load(file, mmap_mode="c"))


def _decode_chw(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(read_rgb_u8(path).transpose(2, 0, 1), order="C"))  # (3, H, W) uint8, a copy


# ---------------------------------------------------------------- patch sampling


class _Bank:
    """Images of different sizes in one flat uint8 buffer, so a batch of crops is a single gather."""

    def __init__(self, images: Sequence[torch.Tensor], device: torch.device) -> None:
        numel = [im.numel() for im in images]
        self.flat = torch.empty(sum(numel), dtype=torch.uint8, device=device)
        start = 0
        for im, n in zip(images, numel):
            self.flat[start : start + n] = im.reshape(-1).to(device)
            start += n
        self.offsets = torch.tensor([0, *np.cumsum(numel)[:-1].tolist()], dtype=torch.long, device=device)
        self.heights = torch.tensor([im.shape[-2] for im in images], dtype=torch.long, device=device)
        self.widths = torch.tensor([im.shape[-1] for im in images], dtype=torch.long, device=device)
        self._sizes = list(zip(self.heights.tolist(), self.widths.tolist(), self.offsets.tolist()))

    def crop(self, idx: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
        """(B,) image indices and offsets -> (B, 3, size, size) uint8."""
        if self.flat.device.type == "cpu":  # slicing views is 10x faster than the gather on a CPU
            crops = []
            for i, t, l in zip(idx.tolist(), top.tolist(), left.tolist()):
                h, w, start = self._sizes[i]
                crops.append(self.flat[start : start + 3 * h * w].view(3, h, w)[:, t : t + size, l : l + size])
            return torch.stack(crops)
        r = torch.arange(size, device=self.flat.device)  # on an accelerator: one gather, no host sync
        h, w = self.heights[idx][:, None, None, None], self.widths[idx][:, None, None, None]
        c = torch.arange(3, device=self.flat.device)[None, :, None, None]
        rows = (top[:, None] + r)[:, None, :, None]
        cols = (left[:, None] + r)[:, None, None, :]
        index = self.offsets[idx][:, None, None, None] + (c * h + rows) * w + cols  # (B, 3, size, size)
        return self.flat[index]


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


class PatchSampler:
    """Training batches (lq, gt) of shape (B, 3, p, p) and (B, 3, p*s, p*s), float32 in [0, 1], on `device`.

    Two modes:

    - HR mode (`gt_images` only): any photos; a crop with `margin(degradation)` of context on each side is
      degraded in one batched call and the context is cut off, so for the deterministic degradations each patch
      equals the same crop of the degraded whole image (edges padded the way the degradation pads them).
    - paired mode (`lq_images` too): aligned crops of real LR/HR files.

    Images are drawn with probability proportional to their area, crop offsets uniformly on the LR grid, then
    `paired_augment` (unless ``augment=False``). Images too small for a patch are left out and listed, with the
    reason, in ``skipped``. All randomness comes from the generator given to `sample`.
    """

    def __init__(
        self,
        gt_images: Sequence[torch.Tensor],
        lq_images: Sequence[torch.Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        degradation: str = "bicubic",
        scale: int = 4,
        patch_size: int = 96,
        device: torch.device | str = "cpu",
        params: Params | None = None,
        augment: bool = True,
        skipped: Iterable[tuple[str, str]] = (),
    ) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
        if lq_images is not None and len(lq_images) != len(gt_images):
            raise ValueError(f"{len(lq_images)} lq images for {len(gt_images)} gt images")
        self.degradation, self.scale, self.patch_size = degradation, scale, patch_size
        self.params, self.augment, self.device = params, augment, torch.device(device)
        self.paired = lq_images is not None
        self.margin = 0 if self.paired else margin(degradation, scale, params)
        names = list(names) if names is not None else [str(i) for i in range(len(gt_images))]
        self.skipped: list[tuple[str, str]] = list(skipped)
        p, s = patch_size // scale, scale
        keep_gt, keep_lq, self.names = [], [], []
        for i, (name, gt) in enumerate(zip(names, gt_images)):
            lq_hw = tuple(lq_images[i].shape[-2:]) if self.paired else (gt.shape[-2] // s, gt.shape[-1] // s)
            if min(lq_hw) < p:
                self.skipped.append((name, f"LR {lq_hw[0]}x{lq_hw[1]} smaller than the {p}x{p} patch"))
                continue
            if gt.shape[-2] < lq_hw[0] * s or gt.shape[-1] < lq_hw[1] * s:
                self.skipped.append((name, f"HR {tuple(gt.shape[-2:])} smaller than LR {lq_hw} x{s}"))
                continue
            gt = gt[:, : lq_hw[0] * s, : lq_hw[1] * s]
            if not self.paired:
                gt = pad_edges(gt, self.margin, EDGE_MODES[degradation])
            keep_gt.append(gt)
            keep_lq.append(lq_images[i] if self.paired else None)
            self.names.append(name)
        if not keep_gt:
            raise ValueError(f"no image is large enough for {patch_size}px patches ({len(self.skipped)} skipped)")
        lq_h = [(g.shape[-2] - 2 * self.margin) // s for g in keep_gt]
        lq_w = [(g.shape[-1] - 2 * self.margin) // s for g in keep_gt]
        self._lq_h = torch.tensor(lq_h, dtype=torch.long, device=self.device)
        self._lq_w = torch.tensor(lq_w, dtype=torch.long, device=self.device)
        self._weights = torch.tensor([h * w for h, w in zip(lq_h, lq_w)], dtype=torch.float64)  # by area
        self._weights_on: dict[torch.device, torch.Tensor] = {}  # a copy per generator device
        self._gt = _Bank(keep_gt, self.device)
        self._lq = _Bank(keep_lq, self.device) if self.paired else None

    @property
    def num_images(self) -> int:
        return len(self.names)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch (lq, gt): (B, 3, p, p), (B, 3, p*s, p*s) float32 on the sampler's device."""
        s, p, m, dev = self.scale, self.patch_size // self.scale, self.margin, self.device
        if generator.device not in self._weights_on:
            self._weights_on[generator.device] = self._weights.to(generator.device)
        weights = self._weights_on[generator.device]
        idx = torch.multinomial(weights, batch_size, replacement=True, generator=generator).to(dev)
        top = random_offsets(batch_size, self._lq_h[idx] - p + 1, generator, dev)
        left = random_offsets(batch_size, self._lq_w[idx] - p + 1, generator, dev)
        if self.paired:
            lq = _as_float(self._lq.crop(idx, top, left, p))  # (B, 3, p, p)
            gt = _as_float(self._gt.crop(idx, top * s, left * s, p * s))  # (B, 3, p*s, p*s)
            if self.augment:
                lq, gt = paired_augment(lq, gt, generator)
        else:
            big = _as_float(self._gt.crop(idx, top * s, left * s, p * s + 2 * m))  # (B, 3, p*s + 2m, ...)
            if self.augment:  # before degrading: flipping or turning the LR would flip or turn the blur kernel
                big = random_dihedral(big, generator)
            lq = degrade_interior(big, self.degradation, s, generator, self.params)  # (B, 3, p, p)
            gt = big[..., m : m + p * s, m : m + p * s]
        return lq.contiguous(), gt.contiguous()

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_hr_folder(
        cls,
        roots: str | os.PathLike | Sequence[str | os.PathLike],
        degradation: str,
        scale: int = 4,
        patch_size: int = 96,
        device: torch.device | str = "cpu",
        params: Params | None = None,
        *,
        augment: bool = True,
        cache: ImageCache | None = None,
        max_images: int | None = None,
    ) -> PatchSampler:
        """HR mode on every image under one folder or several (recursively), degraded on the fly.

        `max_images` keeps the first N images of each folder (sorted by path) for quick runs.
        """
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        cache = cache or ImageCache()
        paths = []
        for root in roots:
            found = list_images(root)
            paths += found[:max_images] if max_images is not None else found
        names = [str(p) for p in paths]
        return cls([cache(p) for p in paths], names=names, degradation=degradation, scale=scale,
                   patch_size=patch_size, device=device, params=params, augment=augment)

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[Pair],
        scale: int = 4,
        patch_size: int = 96,
        device: torch.device | str = "cpu",
        *,
        degradation: str = "bicubic",
        augment: bool = True,
        cache: ImageCache | None = None,
    ) -> PatchSampler:
        """Paired mode on real LR/HR files; pairs missing either file are listed in ``skipped``.

        `degradation` only records what the LR files hold.
        """
        cache = cache or ImageCache()
        complete = [q for q in pairs if q.lq_path is not None and q.gt_path is not None]
        skipped = [(q.name, "no LR file" if q.lq_path is None else "no HR file") for q in pairs if q not in complete]
        return cls([cache(q.gt_path) for q in complete], [cache(q.lq_path) for q in complete],
                   names=[q.name for q in complete], degradation=degradation, scale=scale, patch_size=patch_size,
                   device=device, augment=augment, skipped=skipped)

    @classmethod
    def from_div2k(
        cls,
        root: str | os.PathLike,
        split: str,
        degradation: str,
        scale: int = 4,
        patch_size: int = 96,
        device: torch.device | str = "cpu",
        params: Params | None = None,
        *,
        augment: bool = True,
        cache: ImageCache | None = None,
    ) -> PatchSampler:
        """DIV2K (or the benchmark layout): the real LR files when the folder for `degradation` has any,
        otherwise HR mode on the HR files with the degradation synthesised (always so for blur+noise+jpeg)."""
        pairs = find_pairs(root, degradation, scale, split)
        if any(q.lq_path is not None for q in pairs):
            return cls.from_pairs(pairs, scale, patch_size, device, degradation=degradation, augment=augment,
                                  cache=cache)
        cache = cache or ImageCache()
        have = [q for q in pairs if q.gt_path is not None]
        return cls([cache(q.gt_path) for q in have], names=[q.name for q in have], degradation=degradation,
                   scale=scale, patch_size=patch_size, device=device, params=params, augment=augment)


# ---------------------------------------------------------------- the classic Dataset


def _edge_crop(img: torch.Tensor, top: int, left: int, size: int, pad: int, mode: str) -> torch.Tensor:
    """img[:, top - pad : top + size + pad, left - pad : ...] of (C, H, W), outside pixels filled by `mode`."""
    rows = edge_index(img.shape[-2], top - pad, top + size + pad, mode)
    cols = edge_index(img.shape[-1], left - pad, left + size + pad, mode)
    return img.index_select(-2, rows).index_select(-1, cols)


class PatchDataset(torch.utils.data.Dataset):
    """Per-item patches (lq (3, p, p), gt (3, p*s, p*s)) for a DataLoader with workers.

    Item ``i`` is a random patch of image ``i % len(images)``, so an epoch of ``repeat * len(images)`` items visits
    every image `repeat` times. Each item draws from its own CPU generator seeded by (seed, epoch, i): call
    `set_epoch` to get new patches each epoch. When any pair has an LR file, pairs are used as they are (those
    without one are skipped); when none has, or with ``synthesize=True``, the degradation is applied to HR crops.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        degradation: str = "bicubic",
        *,
        scale: int = 4,
        patch_size: int = 96,
        params: Params | None = None,
        augment: bool = True,
        synthesize: bool = False,
        repeat: int = 1,
        seed: int = 0,
        cache: ImageCache | None = None,
    ) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
        self.degradation, self.scale, self.patch_size, self.params = degradation, scale, patch_size, params
        self.augment, self.repeat, self.seed, self.epoch = augment, repeat, seed, 0
        self.paired = not synthesize and any(q.lq_path is not None for q in pairs)
        self.margin = 0 if self.paired else margin(degradation, scale, params)
        cache = cache or ImageCache()
        p = patch_size // scale
        self.skipped: list[tuple[str, str]] = []
        self.items: list[tuple[str, torch.Tensor | None, torch.Tensor]] = []
        for q in pairs:
            if q.gt_path is None or (self.paired and q.lq_path is None):
                self.skipped.append((q.name, "no HR file" if q.gt_path is None else "no LR file"))
                continue
            gt = cache(q.gt_path)
            lq = cache(q.lq_path) if self.paired else None
            lq_hw = tuple(lq.shape[-2:]) if lq is not None else (gt.shape[-2] // scale, gt.shape[-1] // scale)
            if min(lq_hw) < p or gt.shape[-2] < lq_hw[0] * scale or gt.shape[-1] < lq_hw[1] * scale:
                self.skipped.append((q.name, f"LR {lq_hw} / HR {tuple(gt.shape[-2:])} too small or misaligned"))
                continue
            self.items.append((q.name, lq, gt[:, : lq_hw[0] * scale, : lq_hw[1] * scale]))
        if not self.items:
            raise ValueError(f"no image is large enough for {patch_size}px patches ({len(self.skipped)} skipped)")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.repeat * len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0] >> 1)
        g = torch.Generator().manual_seed(seed)
        _, lq, gt = self.items[index % len(self.items)]
        s, p, m = self.scale, self.patch_size // self.scale, self.margin
        if lq is not None:
            lq, gt = paired_random_crop(lq, gt, p, s, g)  # crop the uint8 images, convert only the patches
            lq, gt = _as_float(lq), _as_float(gt)
        else:
            top = int(random_offsets(1, gt.shape[-2] // s - p + 1, g, torch.device("cpu"))[0]) * s
            left = int(random_offsets(1, gt.shape[-1] // s - p + 1, g, torch.device("cpu"))[0]) * s
            big = _as_float(_edge_crop(gt, top, left, p * s, m, EDGE_MODES[self.degradation]))[None]
            lq = degrade_interior(big, self.degradation, s, g, self.params)[0]
            gt = big[0, :, m : m + p * s, m : m + p * s]
        if self.augment:
            lq, gt = paired_augment(lq, gt, g)
        return lq.contiguous(), gt.contiguous()
