"""Figures: side-by-side comparisons with zoomed crops, learning curves, rate-distortion plots, and result tables.

Pure functions: nothing here prints or parses arguments. Images come in as float (3, H, W) RGB tensors in [0, 1]
(grayscale (1, H, W) or (H, W) is shown as gray); figures come out as PIL images or PNG files written atomically.
Learning curves and rate-distortion plots use `matplotlib.figure.Figure` with the Agg canvas directly, never
pyplot, so no state leaks between calls.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from superres.files import atomic_write

LOSS_KEYS = ("train/loss", "g/pixel", "g/content", "g/adv", "d/real", "d/fake")
CROP_COLOUR = (230, 25, 25)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (20, 20, 20)


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def _write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


def _save_png(fig: Any, out_png: str | os.PathLike[str]) -> Path:
    """A matplotlib figure as a PNG, written atomically."""

    def write(f: IO[bytes]) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", facecolor="white")
        f.write(buffer.getvalue())

    return _write_atomic(out_png, write)


def _to_uint8_rgb(image: torch.Tensor) -> np.ndarray:
    """(3,H,W) / (1,H,W) / (H,W) / (1,C,H,W) float in [0,1] -> (H,W,3) uint8; out-of-range values are clamped."""
    t = image.detach().to("cpu", torch.float32)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor (3,H,W), (1,H,W) or (H,W), got shape {tuple(image.shape)}")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)  # grayscale shown as gray
    t = torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
    return (t * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans as shipped with matplotlib, so text looks the same on every machine."""
    from matplotlib import font_manager

    try:
        props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
        return ImageFont.truetype(font_manager.findfont(props, fallback_to_default=True), size)
    except (OSError, ValueError):
        return ImageFont.load_default(size=size)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


# ---------------------------------------------------------------------------------------------------------------
# Comparison figures


@dataclass(frozen=True)
class Panel:
    """One image of a comparison: a label, a (3,H,W) tensor in [0,1], and optional metrics against the ground truth."""

    label: str
    image: torch.Tensor
    psnr: float | None = None
    ssim: float | None = None

    def caption(self) -> list[str]:
        metrics = []
        if self.psnr is not None:
            metrics.append("inf dB" if math.isinf(self.psnr) else f"{self.psnr:.2f} dB")
        if self.ssim is not None:
            metrics.append(f"{self.ssim:.4f}" if self.psnr is not None else f"SSIM {self.ssim:.4f}")
        return [self.label] + ([" / ".join(metrics)] if metrics else [])


