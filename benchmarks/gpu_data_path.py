"""Does the data path keep the accelerator busy? Training steps per second with the patch sampler on the GPU
(decoded images, crops, flips, rotations and the degradation all on the device) against the sampler on the CPU
(batches made there, then copied), and the sampler alone on each device.

    PYTHONPATH=src python benchmarks/gpu_data_path.py --roots .subset/t91 .subset/bsds400 --batch 64 --seconds 10

Prints a Markdown table and writes it with the raw numbers as JSON (default benchmarks/results/gpu_data_path.*).
On a machine without CUDA it measures the CPU sampler alone and says so.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from superres.data import PatchSampler
from superres.models import build_model
from superres.runtime import autocast_for, resolve_device
from superres.steps import supervised_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device: torch.device, seconds: float, warmup: int = 5) -> float:
    """Calls per second of `step` over about `seconds`, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    sync(device)
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", nargs="+", required=True, help="HR training folders")
    parser.add_argument("--degradation", default="div2k-unknown")
    parser.add_argument("--arch", default="rescnn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)

    device = resolve_device("auto")
    rows = []
    cpu = PatchSampler.from_hr_folder(args.roots, args.degradation, device="cpu")
    cpu_gen = torch.Generator().manual_seed(0)
    rows.append({"what": "sampler alone", "data on": "cpu", "per_s": timed(lambda: cpu.sample(args.batch, cpu_gen), torch.device("cpu"), args.seconds)})
    if device.type == "cuda":
        gpu = PatchSampler.from_hr_folder(args.roots, args.degradation, device=device)
        gpu_gen = torch.Generator(device=device).manual_seed(0)
        rows.append({"what": "sampler alone", "data on": "cuda", "per_s": timed(lambda: gpu.sample(args.batch, gpu_gen), device, args.seconds)})
        model = build_model(args.arch).to(device, memory_format=torch.channels_last).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        autocast = autocast_for(device, "bf16")

        def step_with(make_batch):
            lq, gt = make_batch()
            lq = lq.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            supervised_step(model, optimizer, scaler, lq, gt.to(device, non_blocking=True), loss_fn=F.mse_loss, autocast=autocast)

        rows.append({"what": f"{args.arch} train step", "data on": "cpu", "per_s": timed(lambda: step_with(lambda: cpu.sample(args.batch, cpu_gen)), device, args.seconds)})
        rows.append({"what": f"{args.arch} train step", "data on": "cuda", "per_s": timed(lambda: step_with(lambda: gpu.sample(args.batch, gpu_gen)), device, args.seconds)})
        fixed = gpu.sample(args.batch, gpu_gen)
        rows.append({"what": f"{args.arch} train step", "data on": "none (one fixed batch)", "per_s": timed(lambda: step_with(lambda: fixed), device, args.seconds)})
    for row in rows:
        row["samples_per_s"] = row["per_s"] * args.batch
    machine = torch.cuda.get_device_name() if device.type == "cuda" else "cpu only (no CUDA)"
    lines = [f"# Data path on {machine}: batch {args.batch}, 96 px HR, {args.degradation}", "",
             "| what | data on | steps or batches /s | samples /s |", "|---|---|---:|---:|"]
    lines += [f"| {r['what']} | {r['data on']} | {r['per_s']:.1f} | {r['samples_per_s']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_data_path.md").write_text(text)
    result = {"machine": machine, "batch": args.batch, "degradation": args.degradation, "rows": rows}
    (out / "gpu_data_path.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
