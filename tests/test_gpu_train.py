"""The prepared GPU job (tools/gpu_train.sh), rehearsed on the CPU: a tiny model for a few steps."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from superres.weights import read_info

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_job_runs_end_to_end_on_the_cpu(tmp_path):
    rng = np.random.default_rng(0)
    for folder, count, size in (("train/photos", 2, 64), ("val", 1, 48)):
        (tmp_path / "subset" / folder).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(tmp_path / "subset" / folder / f"{i}.png")
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
