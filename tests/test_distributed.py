"""Issue 19: torchrun jobs, run here as 2 gloo processes on the CPU. Two ranks with b patches each train as one
process does on the same 2b patches; the GAN step keeps G and D equal on every rank; a folder upscale gives every
file to one rank and writes what one process writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import superres
from superres.checkpoint import load_checkpoint
from superres.cli import main
from superres.config import loads_config
from superres.distributed import World, env_world, rank_seed, session
from superres.models import build_model
from superres.train import train
from superres.weights import save_weights

from corpus import photo

SRC = Path(superres.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
ENV = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS} | {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(*argv, timeout: float = 180) -> subprocess.CompletedProcess:
    """2 processes on this machine; --standalone picks a free port, so runs never collide."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *map(str, argv)]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for folder, count, size, seed in (("train", 4, 48, 100), ("val", 2, 32, 200)):
        (root / folder).mkdir()
        for i in range(count):
            Image.fromarray(photo(size, size, seed=seed + i)).save(root / folder / f"{folder}{i}.png")
    return root


def tiny_toml(images: Path, steps: int = 4, extra: str = "") -> str:
    """An 8-channel CNN without batch norm, 2 patches of 16 px per rank, validated at its end on two 32 px images."""
    return f"""name = "ddp"
[model]
arch = "cnn"
args = {{ channels = 8 }}
[data]
train_roots = ["{images / 'train'}"]
patch_size = 16
batch_size = 2
[train]
steps = {steps}
lr = 1e-3
log_every = 1
val_every = 4
checkpoint_every = 2
device = "cpu"
precision = "fp32"
val_roots = ["{images / 'val'}"]
{extra}"""


def logged(run_dir: Path, key: str) -> list[float]:
    rows = (line.split(",") for line in (run_dir / "log.csv").read_text().splitlines()[1:])
    return [float(value) for _, _, k, value in rows if k == key]


def assert_close_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = load_file(a / "last.safetensors"), load_file(b / "last.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-5, atol=atol, msg=key)


def test_the_world_without_torchrun_is_one_process(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    with session("gloo") as world:
        assert world == World() and world.is_main and env_world() == World()
    assert not torch.distributed.is_initialized()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_world() == World(3, 4, 1)
    assert World(3, 4, 1).device(torch.device("cuda")) == torch.device("cuda", 1)
    assert World(3, 4, 1).device(torch.device("cpu")) == torch.device("cpu")


def test_shards_cover_every_item_once_and_rank_0_keeps_the_plain_seed():
    items = list(range(11))
    shards = [World(rank, 3).shard(items) for rank in range(3)]
    assert sorted(sum(shards, [])) == items and shards[0] == [0, 3, 6, 9]
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(8)}) == 8


def test_two_ranks_train_as_one_process_drawing_both_ranks_patches(images, tmp_path):
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(tiny_toml(images))
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    done = torchrun("-m", "superres", "train", "--config", config_file, "--run-dir", ddp, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "training on 2 ranks (gloo): 2 patches per rank, global batch 4, lr 0.001" in done.stderr
    assert done.stdout.startswith("completed at step 4") and done.stdout.count("\n") == 3  # rank 0 alone prints
    assert "speed of the last log window: " in done.stdout and " TFLOP/s" in done.stdout

    config = loads_config(tiny_toml(images))
    result = train(config, one, replay_ranks=2)  # batch 2b: rank 0's patches, then rank 1's
    assert result.ranks == 2
    assert_close_weights(one, ddp)
    assert logged(ddp, "train/loss") == pytest.approx(logged(one, "train/loss"), rel=1e-5)
    assert logged(ddp, "batch/global") == [4.0] * 4
    assert logged(ddp, "val/psnr") == pytest.approx(logged(one, "val/psnr"), abs=1e-3)
    state = load_checkpoint(ddp / "checkpoints" / "last.pt").state
    assert state["world_size"] == 2 and len(state["rng"]["data"]) == 2
    assert not any(k.startswith("module.") for k in state["models"]["generator"])

    # The checkpoint holds both ranks' data streams: resuming it goes on as the one-process run does.
    longer = loads_config(tiny_toml(images, steps=6))
    shutil.copytree(ddp, tmp_path / "plain")
    train(longer, ddp, resume=True, replay_ranks=2)
    train(longer, one, resume=True, replay_ranks=2)
    assert_close_weights(one, ddp)
    # Another number of ranks goes on too, saying that the patches now differ.
    resumed = train(longer, tmp_path / "plain", resume=True)
    assert resumed.step == 6 and any("written by 2 rank(s) and this run has 1" in note for note in resumed.notes)


def test_gan_step_keeps_both_networks_equal_on_every_rank(images, tmp_path):
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "g.safetensors", build_model("cnn", channels=4), arch="cnn",
                           args={"channels": 4}, scale=4, degradation="bicubic")  # fmt: skip
    supervised = tiny_toml(images, steps=2).replace("val_every = 4", "val_every = 0")
    gan = supervised.replace('name = "ddp"', 'name = "ddp-gan"\nmode = "gan"') + (
        f'[gan]\ngenerator_weights = "{weights}"\ncontent_loss = "pixel-l1"\n'
        "d_args = { channels = 4, hidden_features = 8 }\n")
    (tmp_path / "gan.toml").write_text(gan)
    out = tmp_path / "seen.json"
    done = torchrun(TESTS / "ddp_gan.py", out, tmp_path / "gan.toml", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    seen = json.loads(out.read_text())
    assert seen == {"g_same": True, "d_same": True, "g_moved": True, "d_moved": True, "own_patches": True,
                    "finite": True, "steps": 2, "ranks": 2}  # fmt: skip
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").state
    assert set(state["models"]) == {"generator", "discriminator"} and state["world_size"] == 2
    assert {"g/adv", "d/real", "d/fake"} <= {line.split(",")[2] for line in (tmp_path / "run" / "log.csv").open()}


def test_two_ranks_upscale_a_folder_once_each_as_one_process_does(tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(7):
        Image.fromarray(photo(24, 20, seed=i)).save(photos / f"p{i}.png")
    (photos / "p1.png").write_bytes(b"not a picture")  # the second file: rank 1's share
    torch.manual_seed(0)
    model = save_weights(tmp_path / "m.safetensors", build_model("cnn", channels=4), arch="cnn",
                         args={"channels": 4}, scale=4, degradation="bicubic")  # fmt: skip
    options = ["--model", model, "--device", "cpu", "--precision", "fp32"]
    assert main(["upscale", str(photos), "-o", str(tmp_path / "one"), *map(str, options)]) == 1
    capsys.readouterr()

    out = tmp_path / "ddp"
    out.mkdir()
    (out / "p4.png").write_bytes(b"kept")  # rank 0's share; --skip-existing leaves it
    done = torchrun("-m", "superres", "upscale", photos, "-o", out, "--skip-existing", *options)
    assert done.returncode != 0, done.stdout  # rank 0 exits 1 for rank 1's failure, and torchrun says so
    assert done.stdout == f"upscaled 6 of 7 images x4 with m into {out} on 2 ranks\n"
    assert done.stderr.count("failed: ") == 1 and "p1.png" in done.stderr
    assert (out / "p4.png").read_bytes() == b"kept"
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in (tmp_path / "one").iterdir())  # no temporary file left
    for name in written:
        if name != "p4.png":
            a, b = (np.asarray(Image.open(folder / name)) for folder in (tmp_path / "one", out))
            assert np.array_equal(a, b), name
