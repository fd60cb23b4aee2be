"""Training and evaluation data: degradations, paired transforms, folder layouts and patch sampling."""

from superres.data.datasets import ImageCache, Pair, PatchDataset, PatchSampler, find_pairs, match_pairs
from superres.data.degrade import (
    DEGRADATIONS,
    BlurNoiseJpeg,
    bicubic,
    blur_noise_jpeg,
    degrade,
    degrade_interior,
    div2k_kernel,
    div2k_unknown,
    jpeg,
    make_params,
    margin,
    quantize,
    resize_bicubic,
)
from superres.data.realistic import Realistic, realistic
from superres.data.transforms import paired_augment, paired_random_crop

__all__ = [
    "DEGRADATIONS",
    "BlurNoiseJpeg",
    "ImageCache",
    "Pair",
    "PatchDataset",
    "PatchSampler",
    "Realistic",
    "bicubic",
    "blur_noise_jpeg",
    "degrade",
    "degrade_interior",
    "div2k_kernel",
    "div2k_unknown",
    "find_pairs",
    "jpeg",
    "make_params",
    "match_pairs",
    "margin",
    "paired_augment",
    "paired_random_crop",
    "quantize",
    "realistic",
    "resize_bicubic",
]