def _box_sums(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sum of x (H,W) over every h x w window, via a summed-area table: (H-h+1, W-w+1), O(HW) for any window."""
    sat = torch.nn.functional.pad(x.cumsum(0).cumsum(1), (1, 0, 1, 0))  # (H+1, W+1)
    return sat[h:, w:] - sat[:-h, w:] - sat[h:, :-w] + sat[:-h, :-w]


def auto_crop(images: Sequence[torch.Tensor], size: int, *, texture_weight: float = 0.05) -> tuple[int, int, int, int]:
    """The size x size window (x, y, w, h) where the images disagree most.

    Score = summed per-pixel variance across the images over the window (normalised to its maximum), plus
    `texture_weight` times the normalised gradient energy of their mean, so near-ties and identical inputs go to
    textured regions rather than flat sky. Deterministic: the first maximum in row-major order wins.
    """
    if not images:
        raise ValueError("auto_crop needs at least one image")
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    stack = torch.stack([torch.from_numpy(_to_uint8_rgb(im)).double() / 255.0 for im in images])  # (N, H, W, 3)
    if any(im.shape[-2:] != images[0].shape[-2:] for im in images):
        raise ValueError("auto_crop needs images of the same size")
    _, height, width, _ = stack.shape
    h, w = min(size, height), min(size, width)
    disagreement = stack.var(dim=0, unbiased=False).sum(-1) if len(images) > 1 else torch.zeros(height, width)
    gray = stack.mean(dim=(0, 3))  # (H, W)
    energy = torch.zeros_like(gray)
    energy[:, 1:] += (gray[:, 1:] - gray[:, :-1]) ** 2
    energy[1:, :] += (gray[1:, :] - gray[:-1, :]) ** 2
    score = torch.zeros(height - h + 1, width - w + 1, dtype=torch.float64)
    for part, weight in ((disagreement.double(), 1.0), (energy, texture_weight)):
        sums = _box_sums(part, h, w)
        peak = sums.max()
        if peak > 1e-12:
            score += weight * sums / peak
    index = int(torch.argmax(score))
    y, x = divmod(index, score.shape[1])
    return x, y, w, h


def _default_crop_size(height: int, width: int) -> int:
    """A 48 to 96 px window (a quarter of the short side); half the short side for images under 96 px."""
    short = min(height, width)
    size = min(96, max(48, short // 4))
    return size if size <= short // 2 else max(1, short // 2)


def _fit_view(pixels: Image.Image, panel_width: int, max_height: int) -> tuple[Image.Image, float]:
    """Whole image fitted into panel_width x max_height: Lanczos to shrink, whole-number nearest to enlarge."""
    width, height = pixels.size
    scale = min(panel_width / width, max_height / height)
    if scale >= 1.0:
        scale = float(int(scale))
        resample = Image.Resampling.NEAREST
    else:
        resample = Image.Resampling.LANCZOS
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return (pixels.copy() if size == pixels.size else pixels.resize(size, resample)), scale  # drawn on later


def _zoom(region: Image.Image, zoom_size: int) -> Image.Image:
    """Enlarge a crop by a whole factor with nearest neighbour (pixels stay square and visible) to about zoom_size."""
    longest = max(region.size)
    if longest > zoom_size:  # a crop bigger than the zoom box is shrunk instead
        scale = zoom_size / longest
        size = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
        return region.resize(size, Image.Resampling.LANCZOS)
    factor = max(1, round(zoom_size / longest))
    return region.resize((region.width * factor, region.height * factor), Image.Resampling.NEAREST)


def comparison_figure(
    panels: Sequence[Panel],
    *,
    crop: tuple[int, int, int, int] | None = None,
    zoom_size: int = 300,
    title: str | None = None,
    panel_width: int = 360,
    max_columns: int = 6,
) -> Image.Image:
    """Panels side by side: each whole image with the crop outlined, the crop zoomed underneath, then its caption.

    All panels must have the same size (e.g. bicubic-upscaled input, each model's output, the ground truth).
    `crop` is (x, y, w, h) in image pixels; None picks the window where the panels differ most (`auto_crop`).
    Up to `max_columns` panels go in one row; more wrap into balanced rows. Returns an RGB image on white.
    """
    if not panels:
        raise ValueError("comparison_figure needs at least one panel")
    arrays = [_to_uint8_rgb(p.image) for p in panels]
    height, width = arrays[0].shape[:2]
    for panel, array in zip(panels, arrays):
        if array.shape[:2] != (height, width):
            raise ValueError(
                f"all panels must have the same size: {panels[0].label!r} is {width}x{height}, "
                f"{panel.label!r} is {array.shape[1]}x{array.shape[0]}"
            )
    if crop is None:
        crop = auto_crop([p.image for p in panels], _default_crop_size(height, width))
    x, y, w, h = (int(v) for v in crop)
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"crop (x, y, w, h) = {crop} is not inside the {width}x{height} image")

    pad, gap, line_gap = 16, 20, 4
    name_font, metric_font, title_font = _font(18, bold=True), _font(16), _font(22, bold=True)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    views, zooms = [], []
    for array in arrays:
        pixels = Image.fromarray(array, "RGB")
        view, scale = _fit_view(pixels, panel_width, round(panel_width * 1.5))
        draw = ImageDraw.Draw(view)
        line = max(2, round(min(view.size) / 120))
        box = (x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1)
        halo = (box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1)  # white rim keeps the outline visible on red
        draw.rectangle(halo, outline=BACKGROUND, width=line + 2)
        draw.rectangle(box, outline=CROP_COLOUR, width=line)
        views.append(view)
        zooms.append(_zoom(pixels.crop((x, y, x + w, y + h)), zoom_size))

    captions = [p.caption() for p in panels]
    fonts = [name_font, metric_font]
    caption_sizes = [[_text_size(measure, text, fonts[min(i, 1)]) for i, text in enumerate(c)] for c in captions]
    line_height = max(_text_size(measure, "Ag|dB", f)[1] for f in fonts) + line_gap
    caption_height = line_height * max(len(c) for c in captions)
    frame = 2  # zoom border, same colour as the outline on the whole view

    cell_w = max(
        max(v.width for v in views),
        max(z.width for z in zooms) + 2 * frame,
        max(tw for sizes in caption_sizes for tw, _ in sizes),
    )
    view_h = max(v.height for v in views)
    zoom_h = max(z.height for z in zooms) + 2 * frame
    cell_h = view_h + gap // 2 + zoom_h + gap // 2 + caption_height

    rows = math.ceil(len(panels) / max_columns)
    columns = math.ceil(len(panels) / rows)
    title_h = (_text_size(measure, title, title_font)[1] + gap) if title else 0
    canvas_w = max(
        2 * pad + columns * cell_w + (columns - 1) * gap,
        2 * pad + (_text_size(measure, title, title_font)[0] if title else 0),
    )
    canvas_h = 2 * pad + title_h + rows * cell_h + (rows - 1) * gap
    canvas = Image.new("RGB", (canvas_w, canvas_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        tw = _text_size(measure, title, title_font)[0]
        draw.text(((canvas_w - tw) // 2, pad), title, fill=TEXT_COLOUR, font=title_font, anchor="lt")

    grid_w = columns * cell_w + (columns - 1) * gap
    left = (canvas_w - grid_w) // 2
    for i, (view, zoom, caption, sizes) in enumerate(zip(views, zooms, captions, caption_sizes)):
        row, col = divmod(i, columns)
        cx = left + col * (cell_w + gap)
        cy = pad + title_h + row * (cell_h + gap)
        canvas.paste(view, (cx + (cell_w - view.width) // 2, cy + (view_h - view.height) // 2))
        zy = cy + view_h + gap // 2
        zx = cx + (cell_w - zoom.width - 2 * frame) // 2
        draw.rectangle((zx, zy, zx + zoom.width + 2 * frame - 1, zy + zoom.height + 2 * frame - 1), fill=CROP_COLOUR)
        canvas.paste(zoom, (zx + frame, zy + frame))
        ty = zy + zoom_h + gap // 2
        for j, (text, (tw, _)) in enumerate(zip(caption, sizes)):
            draw.text((cx + (cell_w - tw) // 2, ty + j * line_height), text, fill=TEXT_COLOUR,
                      font=fonts[min(j, 1)], anchor="lt")
    return canvas


def save_figure(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write a PIL image atomically; the format follows the suffix (.png, .jpg, .webp, ...)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}")
    rgb = image.convert("RGB") if fmt in ("JPEG", "BMP") else image
    return _write_atomic(path, lambda f: rgb.save(f, format=fmt))


# ---------------------------------------------------------------------------------------------------------------
# Learning curves


def moving_average(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` values (fewer at the start); same length as the input, float64."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return v
    sums = np.concatenate([[0.0], np.cumsum(v)])
    ends = np.arange(1, v.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _log_path(run_dir: str | os.PathLike[str]) -> Path:
    """A run folder's log.csv, or the given .csv itself."""
    run_dir = Path(run_dir)
    return run_dir if run_dir.suffix == ".csv" else run_dir / "log.csv"


def read_log(run_dir: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """log.csv (`step,seconds,key,value`, one row per scalar) -> {key: (steps, values)}, sorted by step.

    A step logged twice (a resumed run repeats the steps after its last checkpoint) keeps its latest value.
    Non-finite values and malformed rows (a line cut short by a crash) are skipped.
    """
    path = _log_path(run_dir)
    if not path.is_file():
        raise ValueError(f"{path}: no training log found")
    series: dict[str, dict[int, float]] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"step", "key", "value"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: expected header step,seconds,key,value, got {reader.fieldnames}")
        for row in reader:
            try:
                step, key, value = int(float(row["step"])), row["key"], float(row["value"])
            except (TypeError, ValueError):
                continue
            if key and math.isfinite(value):
                series.setdefault(key, {})[step] = value
    if not series:
        raise ValueError(f"{path}: the log has no values")
    out = {}
    for key, points in series.items():
        steps = np.array(sorted(points), dtype=np.int64)
        out[key] = (steps, np.array([points[s] for s in steps], dtype=np.float64))
    return out


def read_minutes(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, minutes since the run started) of every logged row of a run's log.csv, sorted by step: the wall
    clock at which the run reached each step (a resumed run: the time of the last time through it)."""
    clock: dict[int, float] = {}
    with _log_path(run_dir).open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                clock[int(float(row["step"]))] = float(row["seconds"]) / 60.0
            except (KeyError, TypeError, ValueError):
                continue
    steps = np.array(sorted(clock), dtype=np.int64)
    return steps, np.array([clock[s] for s in steps], dtype=np.float64)


def _is_loss(key: str) -> bool:
    return key in LOSS_KEYS or key.endswith("loss")


def _default_keys(present: set[str]) -> list[str]:
    keys = [k for k in LOSS_KEYS if k in present]
    keys += sorted(k for k in present if _is_loss(k) and k not in keys)
    if "val/psnr" in present:
        keys.append("val/psnr")
    return keys


def _run_names(paths: Sequence[Path]) -> list[str]:
    """Folder names for the legend; parent/name where two runs share a name."""
    folders = [p.parent if p.suffix == ".csv" else p for p in paths]
    names = [f.name or str(f) for f in folders]
    if len(set(names)) < len(names):
        names = [f"{f.parent.name}/{f.name}" for f in folders]
    return names


def plot_learning_curves(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_png: str | os.PathLike[str],
    *,
    keys: Sequence[str] | None = None,
    window: int | None = None,
    max_columns: int = 3,
    x: str = "step",
) -> Path:
    """One subplot per key, runs overlaid: the raw curve faint, its trailing moving average bold; against the
    step, or with `x="minutes"` against the wall clock (runs of equal time side by side).

    `keys` defaults to the loss keys present plus `val/psnr`. `window` is the moving-average length in logged
    points; None picks about 1/25 of each curve. Losses that stay positive and span a decade get a log y axis.
    Writes the PNG atomically and returns its path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not run_dirs:
        raise ValueError("plot_learning_curves needs at least one run folder")
    if x not in ("step", "minutes"):
        raise ValueError(f"x must be step or minutes, got {x!r}")
    paths = [Path(d) for d in run_dirs]
    logs = [read_log(p) for p in paths]
    present = set().union(*logs)
    keys = list(keys) if keys is not None else _default_keys(present)
    if not keys:
        raise ValueError(f"no loss or val/psnr keys in the logs; available: {sorted(present)}")
    absent = [k for k in keys if k not in present]
    if absent:
        raise ValueError(f"keys {absent} are in no log; available: {sorted(present)}")

    columns = min(max_columns, len(keys))
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(4.6 * columns, 3.3 * rows + 0.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    colours = [f"C{i % 10}" for i in range(len(logs))]
    names = _run_names(paths)
    clocks = [read_minutes(p) if x == "minutes" else None for p in paths]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, i + 1)
        all_values = []
        for log, clock, name, colour in zip(logs, clocks, names, colours):
            if key not in log:
                continue
            steps, values = log[key]
            if clock is not None:
                steps = np.interp(steps, *clock)
            all_values.append(values)
            n = window if window is not None else max(1, round(len(values) / 25))
            marker = "o" if len(values) <= 30 else None
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8, marker=marker, markersize=3)
            ax.plot(steps, moving_average(values, n), color=colour, linewidth=2.0, label=name)
        joined = np.concatenate(all_values)
        if _is_loss(key) and joined.min() > 0 and joined.max() / joined.min() >= 10:
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step" if x == "step" else "minutes of wall time")
        ax.grid(True, alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")
    handles = {}  # one entry per run, even for a run missing from the first subplot
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncol=min(len(handles), 4),
               frameon=False)
    return _save_png(fig, out_png)


# ---------------------------------------------------------------------------------------------------------------
# Rate-distortion


def plot_rate_distortion(rows: Sequence[dict[str, Any]], out_png: str | os.PathLike[str], *,
                         title: str | None = None) -> Path:
    """PSNR-Y against bits per pixel (log x) from `superres.rd.mean_curves` rows: one panel per codec (shared y),
    one line per scale x model in it, the codec alone (scale 1) black and bold, the upscaled curves in one colour
    per scale x model, dashed at x2. An infinite PSNR (a lossless round trip) is drawn capped 2 dB above the highest
    finite one, as an open triangle marked "inf". Writes the PNG atomically and returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not rows:
        raise ValueError("plot_rate_distortion needs at least one row")
    curves: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        curves.setdefault((row["codec"], row["scale"], row["model"]), []).append(row)
    finite = [r["psnr_y"] for r in rows if math.isfinite(r["psnr_y"])]
    cap = (max(finite) if finite else 50.0) + 2.0
    codecs = list(dict.fromkeys(key[0] for key in curves))
    pipelines = list(dict.fromkeys(key[1:] for key in curves if key[1] > 1))
    fig = Figure(figsize=(1.0 + 4.2 * len(codecs), 5.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(codecs), sharey=True, squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, codec in zip(axes, codecs):
        for (name, scale, model), points in curves.items():
            if name != codec:
                continue
            points = sorted(points, key=lambda r: r["bpp"])
            bpp = np.array([p["bpp"] for p in points])
            psnr = np.array([p["psnr_y"] for p in points])
            capped = ~np.isfinite(psnr)
            alone = scale == 1
            colour = "black" if alone else f"C{pipelines.index((scale, model)) % 10}"
            label = "x1: codec alone" if alone else f"x{scale} + {model}"
            (line,) = ax.plot(bpp[~capped], psnr[~capped], color=colour, linestyle="--" if scale == 2 else "-",
                              linewidth=2.6 if alone else 1.4, marker="o", markersize=3.5, label=label)
            handles.setdefault(label, line)
            if capped.any():
                ax.plot(bpp[capped], np.full(int(capped.sum()), cap), linestyle="none", marker="^", markersize=9,
                        markerfacecolor="white", color=colour)
                for x in bpp[capped]:
                    ax.annotate("inf", (x, cap), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
                handles.setdefault("lossless: inf dB, drawn capped", Line2D(
                    [], [], linestyle="none", marker="^", markersize=9, markerfacecolor="white", color="black"))
        ax.set_xscale("log")
        ax.set_title(codec.upper())
        ax.set_xlabel("bits per pixel of the full-size image")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("PSNR-Y (dB)")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 5),
               frameon=False, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save_png(fig, out_png)


# ---------------------------------------------------------------------------------------------------------------
# Tables


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _markdown_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_table(
    rows: Sequence[dict[str, Any]],
    md_path: str | os.PathLike[str] | None,
    csv_path: str | os.PathLike[str] | None,
) -> None:
    """A Markdown and a CSV table from a list of dicts, same column order (first seen first); either path may be None.

    Markdown rounds floats to 4 decimals and right-aligns numeric columns; CSV keeps full precision. Missing cells
    are left empty.
    """
    if not rows:
        raise ValueError("write_table needs at least one row")
    columns = _columns(rows)
    if md_path is not None:
        numeric = [
            all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows if c in r)
            for c in columns
        ]
        lines = [
            "| " + " | ".join(_markdown_cell(c) for c in columns) + " |",
            "|" + "|".join("---:" if num else "---" for num in numeric) + "|",
        ]
        lines += ["| " + " | ".join(_markdown_cell(r.get(c)) for c in columns) + " |" for r in rows]
        text = "\n".join(lines) + "\n"
        _write_atomic(md_path, lambda f: f.write(text.encode("utf-8")))
    if csv_path is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        _write_atomic(csv_path, lambda f: f.write(buffer.getvalue().encode("utf-8")))


MATRIX_FIELDS = {"psnr_y": ("Y PSNR", "{:.2f}"), "ssim_y": ("SSIM", "{:.4f}"), "psnr_rgb": ("RGB PSNR", "{:.2f}"),
                 "sharpness": ("sharpness", "{:.2f}"), "checkerboard": ("checkerboard", "{:.2f}")}


def condition_matrix(rows: Sequence[dict[str, Any]], fields: Sequence[str] = ("psnr_y", "ssim_y")) -> str:
    """Markdown tables of benchmark rows, one per data set: models as rows, test conditions as columns, each cell
    the `fields` joined by " / " (see MATRIX_FIELDS; sharpness and checkerboard are SR over HR, 1.0 = as HR), the
    best first field of each column in bold."""
    key = fields[0]
    sections = []
    for data in dict.fromkeys(r["data"] for r in rows):
        subset = [r for r in rows if r["data"] == data]
        models = list(dict.fromkeys(r["model"] for r in subset))
        conditions = list(dict.fromkeys(r["degradation"] for r in subset))
        cell = {(r["model"], r["degradation"]): r for r in subset}
        best = {c: max(r[key] for r in subset if r["degradation"] == c) for c in conditions}
        title = " / ".join(MATRIX_FIELDS[f][0] for f in fields)
        lines = [f"**{data}** ({subset[0]['images']} images), {title}", "",
                 "| model | " + " | ".join(conditions) + " |", "|---|" + "---:|" * len(conditions)]
        for model in models:
            cells = []
            for c in conditions:
                r = cell.get((model, c))
                text = "" if r is None else " / ".join(MATRIX_FIELDS[f][1].format(r[f]) for f in fields)
                cells.append(f"**{text}**" if r is not None and r[key] == best[c] else text)
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"
