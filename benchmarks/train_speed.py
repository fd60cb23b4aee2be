"""Training speed of the trainer's own step and batches, today's settings against the fast ones, in FLOP/s and as a
share of the convolution peak measured in the same run.

    python benchmarks/train_speed.py                    # cnn, rescnn and the GAN step, on the CPU (and CUDA), ~6 min
    python benchmarks/train_speed.py --full             # also each change of `fast` alone, and fp32
    python benchmarks/train_speed.py --archs rescnn --seconds 60 --settings today fast

A setting is a precision, a memory format, a batch and HR patch size, the optimizer and where batches are drawn:

- `fp32`: fp32, contiguous, batch 16 of 96 px, Adam's per-parameter loop, batches drawn in the loop (the seed's).
- `today`: what the configs did before this benchmark's change: `precision = "auto"` (bf16 where the CPU has bf16
  units, else fp32; bf16 on a GPU), channels_last, batch 16 of 96 px, Adam's loop, batches drawn in the loop.
- `fast`: today's precision and memory format, fused Adam, batches drawn ahead in a background thread
  (`data.prefetch`), and `--fast-batch` x `--fast-patch` (default 32 x 128), plus `torch.compile` with `--compile`.
- with `--full`, each change of `fast` alone on top of `today` (`+fused`, `+prefetch`, `+batch`, `+patch`).

Each setting trains a fresh model with `superres.steps.SupervisedStep` (or `GanStep`: the rescnn generator against
the 10-block discriminator, content loss on D's features) on batches from `superres.loop.Batches`, drawn from the
first `--images` training photos (of ../shared/data/train's folders in name order; seeded noise images where
they are absent) with the `--degradation` of the recipe. The settings of one model and device are timed in
interleaved rounds (a burst of about `--burst` seconds of each setting in turn, after 2 untimed steps that also use up batches drawn ahead during other
settings' bursts) until `--seconds` have passed, at least 3 rounds; each reports its median over the rounds, so that
load from other processes hits every setting alike.

FLOPs: `torch.utils.flop_counter.FlopCounterMode` counts one training step (forward and backward, the GAN's D steps
included) of each model and batch; achieved TFLOP/s = that times steps/s. The peak: a 3x3 convolution 64->64 channels
(channels_last) on a batch of 32 maps of 48x48, forward and backward (input and weight gradients), in each precision
measured, timed the same way; each row's share is of its precision's peak.

Prints a Markdown table and writes it, with the raw numbers as JSON, to `--out`/train_speed_<cpu|cuda>.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from superres.config import GanConfig, TrainConfig
from superres.data import PatchSampler
from superres.distributed import World
from superres.loop import Batches, counted
from superres.losses import build_content_loss
from superres.models import build_model
from superres.runtime import resolve_precision
from superres.steps import GanStep, Step, SupervisedStep

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
TRAIN = HERE.parents[1].parent / "shared" / "data" / "train"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    precision: str  # "fp32", or "auto" (the trainer's default)
    channels_last: bool
    batch: int
    patch: int
    fused: bool
    prefetch: int
    compile: bool = False


def settings(args: argparse.Namespace) -> list[Setting]:
    fp32 = Setting("fp32", "fp32", False, 16, 96, fused=False, prefetch=0)
    today = Setting("today", "auto", True, 16, 96, fused=False, prefetch=0)
    fast = dataclasses.replace(today, name="fast", batch=args.fast_batch, patch=args.fast_patch, fused=True, prefetch=2,
                               compile=args.compile)  # fmt: skip
    ablations = [
        dataclasses.replace(today, name="+fused", fused=True),
        dataclasses.replace(today, name="+prefetch", prefetch=2),
        dataclasses.replace(today, name="+batch", batch=args.fast_batch),
        dataclasses.replace(today, name="+patch", patch=args.fast_patch),
    ]
    ablations = [a for a in ablations if dataclasses.replace(a, name="today") != today]  # those that change something
    every = {s.name: s for s in [fp32, today, fast, *ablations]}
    names = args.settings or (list(every) if args.full else ["today", "fast"])
    unknown = [n for n in names if n not in every]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; known: {', '.join(every)}")
    return [every[n] for n in names]


def training_images(count: int) -> list[torch.Tensor]:
    """The first `count` training photos as (3, H, W) uint8, or seeded noise images where they are absent."""
    from superres.data import ImageCache
    from superres.imageio import list_images

    folders = sorted(p for p in TRAIN.iterdir() if p.is_dir()) if TRAIN.is_dir() else []
    paths = [path for folder in folders for path in list_images(folder)][:count]
    if paths:
        cache = ImageCache()
        return [cache(p) for p in paths]
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 512, 512), generator=g, dtype=torch.uint8) for _ in range(count)]


def build(arch: str, s: Setting, device: torch.device, images: list[torch.Tensor], degradation: str
          ) -> tuple[Step, Batches, str]:  # fmt: skip
    """A fresh step object and its batches for setting `s`; the precision it resolved to."""
    torch.manual_seed(0)
    precision = resolve_precision(s.precision, device)
    memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
    t = TrainConfig(lr=1e-4, loss="l1", compile=s.compile, channels_last=s.channels_last)
    generator = build_model("rescnn" if arch == "gan" else arch).to(device, memory_format=memory_format).train()
    if arch == "gan":
        discriminator = build_model("discriminator").to(device, memory_format=memory_format).train()
        content = build_content_loss("disc-features", discriminator=discriminator)
        step: Step = GanStep(generator, discriminator, content, t, GanConfig(), device=device, precision=precision,
                             world=World())  # fmt: skip
    else:
        step = SupervisedStep(generator, t, device=device, precision=precision, world=World())
    if not s.fused:  # today's optimizer: Adam's loop over the parameters
        for name, optimizer in step.optimizers.items():
            group = optimizer.param_groups[0]
            step.optimizers[name] = torch.optim.Adam(group["params"], group["lr"], group["betas"])
    sampler = PatchSampler(images, degradation=degradation, patch_size=s.patch, device=device)
    batches = Batches(sampler, s.batch, seed=0, device=device, memory_format=memory_format, prefetch=s.prefetch)
    return step, batches, precision


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], count: int, device: torch.device) -> float:
    """Calls per second of `count` calls of `run` (after 2 untimed ones)."""
    for _ in range(2):
        run()
    sync(device)
    start = time.perf_counter()
    for _ in range(count):
        run()
    sync(device)
    return count / (time.perf_counter() - start)


def interleaved(runs: list[Callable[[], object]], device: torch.device, seconds: float, burst_s: float
                ) -> list[list[float]]:  # fmt: skip
    """Rates of each run over interleaved rounds (bursts of about `burst_s` seconds each)."""
    counts = [max(1, round(burst_s * timed(run, 1, device))) for run in runs]
    rates: list[list[float]] = [[] for _ in runs]
    start = time.perf_counter()
    while len(rates[0]) < 3 or time.perf_counter() - start < seconds:
        for i, run in enumerate(runs):
            rates[i].append(timed(run, counts[i], device))
    return rates


def conv_peak(device: torch.device, precisions: list[str], args: argparse.Namespace) -> dict[str, float]:
    """GFLOP/s of a 3x3 conv 64->64 (channels_last, batch 32, 48x48) forward and backward, per precision."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    runs, flops = [], []
    for precision in precisions:
        conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device, dtypes[precision], memory_format=torch.channels_last)
        x = torch.randn(32, 64, 48, 48, device=device, dtype=dtypes[precision]).contiguous(
            memory_format=torch.channels_last).requires_grad_()  # fmt: skip

        def run(conv=conv, x=x) -> None:
            conv(x).sum().backward()

        with FlopCounterMode(display=False) as counter:
            run()
        flops.append(counter.get_total_flops())
        runs.append(run)
    rates = interleaved(runs, device, args.seconds / 4, args.burst)
    return {p: f * statistics.median(r) / 1e9 for p, f, r in zip(precisions, flops, rates)}


