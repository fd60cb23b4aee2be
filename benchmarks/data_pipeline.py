"""How fast does PatchSampler make training batches on the CPU? Samples per second, per degradation.

    PYTHONPATH=src python benchmarks/data_pipeline.py                     # about 30 s on 2 cores
    PYTHONPATH=src python benchmarks/data_pipeline.py --kinds bicubic div2k-unknown blur+noise+jpeg --seconds 10

HR-folder mode (the degradation synthesised on the fly) on ../shared/data/train/t91 plus the first
`--bsds` images of train/bsds400, batch 16, 96 px HR patches, augmentation on. Prints a Markdown table and writes
it with the raw numbers as JSON to benchmarks/results/data_pipeline.{md,json}. Compare with the model's training
steps per second: the sampler keeps up when its batches per second exceed them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from superres.data import ImageCache, PatchSampler
from superres.imageio import list_images

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"


def timed(step, seconds: float, warmup: int = 3) -> tuple[float, int]:
    """Calls per second of `step` over about `seconds`, after `warmup` untimed calls; and the call count."""
    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - start), count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["bicubic", "div2k-unknown"])
    parser.add_argument("--t91", default=str(SHARED / "t91"))
    parser.add_argument("--bsds", type=int, default=20, help="how many train/bsds400 images to add")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per degradation")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    paths = list_images(args.t91) + list_images(SHARED / "bsds400")[: args.bsds]
    cache = ImageCache()
    start = time.perf_counter()
    for p in paths:
        cache(p)
    decode_s = time.perf_counter() - start

    rows = []
    for kind in args.kinds:
        start = time.perf_counter()
        sampler = PatchSampler(
            [cache(p) for p in paths], names=[str(p) for p in paths], degradation=kind, patch_size=args.patch
        )
        build_s = time.perf_counter() - start
        generator = torch.Generator().manual_seed(0)
        per_s, calls = timed(lambda: sampler.sample(args.batch, generator), args.seconds)
        rows.append({"degradation": kind, "images": sampler.num_images, "skipped": sampler.num_skipped,
                     "build_s": build_s, "batches": calls, "batches_per_s": per_s,
                     "samples_per_s": per_s * args.batch})

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "load_avg": os.getloadavg()}
    lines = [
        f"# PatchSampler on the CPU: batch {args.batch}, {args.patch} px HR, {len(paths)} images "
        f"(t91 + {args.bsds} bsds400), {torch.get_num_threads()} torch threads",
        "",
        f"Decoding the images once: {decode_s:.1f} s.",
        "",
        "| degradation | images (skipped) | batches /s | samples /s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['degradation']} | {r['images']} ({r['skipped']}) | {r['batches_per_s']:.1f} | "
              f"{r['samples_per_s']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_pipeline.md").write_text(text)
    result = {"machine": machine, "batch": args.batch, "patch": args.patch, "images": len(paths),
              "decode_s": decode_s, "rows": rows}
    (out / "data_pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
