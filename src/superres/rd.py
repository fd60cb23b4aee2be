"""Store small, upscale later: rate-distortion of downscale + codec + upscaling against the codec alone.

For every ground-truth image, codec, quality and scale s the pipeline is

    HR, cropped to a multiple of the largest scale
    -> bicubic downscale by s (`superres.data.degrade.bicubic`, MATLAB-style antialiased; none for s = 1), 8 bits
    -> Pillow's real encoder at that quality (the bytes are counted) -> its decoder
    -> upscaling to full size by each upscaler of s: bicubic always, a model only at its own scale

and the result is scored against the HR by the published protocol (`superres.evaluate.score_image`) with one border
for every scale (the largest scale), so all curves are scored on the same pixels. bpp = 8 x encoded bytes / (H x W
of the full-size image). The decoding side (codec decode, then upscale) is timed per image.

A lossless round trip at scale 1 scores inf dB: `inf` in rows, CSV and Markdown; null in JSON, with the field named
in the row's `infinite` list (`json_rows`); drawn capped and marked in the figure. Pure: nothing here prints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from superres import bjontegaard
from superres.data.degrade import bicubic, quantize
from superres.evaluate import score_image
from superres.imageio import CODEC_FORMATS, LOSSLESS_FORMATS, decode, encode, list_images, read_rgb
from superres.inference import upscale
from superres.models import build_model

Quality = Optional[int]  # 0..100; None: lossless (WebP lossless, PNG)
Grid = dict[tuple[str, int], tuple[Quality, ...]]  # (codec, scale) -> qualities
SCALES = (1, 2, 4)
NO_UPSCALE = "none"  # the upscaler at scale 1: the decoded image is the result
BICUBIC = "bicubic"
LOSSLESS = "lossless"  # how a quality of None is written

# Chosen so that each scale's bits per pixel overlap the full-size curve's (measured on Kodak24): a x4 image holds
# 1/16 of the pixels, so its file needs high qualities to reach the bytes of a low-quality full-size file, and the
# full-size grid starts at each codec's floor (JPEG quality 1 and 2 make the same file). Mean bpp at x1: JPEG 0.17
# to 2.3, WebP 0.10 to 1.9 (lossless 9.4), AVIF 0.065 to 2.4; at x4: JPEG 0.05 to 0.5, WebP 0.05 to 0.27 (lossless
# 0.6), AVIF 0.04 to 0.4.
DEFAULT_QUALITIES: dict[str, dict[int, tuple[Quality, ...]]] = {
    "jpeg": {1: (1, 3, 5, 10, 15, 20, 30, 40, 50, 60, 75, 90), 2: (20, 30, 40, 50, 60, 70, 80, 90, 95),
             4: (50, 60, 70, 80, 85, 90, 95, 98, 100)},
    "webp": {1: (0, 5, 10, 20, 30, 40, 50, 60, 75, 90, None), 2: (20, 30, 40, 50, 60, 70, 80, 90, 95),
             4: (40, 50, 60, 70, 80, 90, 95, 100, None)},
    "avif": {1: (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90), 2: (20, 30, 40, 50, 60, 70, 80, 90, 95),
             4: (40, 50, 60, 70, 80, 85, 90, 95, 100)},
    "png": {1: (None,), 2: (None,), 4: (None,)},
}
_AVERAGED = ("bytes", "bpp", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "sharpness", "encode_s", "decode_s",
             "upscale_s")


def quality_label(quality: Quality) -> int | str:
    return LOSSLESS if quality is None else quality


def quality_grid(codecs: Sequence[str], scales: Sequence[int],
                 overrides: Mapping[tuple[str, int | None], Sequence[Quality]] | None = None) -> Grid:
    """The qualities of every (codec, scale): the defaults, replaced by `overrides` keyed (codec, scale), or
    (codec, None) for all scales of the codec. ValueError (one line) for an unknown codec or scale or a quality
    the codec cannot take."""
    for codec in codecs:
        if codec not in CODEC_FORMATS:
            raise ValueError(f"unknown codec {codec!r}; expected some of {', '.join(CODEC_FORMATS)}")
    for scale in scales:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; expected some of {', '.join(map(str, SCALES))}")
    overrides = overrides or {}
    for codec, scale in overrides:
        if codec not in codecs or (scale is not None and scale not in scales):
            raise ValueError(f"qualities given for {codec}{'' if scale is None else f' at scale {scale}'}, "
                             f"which is not measured")
    grid: Grid = {}
    for codec in codecs:
        for scale in scales:
            qualities = tuple(overrides.get((codec, scale), overrides.get((codec, None),
                                                                           DEFAULT_QUALITIES[codec][scale])))
            _check_qualities(codec, qualities)
            grid[codec, scale] = qualities
    return grid


def _check_qualities(codec: str, qualities: Sequence[Quality]) -> None:
    image_format = CODEC_FORMATS[codec]
    if not qualities:
        raise ValueError(f"{codec}: no qualities")
    for quality in qualities:
        if quality is None and image_format not in LOSSLESS_FORMATS:
            raise ValueError(f"{codec} has no lossless mode")
        if quality is not None and (image_format == "PNG" or not 0 <= quality <= 100):
            raise ValueError(f"{codec}: quality {quality} is not allowed (expected "
                             f"{LOSSLESS if image_format == 'PNG' else '0 to 100'})")


def hr_paths(folder: str | Path) -> list[Path]:
    """The ground-truth images of a test folder: those in its HR/ subfolder where it has one (the benchmark layout),
    else those directly in it (a flat folder such as Kodak24)."""
    folder = Path(folder)
    hr = folder / "HR"
    return list_images(hr if hr.is_dir() else folder, recursive=False)


def downscale(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """(3, H, W) -> (3, H / s, W / s) on 8-bit levels: MATLAB-style bicubic (the benchmarks' LR), or gt for s = 1."""
    if scale == 1:
        return gt
    return quantize(bicubic(gt[None], scale)[0])


def upscalers_for(scale: int, models: Mapping[str, nn.Module]) -> dict[str, nn.Module | None]:
    """Name -> upscaler of the decoded image at `scale`: none at scale 1; bicubic, then each model of that scale."""
    if scale == 1:
        return {NO_UPSCALE: None}
    chosen: dict[str, nn.Module | None] = {BICUBIC: build_model("bicubic", scale=scale).eval()}
    chosen.update({name: model for name, model in models.items() if model.scale == scale and name != BICUBIC})
    return chosen


def model_notes(scales: Sequence[int], models: Mapping[str, nn.Module]) -> list[str]:
    """One line for each model that sits out some of the scales (a model upscales by its own scale only)."""
    notes = []
    for name, model in models.items():
        if name == BICUBIC:
            continue
        others = [s for s in scales if s > 1 and s != model.scale]
        if model.scale not in scales:
            notes.append(f"{name} is x{model.scale} and x{model.scale} is not measured: not used")
        elif others:
            notes.append(f"{name} is x{model.scale}: scale {', '.join(map(str, others))} has bicubic only")
    return notes


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def measure_image(gt: torch.Tensor, grid: Grid, models: Mapping[str, nn.Module], *,
                  tile: int | None = None) -> list[dict[str, Any]]:
    """Rows (codec, scale, model, quality, bytes, bpp, scores, seconds) of one ground truth (3, H, W) whose sides
    are multiples of the largest scale of `grid`."""
    border = max(scale for _, scale in grid)
    height, width = gt.shape[-2:]
    rows = []
    for scale in sorted({scale for _, scale in grid}):
        lq = downscale(gt, scale)
        upscalers = upscalers_for(scale, models)
        for codec in [c for c, s in grid if s == scale]:
            for quality in grid[codec, scale]:
                data, encode_s = _timed(lambda: encode(lq, CODEC_FORMATS[codec], quality))
                decoded, decode_s = _timed(lambda: decode(data))
                for name, model in upscalers.items():
                    sr, upscale_s = (decoded, 0.0) if model is None else _timed(
                        lambda: upscale(model, decoded, tile=tile))
                    scores = score_image(sr, gt, scale=border)
                    rows.append({"codec": codec, "scale": scale, "model": name, "quality": quality_label(quality),
                                 "bytes": len(data), "bpp": 8 * len(data) / (height * width), **scores,
                                 "encode_s": encode_s, "decode_s": decode_s, "upscale_s": upscale_s})
    return rows


def measure(paths: Sequence[Path], grid: Grid, models: Mapping[str, nn.Module], *, data: str,
            tile: int | None = None, on_image: Callable[[int, int, str, float], None] | None = None,
            ) -> list[dict[str, Any]]:
    """Per-image rows for the images at `paths` (see `measure_image`), each HR cropped to a multiple of the largest
    scale; `on_image(done, total, name, seconds)` reports progress."""
    multiple = max(scale for _, scale in grid)
    rows = []
    for index, path in enumerate(paths):
        start = time.perf_counter()
        gt = read_rgb(path)
        height, width = gt.shape[-2] // multiple * multiple, gt.shape[-1] // multiple * multiple
        gt = gt[:, :height, :width]
        head = {"data": data, "image": path.stem, "height": height, "width": width}
        rows += [{**head, **row} for row in measure_image(gt, grid, models, tile=tile)]
        if on_image:
            on_image(index + 1, len(paths), path.stem, time.perf_counter() - start)
    return rows


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def mean_curves(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data, codec, scale, model, quality): the mean over images of bpp, scores and seconds (inf where
    an image scored inf), in the order first seen."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["codec"], row["scale"], row["model"], row["quality"]), []).append(row)
    return [
        {"data": data, "codec": codec, "scale": scale, "model": model, "quality": quality, "images": len(members),
         **{key: _mean([m[key] for m in members]) for key in _AVERAGED}}
        for (data, codec, scale, model, quality), members in groups.items()
    ]


def _ranges(advantage: bjontegaard.Advantage | None) -> str:
    if advantage is None:
        return "no common bpp"
    return ", ".join(f"{low:.3g}-{high:.3g}" for low, high in advantage.above) or "none"


def bd_table(mean_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each upscaled curve (scale > 1) of the mean rows against the same codec at scale 1 on the same data, PSNR-Y
    against bpp: BD-rate (%, pchip and cubic; negative saves bytes) over the PSNRs both reach (psnr_from..psnr_to),
    BD-PSNR (dB) over the bpp both reach (bpp_from..bpp_to), the bpp ranges where it is above the codec alone, its
    largest gain there, and the decoding seconds per image of both. The two overlaps can differ a lot (a x4 curve
    that levels off meets the full-size curve's low end only), and so can the signs of the two deltas."""
    curves: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in mean_rows:
        curves.setdefault((row["data"], row["codec"], row["scale"], row["model"]), []).append(row)
    table = []
    for (data, codec, scale, model), points in curves.items():
        if scale == 1:
            continue
        anchor = curves.get((data, codec, 1, NO_UPSCALE))
        entry: dict[str, Any] = {"data": data, "codec": codec, "scale": scale, "model": model}
        if anchor is None:
            table.append({**entry, "bd_rate": math.nan, "reason": f"no scale-1 {codec} curve to compare with"})
            continue
        curve = ([p["bpp"] for p in anchor], [p["psnr_y"] for p in anchor],
                 [p["bpp"] for p in points], [p["psnr_y"] for p in points])
        rate, cubic = bjontegaard.bd_rate(*curve), bjontegaard.bd_rate(*curve, method="cubic")
        psnr, ahead = bjontegaard.bd_psnr(*curve), bjontegaard.advantage(*curve)
        table.append({
            **entry, "bd_rate": rate.value, "bd_rate_cubic": cubic.value, "bd_psnr": psnr.value,
            "psnr_from": rate.low, "psnr_to": rate.high, "bpp_from": psnr.low, "bpp_to": psnr.high,
            "better_bpp": _ranges(ahead),
            "max_gain_db": math.nan if ahead is None else ahead.max_gain,
            "at_bpp": math.nan if ahead is None else ahead.at_rate,
            "decode_s": _mean([p["decode_s"] + p["upscale_s"] for p in points]),
            "codec_decode_s": _mean([p["decode_s"] for p in anchor]),
            "reason": rate.reason or cubic.reason,
        })
    return table


def json_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as strict JSON takes them: a non-finite float becomes null; an infinite one is also named in the row's
    `infinite` list (a lossless round trip's PSNR), NaN needs no mark (a BD row says why in `reason`)."""
    out = []
    for row in rows:
        clean = {key: None if isinstance(v, float) and not math.isfinite(v) else v for key, v in row.items()}
        infinite = [key for key, v in row.items() if isinstance(v, float) and math.isinf(v)]
        out.append({**clean, "infinite": infinite} if infinite else clean)
    return out
