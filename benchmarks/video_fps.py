"""Frames per second of x4 upscaling at video sizes: 960x540 -> 3840x2160 by default, each model on each precision.

    PYTHONPATH=src python benchmarks/video_fps.py                          # on the GPU when there is one
    PYTHONPATH=src python benchmarks/video_fps.py --device cpu --size 240x135 --frames 3

The model is prepared as `superres upscale` prepares it (`superres.optimize.optimize_for_inference`: batch norm
folded, channels_last, weights in the precision) and run on whole frames already on the device (no tiling, no
copies to the host: the rate of the network itself). On CUDA each frame is timed with CUDA events after
`--warmup` frames; on the CPU with a wall clock. Prints a Markdown table and writes it with the raw numbers to
`--out`/video_fps_{device}.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from superres.optimize import optimize_for_inference
from superres.weights import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def frame_seconds(model, frame: torch.Tensor, *, frames: int, warmup: int) -> list[float]:
    """Seconds per frame for `frames` timed frames after `warmup` untimed ones."""
    cuda = frame.device.type == "cuda"
    seconds = []
    with torch.no_grad():
        for index in range(warmup + frames):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(frame)
                end.record()
                torch.cuda.synchronize()
                elapsed = start.elapsed_time(end) / 1000
            else:
                began = time.perf_counter()
                model(frame)
                elapsed = time.perf_counter() - began
            if index >= warmup:
                seconds.append(elapsed)
    return seconds


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "rescnn"], help="shipped names or weights paths")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--size", default="960x540", help="input WxH (default 960x540, output 3840x2160)")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    frame = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for name in args.models:
        trained = load_model(name)
        for precision in args.precisions:
            model = optimize_for_inference(trained, device=device, precision=precision)
            seconds = frame_seconds(model, frame, frames=args.frames, warmup=args.warmup)
            median = statistics.median(seconds)
            rows.append({"model": trained.info.name, "precision": precision, "input": [width, height],
                         "median_s": median, "fps": 1 / median, "seconds": seconds})
            print(f"{trained.info.name:>28} {precision}: {1 / median:7.2f} frames/s", flush=True)
            del model
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [f"# x4 video frames per second, {width}x{height} -> {width * 4}x{height * 4}", "",
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}; {where}; torch {torch.__version__}; "
             f"median of {args.frames} frames after {args.warmup} warm-up"
             + (" (CUDA events)" if device.type == "cuda" else " (wall clock)") + ".", "",
             "| weights | precision | ms per frame | frames/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['precision']} | {1000 * r['median_s']:.1f} | {r['fps']:.2f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"video_fps_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps({"device": where, "rows": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
