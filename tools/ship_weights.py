"""Ship trained weights: measure them with `superres.evaluate`, then write the next version into the package's
pretrained/ folder with the metrics in the metadata, and a model card beside it. Never overwrites.

    PYTHONPATH=src python tools/ship_weights.py runs/rescnn-unknown/last.safetensors rescnn-x4-div2k-unknown \
        --recipe '{"history": "..."}' --card-note "..." [--metrics-from results/benchmark.json ...]

With --metrics-from, the numbers come from `superres benchmark --models SOURCE` runs of the same file (the
benchmark sets under every condition and the DIV2K unknown pairs, as `docs/make_results.sh` runs them) instead of
a second measurement.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from superres import __version__
from superres.data.conditions import CONDITIONS, conditions_at
from superres.evaluate import evaluate
from superres.models import count_parameters
from superres.weights import PRETRAINED_DIR, load_model, save_weights, stored

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = [("set5", "benchmarks/set5"), ("set14", "benchmarks/set14"), ("b100", "benchmarks/b100")]


def next_version(name: str) -> int:
    found = [int(m[1]) for p in PRETRAINED_DIR.glob(f"{name}-v*.safetensors") if (m := re.fullmatch(rf"{re.escape(name)}-v(\d+)", p.stem))]
    return max(found, default=0) + 1


STORAGE = {"fp16": torch.float16, "fp32": torch.float32}
METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "sharpness", "checkerboard")


def tag(key: str, degradation: str) -> str:
    """A metrics key's data part: the set, with the test condition when its LR was synthesised."""
    return key if degradation == "bicubic" or key == "div2k_unknown" else f"{key}_{degradation}"


def measurements(scale: int, degradation: str) -> list[tuple[str, Path, str]]:
    """(key, folder, condition) of every measurement of a model: the benchmark sets under its own degradation, or
    under every named test condition that exists at its scale for a model for any photo (`realistic`), plus the real
    DIV2K unknown-track pairs for x4 models."""
    conditions = conditions_at(scale) if degradation not in CONDITIONS else [degradation]
    plan = [(key, DATA / sub, c) for key, sub in SETS for c in conditions]
    if scale == 4:
        plan.append(("div2k_unknown", DATA / "div2k_unknown_x4", "div2k-unknown"))
    return plan


def measure(model, degradation: str) -> dict[str, float]:
    metrics = {}
    for key, folder, deg in measurements(model.scale, degradation):
        result = evaluate(model, folder, model_name=model.info.name, degradation=deg, tile=256)
        for metric in METRICS:
            metrics[f"{tag(key, deg)}/{metric}"] = round(getattr(result, metric), 4)
    return metrics


def metrics_from(rows: list[dict], model_name: str, scale: int, degradation: str) -> dict[str, float]:
    """The metrics `measure` takes, from the rows of `superres benchmark --models SOURCE` runs of the same file."""
    metrics = {}
    for key, folder, deg in measurements(scale, degradation):
        found = [r for r in rows if r["model"] == model_name and r["data"] == folder.name and r["degradation"] == deg]
        if not found:
            raise SystemExit(f"no row of {model_name} on {folder.name} under {deg} in the given benchmark files")
        for metric in METRICS:
            metrics[f"{tag(key, deg)}/{metric}"] = round(found[0][metric], 4)
    return metrics


def card(name: str, info, metrics: dict, recipe: dict, params: int, note: str) -> str:
    rows = sorted({k.split("/")[0] for k in metrics})
    lines = [
        f"# {name}",
        "",
        f"Architecture `{info.arch}` {json.dumps(info.args, sort_keys=True)}, {params:,} parameters, x{info.scale}, "
        f"trained for the `{info.degradation}` degradation. superres {__version__}.",
        "",
        note,
        "",
        "## Training",
        "",
        *(f"- {k}: {v}" for k, v in recipe.items()),
        "",
        f"## Measured with `superres evaluate` (border of {info.scale} px cropped; sharpness = gradient energy SR / HR;",
        f"checkerboard = spectral energy at the {info.scale}-periodic frequencies SR / HR, `superres.metrics.periodic_energy`)",
        "",
        "| data | PSNR-Y | SSIM-Y | PSNR-RGB | SSIM-RGB | sharpness | checkerboard |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r} | {metrics[r + '/psnr_y']:.2f} | {metrics[r + '/ssim_y']:.4f} | {metrics[r + '/psnr_rgb']:.2f} | "
            f"{metrics[r + '/ssim_rgb']:.4f} | {metrics[r + '/sharpness']:.3f} | {metrics[r + '/checkerboard']:.2f} |"
            for r in rows
        ),
        "",
    ]
    if info.scale == 4:
        lines += ["Set5/Set14/B100 use their official bicubic LR for the `bicubic` rows; other rows are tagged with the test",
                  "condition (`superres.data.conditions`) that made their LR from the HR."]
    else:
        lines += [f"There are no official x{info.scale} LR files: every row's input is made from the HR by",
                  "the test condition it names (`superres.data.conditions`), bicubic included."]
    if "div2k_unknown" in rows:
        lines += ["`div2k_unknown` is the 4 real NTIRE 2017 unknown-track pairs in ../shared/data/div2k_unknown_x4",
                  "(bicubic upscaling: 22.98 dB RGB there)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("name", help="e.g. rescnn-x4-div2k-unknown")
    parser.add_argument("--recipe", default="{}", help="JSON merged into the training recipe")
    parser.add_argument("--card-note", default="")
    parser.add_argument("--metrics-from", nargs="+", type=Path, help="benchmark.json files of `superres benchmark "
                        "--models SOURCE` runs (the sets under every condition, the DIV2K pairs): no second measurement")
    parser.add_argument("--storage", choices=list(STORAGE), default="fp16", help="dtype of the stored tensors "
                        "(fp16: half the bytes; measured, it is the weights so rounded; tools/store_half.py checks it)")
    args = parser.parse_args()
    model = load_model(args.source)
    info = model.info
    model.load_state_dict(stored(model.state_dict(), STORAGE[args.storage]))  # measure the weights as stored
    recipe = {**info.recipe, **json.loads(args.recipe)}
    if args.metrics_from:
        rows = [row for path in args.metrics_from for row in json.loads(path.read_text())]
        metrics = metrics_from(rows, args.source, info.scale, info.degradation)
    else:
        metrics = measure(model, info.degradation)
    version = next_version(args.name)
    out = PRETRAINED_DIR / f"{args.name}-v{version}.safetensors"
    save_weights(out, model, arch=info.arch, args=info.args, scale=info.scale, degradation=info.degradation,
                 metrics=metrics, recipe=recipe, storage=STORAGE[args.storage])
    out.chmod(0o644)
    out.with_suffix(".md").write_text(card(out.stem, info, metrics, recipe, count_parameters(model), args.card_note))
    print(out, json.dumps(metrics))


if __name__ == "__main__":
    main()
