"""Issue 7: interruption. Ctrl-C or SIGTERM during a folder upscale leaves only complete outputs and
`--skip-existing` finishes the rest; `kill -9` during training loses at most the steps since the last checkpoint;
a damaged checkpoint is named and the one before it is used; a NaN loss stops training, keeping the last good
checkpoint. The signals go to real `python -m superres` processes; the rest runs the CLI in-process."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import superres
from superres.checkpoint import load_checkpoint, previous_path, read_checkpoint
from superres.cli import main

from corpus import photo

SRC = Path(superres.__file__).resolve().parents[1]
ROOT = SRC.parent
# One thread: the tiny models run fastest so on a shared machine, and the killed run and the runs it is compared
# with then add up their numbers in the same order.
ENV = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
                    "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


def superres_process(*argv) -> subprocess.Popen:
    """`python -m superres ARGV` with Ctrl-C delivered as in a terminal (a parent that ignores SIGINT, such as a
    background job, would otherwise pass that on)."""
    return subprocess.Popen([sys.executable, "-m", "superres", *map(str, argv)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.005)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------- upscale
def outputs(folder: Path) -> dict[str, int]:
    """Visible files of the output folder -> modification time in ns."""
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("[!.]*")} if folder.is_dir() else {}


def check_complete(out: Path, photos: Path) -> None:
    """Every output is a whole image, 4x its input, and no temporary of the atomic writer is left."""
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or ".partial-" in p.name) == []
    for path in out.iterdir():
        with Image.open(path) as sr, Image.open(photos / path.name) as lq:
            sr.load()  # a truncated file fails here
            assert sr.size == (lq.width * 4, lq.height * 4)


@pytest.fixture
def photos(tmp_path) -> Path:
    """30 photos, every sixth 256 px (a few tenths of a second each), the others 64 px."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(30):
        size = 256 if i % 6 == 5 else 64
        Image.fromarray(photo(size, size, seed=i)).save(folder / f"img{i:02d}.png")
    return folder


def interrupt_after_a_new_output(signum: int, photos: Path, out: Path, *options: str) -> dict[str, int]:
    before = outputs(out)
    process = superres_process("upscale", photos, "-o", out, "--model", "bicubic", *options)
    wait_for(lambda: len(outputs(out)) > len(before), process, "a new output")
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.startswith("superres: error: interrupted after ") and err.count("\n") == 1, err
    assert "finished outputs are complete" in err and "--skip-existing" in err
    check_complete(out, photos)
    after = outputs(out)
    assert len(before) < len(after) < 30
    assert {name: after[name] for name in before} == before  # earlier outputs were not written again
    return after


def test_ctrl_c_and_sigterm_leave_complete_outputs_and_skip_existing_finishes(photos, tmp_path):
    out = tmp_path / "out"
    interrupt_after_a_new_output(signal.SIGINT, photos, out)
    done = interrupt_after_a_new_output(signal.SIGTERM, photos, out, "--skip-existing")
    finish = subprocess.run([sys.executable, "-m", "superres", "upscale", photos, "-o", out, "--model", "bicubic",
                             "--skip-existing"], env=ENV, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert finish.stdout == f"upscaled 30 of 30 images x4 with bicubic into {out}\n"
    check_complete(out, photos)
    final = outputs(out)
    assert sorted(final) == sorted(p.name for p in photos.iterdir())
    assert {name: final[name] for name in done} == done


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_an_interrupt_while_writing_removes_the_temporary_file(photos, tmp_path, capsys, monkeypatch, how):
    """Deterministic: the interrupt lands inside the atomic writer, between writing and renaming the 2nd output."""
    import superres.files

    handler = signal.getsignal(signal.SIGTERM)
    fsync, calls = os.fsync, []

    def fsync_then_interrupt(fd):
        calls.append(fd)
        if len(calls) == 2:
            if how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)  # the CLI's handler turns it into KeyboardInterrupt
                time.sleep(1)  # the handler runs before this returns
                pytest.fail("SIGTERM did not interrupt the upscale")
            raise KeyboardInterrupt
        fsync(fd)

    monkeypatch.setattr(superres.files.os, "fsync", fsync_then_interrupt)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "upscale", photos, "-o", out, "--model", "bicubic")
    assert code == 130 and stdout == ""
    assert err == ("superres: error: interrupted after 1 of 30 images; finished outputs are complete, none is "
                   "half-written (rerun with --skip-existing to do the rest)\n")
    assert [p.name for p in out.iterdir()] == ["img00.png"]  # the second one's temporary file is gone
    check_complete(out, photos)
    assert signal.getsignal(signal.SIGTERM) == handler  # the CLI's SIGTERM handler lasts only as long as the run


