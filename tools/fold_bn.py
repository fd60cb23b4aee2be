"""Convert a trained ResCNN into the same network without batch norm (`ResCNN(batch_norm=False)`): each norm's
running statistics and affine folded into the conv before it, so that the output computes exactly what the input
computes in eval mode, and a fine-tune from it trains the function that is used (no batch statistics, no running
statistics to recompute). Checks the two agree on a seeded image; the output has the input's metadata (through
save_weights), its arguments with batch_norm false and its recipe noting the conversion. One JSON line:

    PYTHONPATH=src python tools/fold_bn.py runs/rescnn-x1-general-ft/last-pbn.safetensors \
        -o runs/rescnn-x1-general-plain/start.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from superres.models import build_model
from superres.optimize import copy_folded
from superres.weights import load_model, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args()
    model = load_model(args.weights).eval()
    info = model.info
    if info.arch != "rescnn" or not info.args.get("batch_norm", True):
        raise SystemExit(f"error: {args.weights} is not a ResCNN with batch norm ({info.arch} {info.args})")
    plain_args = {**info.args, "batch_norm": False}
    plain = copy_folded(model, build_model(info.arch, **plain_args)).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (plain(x) - model(x)).abs().max().item()
    save_weights(args.output, plain, arch=info.arch, args=plain_args, scale=info.scale, degradation=info.degradation,
                 metrics=info.metrics, recipe={**info.recipe, "batch_norm_folded_from": str(args.weights)})
    print(json.dumps({"weights": str(args.weights), "output": str(args.output), "max_difference": difference}))


if __name__ == "__main__":
    main()
