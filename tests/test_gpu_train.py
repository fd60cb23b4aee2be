"""The prepared GPU job (tools/gpu_train.sh), rehearsed on the CPU: a tiny model for a few steps."""

from __future__ import annotations

import csv
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from superres.models import build_model
from superres.weights import read_info, save_weights

ROOT = Path(__file__).resolve().parents[1]


def make_subset(root: Path, *, train_size: int) -> None:
    """A .subset/ as tools/make_subset.py writes it: two smooth training photos and one validation image."""
    rng = np.random.default_rng(0)
    for folder, count, size in (("train/photos", 2, train_size), ("val", 1, 48)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(root / folder / f"{i}.png")


def test_the_gpu_job_runs_end_to_end_on_the_cpu(tmp_path):
    make_subset(tmp_path / "subset", train_size=64)
    env = os.environ | {
        "OUT": str(tmp_path / "out"), "SUBSET": str(tmp_path / "subset"), "STEPS": "4", "BATCH": "2", "PATCH": "32",
        "MINUTES": "2", "COMPILE": "false", "OMP_NUM_THREADS": "1", "PYTHONPATH": "",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", "tools/gpu_train.sh", "--set", "model.args.channels=4", "--set", "model.args.num_blocks=1",
         "--set", 'model.init_weights=""', "--set", "train.device=\"cpu\""],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "completed at step 4" in done.stdout and "TFLOP/s" in done.stdout, done.stdout
    run = tmp_path / "out" / "run"
    info = read_info(run / "last.safetensors")
    assert info.recipe["batch_size"] == 2 and info.recipe["patch_size"] == 32 and info.recipe["steps"] == 4
    assert info.recipe["train_roots"] == [str(tmp_path / "subset" / "train" / "photos")]
    with (run / "log.csv").open(newline="") as f:
        keys = {row["key"] for row in csv.DictReader(f)}
    assert {"speed/steps_per_s", "speed/hr_mpx_per_s", "speed/tflop_per_s", "val/psnr"} <= keys


def test_the_next_gpu_session_runs_its_four_jobs_and_packs_six_files_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    generator = tmp_path / "tiny-gan-start.safetensors"  # the GAN job starts from a generator file
    gan_args = {"scale": 4, "channels": 4, "num_blocks": 1, "upsampler": "nearest-conv"}
    save_weights(generator, build_model("rescnn", **gan_args), arch="rescnn", args=gan_args, scale=4,
                 degradation="realistic")
    make_subset(tmp_path / "subset", train_size=160)
    env = os.environ | {
        "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"), "SUBSET": str(tmp_path / "subset"),
        "X4_STEPS": "2", "X1_STEPS": "2", "GAN_STEPS": "2", "X4_BATCH": "2", "X4_PATCH": "32", "X1_BATCH": "2",
        "X1_PATCH": "24", "GAN_BATCH": "2", "GAN_PATCH": "32", "GAN_WEIGHTS": str(generator),
        "MINUTES": "2", "COMPILE": "false", "OMP_NUM_THREADS": "1", "PYTHONPATH": "",
        "FPS_ARGS": "--device cpu --models cnn --precisions fp32 --size 16x12 --frames 1 --warmup 0",
    }  # fmt: skip
    done = subprocess.run(
        ["bash", "tools/gpu_session3.sh", "--set", "model.args.channels=4", "--set", "model.args.num_blocks=1",
         "--set", 'model.init_weights=""', "--set", "train.device=\"cpu\"", "--set", "train.ema_decay=0.0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    out = tmp_path / "out"
    expected = {"x4-general.safetensors", "x4-bicubic.safetensors", "x1-general.safetensors",
                "gan-general.safetensors", "logs.tar.gz", "video_fps.md"}  # fmt: skip
    assert {p.name for p in out.iterdir()} == expected  # the device tool brings back at most 8 files
    assert read_info(out / "x1-general.safetensors").scale == 1 and read_info(out / "x4-bicubic.safetensors").scale == 4
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"x1-general/run/log.csv", "gan-general/run/log.csv", "x4-general.log", "fps.log"} <= names
    assert "TFLOP/s" in done.stdout and "cnn" in (out / "video_fps.md").read_text()
