"""Score GAN weights and their blends with a smooth model on a validation folder, to choose the steps and the alpha
of network interpolation there and not on the benchmark sets (how gan-x4-general's were chosen, on Kodak24):

    PYTHONPATH=src python tools/score_blends.py --data ../shared/data/val/kodak24 --smooth rescnn-x4-general \
        rescnn-x4-general runs/gan-x4-general/last.safetensors@1.0 runs/gan-x4-general/last.safetensors@0.6

A candidate is a model (name or file) or SHARP@ALPHA, blended with --smooth. For each: the mean Y PSNR, sharpness and
checkerboard ratios (and the checkerboard's median) over whole images, under each --conditions LR; one JSON line each.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from superres.evaluate import evaluate
from superres.weights import interpolate, load_model


def candidate(spec: str, smooth: str) -> torch.nn.Module:
    sharp, _, alpha = spec.rpartition("@")
    return interpolate(sharp, smooth, float(alpha)) if sharp else load_model(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="+", help="models, or SHARP@ALPHA blends with --smooth")
    parser.add_argument("--data", type=Path, required=True, help="validation HR images (a flat folder or HR/)")
    parser.add_argument("--smooth", default="rescnn-x4-general", help="alpha 0 of every blend")
    parser.add_argument("--conditions", default="bicubic,camera")
    args = parser.parse_args()
    for spec in args.candidates:
        model = candidate(spec, args.smooth).eval()
        line = {"model": spec}
        with torch.inference_mode():
            for condition in args.conditions.split(","):
                result = evaluate(model, args.data, model_name=spec, degradation=condition)
                line[condition] = {k: round(getattr(result, k), 3) for k in ("psnr_y", "sharpness", "checkerboard")}
                median = statistics.median(s.checkerboard for s in result.per_image)
                line[condition]["checkerboard_median"] = round(median, 3)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
