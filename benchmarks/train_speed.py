"""Training speed (optimizer steps per second) of the seed generators, fp32 against bf16 autocast + channels_last.

    python benchmarks/train_speed.py                 # CPU (and CUDA if present), default settings, < 2 minutes
    python benchmarks/train_speed.py --seconds 60    # longer timing per model and device, steadier numbers
    python benchmarks/train_speed.py --full          # also fp32 + channels_last and bf16 alone on the CPU

Each setting runs superres.steps.supervised_step (the step the training loop takes) on a synthetic batch of
`--batch` patches (96 px HR, 24 px LQ), default model arguments, Adam, L1 loss, after one untimed warm-up step.
The settings of one model and device are timed in interleaved rounds (a burst of steps of each setting in turn,
until `--seconds` have passed, at least 3 rounds), and each reports its median rate over the rounds, so that
load from other processes on a shared machine hits every setting alike. Prints a Markdown table and writes it,
with the raw numbers as JSON, to benchmarks/results/train_speed_<cpu|cuda>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from superres.models import build_model, count_parameters
from superres.runtime import autocast_for
from superres.steps import supervised_step

RESULTS = Path(__file__).resolve().parent / "results"


def settings(device: torch.device, full: bool) -> list[tuple[str, bool]]:
    """(precision, channels_last) per measured setting."""
    rows = [("fp32", False), ("bf16", True)]
    if full or device.type == "cuda":
        rows += [("fp32", True), ("bf16", False)]
    if device.type == "cuda":
        rows += [("fp16", True)]
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(arch: str, device: torch.device, precision: str, channels_last: bool, batch: int, patch: int) -> Callable:
    """One training step of a fresh model on a fixed synthetic batch, as a zero-argument function."""
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(arch).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    autocast = autocast_for(device, precision)
    lq = torch.rand(batch, 3, patch // model.scale, patch // model.scale, device=device)
    gt = torch.rand(batch, 3, patch, patch, device=device)
    lq, gt = lq.contiguous(memory_format=memory_format), gt.contiguous(memory_format=memory_format)
    return lambda: supervised_step(model, optimizer, scaler, lq, gt, loss_fn=F.l1_loss, autocast=autocast)


def time_steps(step: Callable, steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - start)


def measure(arch: str, device: torch.device, args: argparse.Namespace) -> list[dict]:
    """Median steps/s of each setting over interleaved rounds."""
    setups = settings(device, args.full)
    steps = [make_step(arch, device, p, cl, args.batch, args.patch) for p, cl in setups]
    burst = []
    for step in steps:  # warm-up, and a burst size of about half a second per setting
        step()
        burst.append(max(1, round(0.5 * time_steps(step, 1, device))))
    rates: list[list[float]] = [[] for _ in setups]
    start = time.perf_counter()
    while len(rates[0]) < 3 or time.perf_counter() - start < args.seconds:
        for i, step in enumerate(steps):
            rates[i].append(time_steps(step, burst[i], device))
    params = count_parameters(build_model(arch))
    return [
        {
            "arch": arch, "params": params, "device": device.type, "device_name": device_description(device),
            "precision": precision, "channels_last": channels_last, "batch": args.batch, "patch": args.patch,
            "rounds": len(r), "steps_per_s": round(statistics.median(r), 3),
            "steps_per_s_min": round(min(r), 3), "steps_per_s_max": round(max(r), 3),
            "patches_per_s": round(statistics.median(r) * args.batch, 1),
        }  # fmt: skip
        for (precision, channels_last), r in zip(setups, rates)
    ]


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| arch | device | setting | steps/s (median) | min..max | patches/s | vs fp32 |"]
    lines.append("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        base = next(r for r in rows if (r["arch"], r["device"]) == (row["arch"], row["device"])
                    and r["precision"] == "fp32" and not r["channels_last"])  # fmt: skip
        setting = row["precision"] + (" + channels_last" if row["channels_last"] else "")
        lines.append(
            f"| {row['arch']} | {row['device']} | {setting} | {row['steps_per_s']:.3g} "
            f"| {row['steps_per_s_min']:.3g}..{row['steps_per_s_max']:.3g} | {row['patches_per_s']:.4g} "
            f"| {row['steps_per_s'] / base['steps_per_s']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["cnn", "rescnn"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=96, help="HR patch side")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per model and device (at least 3 rounds)")
    parser.add_argument("--full", action="store_true", help="also fp32 + channels_last and bf16 alone on the CPU")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    devices = [torch.device(d) for d in (args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))]

    rows = []
    for device in devices:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        for arch in args.archs:
            for row in measure(arch, device, args):
                rows.append(row)
                setting = row["precision"] + (" + channels_last" if row["channels_last"] else "")
                print(f"{arch:7s} {device.type:5s} {setting:22s} {row['steps_per_s']:8.3f} steps/s", file=sys.stderr)

    tag = "cuda" if any(d.type == "cuda" for d in devices) else "cpu"
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    header = (
        f"# Training steps/s, batch {args.batch}, {args.patch} px HR patches (torch {torch.__version__}{load})\n\n"
        + "\n".join(f"- {d.type}: {device_description(d)}" for d in devices)
    )
    table = markdown(rows, header)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_speed_{tag}.md").write_text(table)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "rows": rows}
    (args.out / f"train_speed_{tag}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