def measure(arch: str, device: torch.device, args: argparse.Namespace, images: list[torch.Tensor]) -> list[dict]:
    rows, steps = [], []
    for s in settings(args):
        step, batches, precision = build(arch, s, device, images, args.degradation)
        _, flops = counted(step, *batches.next())
        steps.append(lambda step=step, batches=batches: step(*batches.next()))
        rows.append({"arch": arch, "device": device.type, "setting": s.name, "precision": precision,
                     "channels_last": s.channels_last, "batch": s.batch, "patch": s.patch, "fused_adam": s.fused,
                     "prefetch": s.prefetch, "compile": s.compile, "gflop_per_step": flops / 1e9,
                     "_batches": batches})  # fmt: skip
    rates = interleaved(steps, device, args.seconds, args.burst)
    for row, r in zip(rows, rates):
        row.pop("_batches").close()
        rate = statistics.median(r)
        row |= {
            "rounds": len(r), "steps_per_s": rate, "steps_per_s_min": min(r), "steps_per_s_max": max(r),
            "hr_mpx_per_s": rate * row["batch"] * row["patch"] ** 2 / 1e6,
            "tflop_per_s": rate * row["gflop_per_step"] / 1e3,
        }  # fmt: skip
    return rows


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        name += f" ({', '.join(f for f in ('avx512_bf16', 'amx_bf16') if f in flags) or 'no bf16 units'})"
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def markdown(rows: list[dict], peaks: dict[str, dict[str, float]], header: str) -> str:
    lines = [header, ""]
    for device, peak in peaks.items():
        lines.append(f"Conv peak, {device} (3x3 64->64, forward + backward, measured in this run): "
                     + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peak.items()))  # fmt: skip
    lines += ["", "| arch | device | setting | precision | batch x patch | steps/s (median) | min..max | HR Mpx/s "
              "| GFLOP/step | TFLOP/s | % of peak | vs today |", "|---|---|---|---|---|" + "---:|" * 7]
    for row in rows:
        same = [r for r in rows if (r["arch"], r["device"]) == (row["arch"], row["device"])]
        today = next((r for r in same if r["setting"] == "today"), None)
        peak = peaks[row["device"]].get(row["precision"])
        share = f"{100 * row['tflop_per_s'] * 1e3 / peak:.0f}" if peak else ""
        versus = f"{row['hr_mpx_per_s'] / today['hr_mpx_per_s']:.2f}x" if today else ""
        lines.append(
            f"| {row['arch']} | {row['device']} | {row['setting']} | {row['precision']}"
            f"{' + channels_last' if row['channels_last'] else ''} | {row['batch']} x {row['patch']} "
            f"| {row['steps_per_s']:.3g} | {row['steps_per_s_min']:.3g}..{row['steps_per_s_max']:.3g} "
            f"| {row['hr_mpx_per_s']:.3g} | {row['gflop_per_step']:.0f} | {row['tflop_per_s']:.3g} | {share} "
            f"| {versus} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["cnn", "rescnn", "gan"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    parser.add_argument("--settings", nargs="+", default=None, help="default: today fast (all of them with --full)")
    parser.add_argument("--full", action="store_true", help="also fp32 and each change of `fast` alone")
    parser.add_argument("--fast-batch", type=int, default=32)
    parser.add_argument("--fast-patch", type=int, default=128, help="HR patch side of the fast setting")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator in the fast setting")
    parser.add_argument("--degradation", default="bicubic", help="of the training batches (a superres degradation)")
    parser.add_argument("--images", type=int, default=8, help="training photos the batches are cropped from")
    parser.add_argument("--seconds", type=float, default=60.0, help="timing per model and device (at least 3 rounds)")
    parser.add_argument("--burst", type=float, default=5.0, help="seconds of each setting per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line for the header (what else ran, the machine)")
    args = parser.parse_args(argv)
    devices = [torch.device(d) for d in (args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))]
    images = training_images(args.images)

    rows, peaks = [], {}
    for device in devices:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        precisions = sorted({resolve_precision(s.precision, device) for s in settings(args)} | {"fp32"})
        peaks[device.type] = conv_peak(device, precisions, args)
        print(f"conv peak {device.type}: {peaks[device.type]}", file=sys.stderr)
        for arch in args.archs:
            for row in measure(arch, device, args, images):
                rows.append(row)
                print(f"{arch:7s} {device.type:5s} {row['setting']:10s} {row['steps_per_s']:8.3f} steps/s "
                      f"{row['hr_mpx_per_s']:7.3f} HR Mpx/s {row['tflop_per_s']:.3f} TFLOP/s", file=sys.stderr)

    tag = "cuda" if any(d.type == "cuda" for d in devices) else "cpu"
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    header = (
        f"# Training speed: today's settings against the fast ones (torch {torch.__version__}{load})\n\n"
        + "\n".join(f"- {d.type}: {device_description(d)}" for d in devices)
        + f"\n- batches: {args.degradation} degradation, cropped from {len(images)} training photos; "
        + f"median of interleaved {args.burst:g} s bursts over {args.seconds:g} s per model"
        + (f"\n- {args.note}" if args.note else "")
    )
    table = markdown(rows, peaks, header)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"train_speed_{tag}.md").write_text(table)
    meta = {"torch": torch.__version__, "python": platform.python_version(), "peaks_gflop_per_s": peaks, "rows": rows,
            "argv": sys.argv[1:]}  # fmt: skip
    (args.out / f"train_speed_{tag}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