# ---------------------------------------------------------------------------------------------------- training
@pytest.fixture
def train_root(tmp_path) -> Path:
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(photo(48, 48, seed=100 + i)).save(folder / f"t{i}.png")
    return folder


def train_args(run_dir: Path, train_root: Path, steps: int, every: int) -> list:
    """configs/tiny.toml (an 8-channel CNN) on our images, no validation, a log row every step."""
    return ["train", "--config", ROOT / "configs" / "tiny.toml", "--run-dir", run_dir, "--quiet",
            "--set", f"data.train_roots=[{json.dumps(str(train_root))}]", "--set", f"train.steps={steps}",
            "--set", "train.val_every=0", "--set", "train.log_every=1", "--set", f"train.checkpoint_every={every}"]


def log_rows(run_dir: Path) -> list[list[str]]:
    """The rows of log.csv, without its header and without a last line that a kill cut short."""
    with (run_dir / "log.csv").open(newline="") as f:
        return [row for row in list(csv.reader(f))[1:] if len(row) == 4 and row[0].isdigit()]


def assert_same_weights(run_a: Path, run_b: Path) -> None:
    a, b = load_file(run_a / "last.safetensors"), load_file(run_b / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_kill_9_during_training_loses_only_steps_since_the_checkpoint(tmp_path, capsys, train_root):
    steps, every = 150, 10
    killed, damaged, straight = tmp_path / "killed", tmp_path / "damaged", tmp_path / "straight"
    last = killed / "checkpoints" / "last.pt"
    process = superres_process(*train_args(killed, train_root, steps, every))
    def between_checkpoints() -> bool:  # two checkpoints written, and half way to the third
        rows = log_rows(killed) if previous_path(last).exists() else []
        return bool(rows) and int(rows[-1][0]) >= 2 * every + every // 2

    wait_for(between_checkpoints, process, "a second checkpoint and 5 more steps")
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL

    saved = read_checkpoint(last)["step"]  # a kill while saving still leaves a whole file (atomic rename)
    logged = max(int(row[0]) for row in log_rows(killed))
    assert saved < steps and 0 <= logged - saved <= every
    shutil.copytree(killed, damaged)
    kept_rows = [row for row in log_rows(killed) if int(row[0]) <= saved]

    code, out, err = run(capsys, "train", "--run-dir", killed, "--resume", "--quiet")
    assert code == 0 and f"completed at step {steps}" in out, err
    assert f"resumed from the checkpoint at step {saved}\n" in out
    rows = log_rows(killed)
    assert [row for row in rows if int(row[0]) <= saved] == kept_rows  # the log before the checkpoint is kept
    assert [int(row[0]) for row in rows if row[2] == "train/loss"] == list(range(1, steps + 1))  # each step once

    code, _, err = run(capsys, *train_args(straight, train_root, steps, every))
    assert code == 0, err
    assert_same_weights(straight, killed)  # as if never interrupted

    # The newest checkpoint cut short (a disk that filled up, a copy that stopped): named, and the one before used.
    last = damaged / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    code, out, err = run(capsys, "train", "--run-dir", damaged, "--resume", "--quiet")
    assert code == 0 and f"completed at step {steps}" in out, err
    assert err.startswith(f"note: checkpoint {last} is truncated or corrupt"), err
    assert f"resumed from the checkpoint at step {saved - every}\n" in out
    assert_same_weights(straight, damaged)
    print(f"killed after step {logged}, resumed from the checkpoint of step {saved}: {logged - saved} steps lost")


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, capsys, train_root):
    run_dir = tmp_path / "run"
    # The 5th update uses a learning rate of 1e30: the weights blow up and the next loss is inf or NaN.
    code, out, err = run(capsys, *train_args(run_dir, train_root, 10, 2), "--set", "train.lr_milestones=[4]",
                         "--set", "train.lr_gamma=1e33")
    last = run_dir / "checkpoints" / "last.pt"
    assert code == 2 and err.count("\n") == 1, err
    assert re.match(rf"superres: error: non-finite train/loss within steps (\d+)\.\.\1; the last good checkpoint "
                    rf"{re.escape(str(last))} is kept", err), err
    loaded = load_checkpoint(last)
    assert loaded.skipped == () and loaded.state["step"] == 4
