"""Recompute a trained model's batch-norm statistics over many training batches (superres.precise_bn), and say what
that changes on the run's validation set (Kodak24 for the shipped configs; never the benchmark sets). The batches
are the config's own training data and degradation, drawn with a seed of their own; the output file has the input's
metadata (through save_weights), its recipe noting the batches. One JSON line:

    PYTHONPATH=src python tools/precise_bn.py runs/rescnn-x1-general/best.safetensors \
        --config configs/rescnn_x1_general.toml --batches 200 -o runs/rescnn-x1-general/precise.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open

from superres.config import load_config
from superres.loop import Batches
from superres.precise_bn import recalibrate
from superres.train import Validation, load_val_set, make_sampler
from superres.weights import load_model, save_weights

SEED = 4321  # not train.seed: other batches than the first ones the run trained on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--config", required=True, type=Path, help="the run's config (data and validation)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args()
    config = load_config(args.config)
    model = load_model(args.weights)
    validate = Validation(load_val_set(config), scale=config.data.scale)
    before, _ = validate(model)
    batches = Batches(make_sampler(config, torch.device("cpu")), config.data.batch_size, SEED)
    count = recalibrate(model, (batches.next()[0] for _ in range(args.batches)))
    after, _ = validate(model)
    info = model.info
    with safe_open(str(args.weights), framework="pt") as handle:  # written back in the dtype it came in
        storage = handle.get_tensor(next(iter(handle.keys()))).dtype
    save_weights(args.output, model, arch=info.arch, args=info.args, scale=info.scale, degradation=info.degradation,
                 metrics=info.metrics, recipe={**info.recipe, "precise_bn_batches": count}, storage=storage)
    print(json.dumps({"weights": str(args.weights), "output": str(args.output), "batches": count,
                      "val_before": {k: round(v, 4) for k, v in before.items()},
                      "val_after": {k: round(v, 4) for k, v in after.items()}}))


if __name__ == "__main__":
    main()
