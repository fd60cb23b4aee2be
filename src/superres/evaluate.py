"""Score a model on a folder of test images by the published protocol (see `superres.metrics`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from superres.data import find_pairs
from superres.data.conditions import CONDITIONS, condition_lq
from superres.imageio import read_picture
from superres.inference import model_device, upscale
from superres.metrics import gradient_energy, periodic_energy, psnr, ssim
from superres.models.classical import for_condition


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    sharpness: float  # gradient energy of SR over that of HR
    checkerboard: float  # spectral energy at the scale-periodic frequencies, SR over HR (metrics.periodic_energy)
    seconds: float


@dataclass(frozen=True)
class Evaluation:
    model: str
    data: str
    scale: int
    degradation: str
    images: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    sharpness: float
    checkerboard: float
    seconds_per_image: float
    per_image: list[ImageScore] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def _synchronize(model: nn.Module) -> None:
    if model_device(model).type == "cuda":
        torch.cuda.synchronize()


def ratio(measure: Callable[..., float], sr: torch.Tensor, gt: torch.Tensor, **kwargs) -> float:
    """measure(sr) / measure(gt): 1.0 where SR has as much of it as HR."""
    return measure(sr, **kwargs) / max(measure(gt, **kwargs), 1e-12)


def score_image(sr: torch.Tensor, gt: torch.Tensor, *, scale: int) -> dict[str, float]:
    """All metrics for one output against its ground truth; (1, H, W) ground truth counts as Y. The checkerboard
    measure looks at patterns that repeat every `scale` output pixels (every 4 for a x4 model, which includes 2)."""
    if gt.shape[0] == 1:
        sr = sr.mean(0, keepdim=True)
    border = scale
    return {
        "psnr_y": psnr(sr, gt, crop_border=border, y_channel=True),
        "ssim_y": ssim(sr, gt, crop_border=border, y_channel=True),
        "psnr_rgb": psnr(sr, gt, crop_border=border, y_channel=False),
        "ssim_rgb": ssim(sr, gt, crop_border=border, y_channel=False),
        "sharpness": ratio(gradient_energy, sr, gt, crop_border=border),
        "checkerboard": ratio(periodic_energy, sr, gt, crop_border=border, period=scale),
    }


def test_images(data_dir: str | Path, *, degradation: str, scale: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, lq (3, h, w), gt (1 or 3, H, W)) for every HR image of `data_dir` (its HR/ folder, or the images
    directly in it) under the test condition `degradation` (a name from `superres.data.CONDITIONS`).

    LR comes from `LR_bicubic/X{s}/` or `LR_unknown/X{s}/` for the conditions that have such files; where they
    are missing it is made from the HR by the condition. LR files without HR are skipped.
    """
    if degradation not in CONDITIONS:
        raise ValueError(f"unknown test condition {degradation!r}; expected one of {', '.join(CONDITIONS)}")
    pairs = [p for p in find_pairs(data_dir, degradation=degradation, scale=scale) if p.gt_path is not None]
    if not pairs:
        raise FileNotFoundError(f"{data_dir}: no HR images found (expected {Path(data_dir) / 'HR'}/*.png)")
    images = []
    for pair in pairs:
        gt = read_picture(pair.gt_path).pixels
        if pair.lq_path is not None:
            lq = read_picture(pair.lq_path).pixels
        else:
            lq = condition_lq(gt.expand(3, -1, -1), degradation, scale)
        images.append((pair.name, lq.expand(3, -1, -1), gt))
    return images


def evaluate(
    model: nn.Module,
    data_dir: str | Path,
    *,
    model_name: str,
    degradation: str = "bicubic",
    tile: int | None = None,
    on_image: Callable[[int, int, ImageScore], None] | None = None,
) -> Evaluation:
    """Upscale the LR of every HR image of `data_dir` (see `test_images`) and score it. Oracle baselines
    (`superres.models.classical`) are told the condition."""
    scale = model.scale
    model = for_condition(model, degradation)
    images = test_images(data_dir, degradation=degradation, scale=scale)
    scores: list[ImageScore] = []
    for index, (name, lq, gt) in enumerate(images):
        _synchronize(model)
        start = time.perf_counter()
        sr = upscale(model, lq, tile=tile)
        _synchronize(model)
        seconds = time.perf_counter() - start
        gt = gt[:, : sr.shape[-2], : sr.shape[-1]]  # HR not a multiple of the scale: crop it (modcrop)
        if gt.shape[-2:] != sr.shape[-2:]:
            raise ValueError(f"{name}: LR x{scale} is {tuple(sr.shape[-2:])}, larger than HR {tuple(gt.shape[-2:])}")
        score = ImageScore(name=name, seconds=seconds, **score_image(sr, gt, scale=scale))
        scores.append(score)
        if on_image:
            on_image(index + 1, len(images), score)
    return Evaluation(
        model=model_name,
        data=str(data_dir),
        scale=scale,
        degradation=degradation,
        images=len(scores),
        psnr_y=_mean([s.psnr_y for s in scores]),
        ssim_y=_mean([s.ssim_y for s in scores]),
        psnr_rgb=_mean([s.psnr_rgb for s in scores]),
        ssim_rgb=_mean([s.ssim_rgb for s in scores]),
        sharpness=_mean([s.sharpness for s in scores]),
        checkerboard=_mean([s.checkerboard for s in scores]),
        seconds_per_image=_mean([s.seconds for s in scores]),
        per_image=scores,
    )
