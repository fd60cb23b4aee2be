"""Make the bundled example `examples/tiger_small.jpg`: a small photo as people really have them.

A 4x area downscale of training photo wiki49/001 (the white tiger; source and licence in examples/README.md),
slightly soft (Gaussian blur, sigma 0.8 HR pixels, before the downscale), with sensor-like noise (Poisson shot
noise, photon peak 400, plus Gaussian read noise of sigma 2 on 0..255) and saved by Pillow as a JPEG of quality 70
(4:2:0 chroma). No single training degradation of the shipped models makes exactly this.

    PYTHONPATH=src python3 tools/make_example.py [--source ../shared/data/train/wiki49/001.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from superres.data.degrade import blur, gaussian_kernels
from superres.imageio import read_rgb

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared/data/train/wiki49/001.png"))
    parser.add_argument("--out", default=str(ROOT / "examples/tiger_small.jpg"))
    args = parser.parse_args()
    g = torch.Generator().manual_seed(2026)
    hr = read_rgb(args.source)[None]  # (1, 3, H, W)
    sigma = torch.tensor([0.8])
    soft = blur(hr, gaussian_kernels(sigma, sigma, torch.zeros(1), 9))
    small = F.interpolate(soft, scale_factor=0.25, mode="area")
    shot = torch.poisson(small * 400, generator=g) / 400
    noisy = (shot + torch.randn(small.shape, generator=g) * 2 / 255).clamp(0, 1)
    u8 = (noisy[0] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(u8)).save(args.out, format="JPEG", quality=70)
    print(f"wrote {args.out} ({u8.shape[1]}x{u8.shape[0]})")


if __name__ == "__main__":
    main()
