"""Training throughput under torchrun on the CPU: one rank against two (gloo), patches per second per rank.

    python benchmarks/ddp_speed.py                       # cnn, 96 px patches, batch 16 per rank, 5 to 15 minutes
    python benchmarks/ddp_speed.py --arch rescnn --steps 20 --batch 8 --repeats 1

Each setting is a real `superres train` run (the CLI, fp32, no validation, a checkpoint only at the end) on
`../shared/data/train/t91` (seeded synthetic photos when absent): one plain process with as many threads as ranks
of the widest setting, then torchrun with 1 and with 2 ranks of one thread each. The settings run in turn, `--repeats`
rounds, so that load from other processes hits each alike; a setting's rate is the median of the `speed/steps_per_s`
rows of its logs after each run's first window (warm-up), with the range of the per-run medians. Prints a Markdown
table and writes it, with the raw numbers as JSON, to benchmarks/results/ddp_speed_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
T91 = ROOT.parent / "shared" / "data" / "train" / "t91"


def config_text(arch: str, train_root: Path, steps: int, batch: int, patch: int, log_every: int) -> str:
    return f"""name = "ddp-speed"
[model]
arch = "{arch}"
[data]
train_roots = ["{train_root}"]
patch_size = {patch}
batch_size = {batch}
[train]
steps = {steps}
lr = 1e-4
device = "cpu"
precision = "fp32"
log_every = {log_every}
val_every = 0
checkpoint_every = {steps}
"""


def synthetic_photos(folder: Path, count: int = 16, size: int = 256) -> Path:
    """Smooth random colour fields with a little noise: a stand-in for T91 when ../shared/data is not here."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.random((8, 8, 3)) * 255
        image = Image.fromarray(small.astype(np.uint8)).resize((size, size), Image.BICUBIC)
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (size, size, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"synthetic{i:02d}.png")
    return folder


def run(ranks: int | None, threads: int, config: Path, run_dir: Path) -> list[float]:
    """One training run; the steps/s of each log window after the first. `ranks` None: a plain process."""
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone"] if ranks else []
    command = [sys.executable, *launcher, "-m", "superres", "train", "--config", str(config), "--run-dir",
               str(run_dir), "--quiet"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    with (run_dir / "log.csv").open(newline="") as f:
        rates = [float(row["value"]) for row in csv.DictReader(f) if row["key"] == "speed/steps_per_s"]
    return rates[1:]


def machine() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    vector = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{name}, {os.cpu_count()} cores, {vector}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16, help="patches per rank")
    parser.add_argument("--patch", type=int, default=96, help="HR patch side")
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--ranks", type=int, default=2, help="the widest setting (default: 2)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the settings (default: 2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    settings = [(None, args.ranks), (1, 1), (args.ranks, 1)]  # (ranks or None for a plain process, threads each)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train_root = T91 if T91.is_dir() else synthetic_photos(Path(tmp) / "photos")
        config = Path(tmp) / "config.toml"
        config.write_text(config_text(args.arch, train_root, args.steps, args.batch, args.patch, args.log_every))
        runs: list[list[list[float]]] = [[] for _ in settings]  # per setting, per round: steps/s of each window
        for round_ in range(args.repeats):
            for i, (ranks, threads) in enumerate(settings):
                runs[i].append(run(ranks, threads, config, Path(tmp) / f"run{round_}-{i}"))
                print(f"round {round_ + 1}: {ranks or 'plain'} rank(s), {threads} thread(s) each: "
                      f"{statistics.median(runs[i][-1]) * args.batch * (ranks or 1):.2f} patches/s", file=sys.stderr)
    for (ranks, threads), rates in zip(settings, runs):
        steps_per_s, processes = statistics.median(sum(rates, [])), ranks or 1
        per_run = [statistics.median(r) * args.batch * processes for r in rates]
        rows.append({
            "setting": f"torchrun, {ranks} rank(s)" if ranks else "plain process", "ranks": processes,
            "threads_per_rank": threads, "steps_per_s": round(steps_per_s, 3),
            "patches_per_s_per_rank": round(steps_per_s * args.batch, 2),
            "patches_per_s": round(steps_per_s * args.batch * processes, 2),
            "patches_per_s_runs": [round(p, 2) for p in per_run], "windows": [len(r) for r in rates],
        })  # fmt: skip
    one_rank = next(r for r in rows if r["setting"] == "torchrun, 1 rank(s)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"# Training throughput under torchrun: {args.arch}, {args.patch} px HR patches, batch {args.batch} per rank, "
        f"fp32 on the CPU (gloo)",
        "",
        f"- {machine()}; torch {torch.__version__}; load average {load:.1f} at the end (other jobs share the cores)",
        "",
        "| setting | ranks | threads per rank | steps/s | patches/s per rank | patches/s in all | runs | vs 1 rank |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['ranks']} | {row['threads_per_rank']} | {row['steps_per_s']:.3g} "
            f"| {row['patches_per_s_per_rank']:.4g} | {row['patches_per_s']:.4g} "
            f"| {min(row['patches_per_s_runs']):.3g}..{max(row['patches_per_s_runs']):.3g} "
            f"| {row['patches_per_s'] / one_rank['patches_per_s']:.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ddp_speed_cpu.md").write_text(table)
    meta = {"machine": machine(), "torch": torch.__version__, "load_average": load, "args": vars(args) | {"out": str(args.out)},
            "rows": rows}  # fmt: skip
    (args.out / "ddp_speed_cpu.json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
