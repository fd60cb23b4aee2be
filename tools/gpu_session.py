"""One prepared GPU session (about 9 minutes): record the machine, measure the data path, train ResCNN, the GAN
and the CNN baseline in two parallel streams against a deadline, and pack weights, logs and curves into $OUT.

    OUT=/tmp/out PYTHONPATH=src python tools/gpu_session.py --budget 500          # on the GPU machine
    OUT=/tmp/out PYTHONPATH=src python tools/gpu_session.py --budget 60 --smoke   # rehearsal on a CPU

Training data: the ignored folder .subset/ (a copy of part of ../shared/data/train, and 4 Kodak images for
validation), which travels with the working tree. Evaluation on the benchmark sets happens afterwards, on the
CPU, from the weights that come back (the sets do not fit in the 64 MiB that travel).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SUBSET = Path(".subset")
ROOTS = [str(SUBSET / d) for d in ("t91", "bsds400", "wiki49", "div2k")]
VAL = [str(SUBSET / "val")]


def record_machine(out: Path) -> str | None:
    """Versions, GPU, and what the machine offers for the VGG19 content loss. Returns a VGG19 file if found."""
    lines = []

    def run(cmd: str) -> None:
        done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60)
        lines.append(f"$ {cmd}\n{done.stdout}{done.stderr}")

    run("nvidia-smi")
    run("python3 -c 'import sys, torch, torchvision; print(sys.version); print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else None)'")
    run("ls -la ~/.cache/torch/hub/checkpoints ~/.cache/huggingface ~/.cache 2>&1 | head -50")
    run("python3 -c 'import torch; print(torch.hub.get_dir())'; env | grep -i -E 'torch|hf_|hugging|xdg' ")
    run("find / -xdev \\( -name 'vgg19*' -o -name '*vgg19*.pth' -o -name '*vgg*.safetensors' \\) -not -path '/proc/*' 2>/dev/null | head -20")
    found = [p for p in glob.glob(os.path.expanduser("~/.cache/torch/hub/checkpoints/vgg19*.pth"))]
    found += [p for p in subprocess.run("find / -xdev -name 'vgg19-dcbb9e9d.pth' -not -path '/proc/*' 2>/dev/null", shell=True, capture_output=True, text=True).stdout.split()]
    vgg = found[0] if found else None
    probe = (
        "import torchvision, torch; m = torchvision.models.vgg19(weights=None); "
        f"sd = torch.load({vgg!r}, map_location='cpu', weights_only=True); m.load_state_dict(sd); print('VGG19 ImageNet weights load offline from', {vgg!r})"
        if vgg
        else "print('no VGG19 ImageNet weights file on this machine (torch hub cache, Hugging Face cache, whole disk searched); torchvision cannot download them offline')"
    )
    run(f'python3 -c "{probe}"')
    (out / "machine.txt").write_text("\n".join(lines))
    return vgg


def train_cmd(config: str, run_dir: str, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "superres", "train", "--config", config, "--run-dir", run_dir, "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def common(steps: int, minutes: float, batch: int, lr: float, smoke: bool) -> list[str]:
    milestones = [int(steps * 0.5), int(steps * 0.8)]
    every = max(steps // 4, 1)
    return [
        f"data.train_roots={json.dumps(ROOTS)}",
        f"data.batch_size={batch}",
        f"train.steps={steps}",
        f"train.lr={lr}",
        f"train.lr_milestones={json.dumps(milestones)}",
        "train.lr_gamma=0.4",
        f"train.max_minutes={minutes}",
        f"train.val_roots={json.dumps(VAL)}",
        "train.val_max_images=4",
        f"train.val_crop={128 if smoke else 0}",
        f"train.val_every={every}",
        f"train.checkpoint_every={every}",
        f"train.log_every={max(steps // 200, 1)}",
        "train.device=\"auto\"",
        "train.precision=\"auto\"",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=500, help="seconds for the whole session")
    parser.add_argument("--smoke", action="store_true", help="tiny models and steps, for a CPU rehearsal")
    args = parser.parse_args()
    start = time.time()
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    runs = Path("runs")
    vgg = record_machine(out)

    # 1. The data path: GPU-resident sampler against CPU sampler (also calibrates the step rate).
    bench = subprocess.run(
        [sys.executable, "benchmarks/gpu_data_path.py", "--roots", *ROOTS[:2], "--batch", "64",
         "--seconds", "2" if args.smoke else "6", "--out", str(runs / "bench")],
        capture_output=True, text=True,
    )
    (out / "gpu_data_path.txt").write_text(bench.stdout + bench.stderr)
    rate = 20.0  # rescnn steps/s at batch 64 if the benchmark gave nothing
    try:
        rows = json.loads((runs / "bench" / "gpu_data_path.json").read_text())["rows"]
        rate = next(r["per_s"] for r in rows if r["what"].endswith("train step") and r["data on"] == "cuda")
    except (OSError, StopIteration, KeyError, ValueError):
        pass

    # 2. Two parallel streams against the deadline. Each stage gets a step count from the measured rate, shared
    #    between two processes (assumed 0.65 of the solo rate each), and a wall-clock cap as a safety net.
    left = args.budget - (time.time() - start) - 30  # 30 s kept for packing
    share = 0.65
    t_rescnn, t_gan = left * 0.56, left * 0.36
    t_cnn = max((left - t_rescnn - 30) / 2 - 15, 20)
    tiny = ["model.args.channels=8", "model.args.num_blocks=1"] if args.smoke else []
    steps = lambda seconds, factor=1.0: max(int(rate * share * seconds * factor), 4)  # noqa: E731
    gan_loss = "vgg54" if vgg else "pixel-l1"
    gan_extra = [f"gan.content_loss=\"{gan_loss}\""] + ([f"gan.vgg_weights={json.dumps(vgg)}"] if vgg else [])
    stream_a = [
        train_cmd("configs/rescnn_x4_div2k_unknown.toml", "runs/rescnn-unknown",
                  common(steps(t_rescnn - 20), t_rescnn / 60, 64, 3e-4, args.smoke) + tiny),
        train_cmd("configs/gan_x4_div2k_unknown.toml", "runs/gan-unknown",
                  common(steps(t_gan - 20, 0.4), t_gan / 60, 32, 1e-4, args.smoke)
                  + ["gan.generator_weights=\"runs/rescnn-unknown/last.safetensors\""] + gan_extra
                  + (["gan.d_args={channels = 8, hidden_layers = 1, hidden_features = 32}"] if args.smoke else [])),
    ]
    stream_b = [
        train_cmd("configs/rescnn_x4_bicubic.toml", "runs/rescnn-bicubic",
                  common(steps(t_rescnn - 20), t_rescnn / 60, 64, 3e-4, args.smoke) + tiny),
        train_cmd("configs/cnn_x4_div2k_unknown.toml", "runs/cnn-unknown",
                  common(steps(t_cnn - 15, 3.0), t_cnn / 60, 64, 1e-3, args.smoke)),
        train_cmd("configs/cnn_x4_bicubic.toml", "runs/cnn-bicubic",
                  common(steps(t_cnn - 15, 3.0), t_cnn / 60, 64, 1e-3, args.smoke)),
    ]
    (out / "plan.json").write_text(json.dumps({"rate_rescnn_b64": rate, "vgg": vgg, "a": stream_a, "b": stream_b}, indent=1))
    script = lambda cmds: " ; ".join(" ".join(f"'{c}'" for c in cmd) for cmd in cmds)  # noqa: E731
    procs = [
        subprocess.Popen(script(s), shell=True, stdout=open(runs / f"stream_{n}.log", "w"), stderr=subprocess.STDOUT)
        for n, s in (("a", stream_a), ("b", stream_b))
    ]
    deadline = start + args.budget - 25
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(2)
    for p in procs:
        if p.poll() is None:
            p.kill()

    # 3. Pack: each generator's weights as its own file, everything else in one tarball.
    for run in ("rescnn-unknown", "rescnn-bicubic", "gan-unknown"):
        for name in ("last", "best"):
            source = runs / run / f"{name}.safetensors"
            if source.exists():
                shutil.copy(source, out / f"{run}.safetensors")
                break
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for path in sorted(runs.rglob("*")):
            if path.is_file() and "checkpoints" not in path.parts and not (
                path.suffix == ".safetensors" and not path.parent.name.startswith("cnn")
            ):
                tar.add(path)
    print(f"session done in {time.time() - start:.0f} s; rate {rate:.1f} steps/s; vgg {vgg}")
    print((out / "gpu_data_path.txt").read_text())
    for n in ("a", "b"):
        print(f"--- stream {n}\n" + (runs / f"stream_{n}.log").read_text()[-1500:])


if __name__ == "__main__":
    main()
