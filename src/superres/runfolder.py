"""A training run's folder: what a run writes, and reads back to resume.

    config.toml                 the resolved config the run was started with
    log.csv                     step,seconds,key,value rows, append-only (rows after a resumed checkpoint dropped)
    events.out.tfevents.*       the same numbers and a few validation images for TensorBoard, when it is installed
    checkpoints/last.pt         resumable state (and last.prev.pt, the one before), written atomically
    best.safetensors            the weights with the best val/psnr so far
    last.safetensors            the newest weights
    curves.png                  learning curves of log.csv

Only rank 0 of a job of several processes has a RunFolder. Nothing here prints or decides: `superres.train` says
when to resume and `superres.loop` when to write.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from superres.checkpoint import previous_path, save_checkpoint
from superres.config import RunConfig, load_config, to_toml
from superres.files import atomic_write_text
from superres.report import plot_learning_curves
from superres.weights import save_weights

CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE, CURVES_FILE = "config.toml", "log.csv", "checkpoints/last.pt", "curves.png"
LOG_HEADER = ("step", "seconds", "key", "value")


def run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The resolved config a run folder was started with (for resuming without naming the TOML file again)."""
    return load_config(Path(run_dir) / CONFIG_FILE, overrides)


class RunFolder:
    """The files of one run of `config`, whose generator is `arch` with `args`. `recipe` goes into every weights
    file (with the steps and wall-clock seconds so far). Use `with folder.opened(step):` around the writing."""

    def __init__(self, path: str | Path, config: RunConfig, *, arch: str, args: dict, recipe: dict) -> None:
        self.path, self.config, self.arch, self.args, self.recipe = Path(path), config, arch, args, recipe
        self.checkpoint_path = self.path / CHECKPOINT_FILE
        self._log_file: io.TextIOBase | None = None
        self._board = None

    def opened(self, step: int) -> RunFolder:
        """Start writing at `step` (0, or the step of the checkpoint resumed): the config, the log without its rows
        after `step`, and TensorBoard's writer hiding its events after `step`. Closes on leaving the `with`."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / CONFIG_FILE, to_toml(self.config))
        log_path = self.path / LOG_FILE
        keep_log_until(log_path, step)
        new_log = not log_path.exists()
        self._log_file = log_path.open("a", newline="")
        if new_log:
            csv.writer(self._log_file).writerow(LOG_HEADER)
        self._board = tensorboard_writer(self.path, purge_step=step + 1 if step else None)
        return self

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        if self._board is not None:
            self._board.close()
        if self._log_file is not None:
            self._log_file.close()
        self._board = self._log_file = None

    def log(self, step: int, seconds: float, values: dict[str, float]) -> None:
        csv.writer(self._log_file).writerows((step, round(seconds, 3), k, f"{v:.7g}") for k, v in values.items())
        self._log_file.flush()
        if self._board is not None:
            for key, value in values.items():
                self._board.add_scalar(key, value, step)
            self._board.flush()

    def log_images(self, step: int, images: dict[str, torch.Tensor]) -> None:
        """(3, H, W) images in [0, 1], for TensorBoard only."""
        if self._board is not None:
            for tag, image in images.items():
                self._board.add_image(tag, image, step)
            self._board.flush()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        model = {"arch": self.arch, "args": json.dumps(self.args)}
        save_checkpoint(self.checkpoint_path, {**state, "config": to_toml(self.config), "model": model})

    def save_weights(self, name: str, generator: nn.Module, *, step: int, seconds: float, metrics: dict) -> None:
        recipe = {**self.recipe, "steps": step, "wall_seconds": round(seconds, 1)}
        save_weights(self.path / name, generator, arch=self.arch, args=self.args, scale=self.config.data.scale,
                     degradation=self.config.data.degradation, metrics=metrics, recipe=recipe)  # fmt: skip

    def plot_curves(self) -> None:
        plot_learning_curves([self.path], self.path / CURVES_FILE)


def has_checkpoint(run_dir: Path) -> bool:
    checkpoint = run_dir / CHECKPOINT_FILE
    return checkpoint.exists() or previous_path(checkpoint).exists()


def keep_log_until(path: Path, step: int) -> None:
    """Drop the rows logged after `step` (and any line cut short by a crash), rewriting the file atomically."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    kept = [r for r in rows if len(r) == 4 and r[0].isdigit() and int(r[0]) <= step]
    text = io.StringIO(newline="")
    csv.writer(text).writerows([LOG_HEADER, *kept])
    atomic_write_text(path, text.getvalue())


def tensorboard_writer(folder: Path, *, purge_step: int | None):
    """A SummaryWriter into `folder` when the tensorboard package is installed (the `tensorboard` extra), else None:
    without it a run writes log.csv alone. `purge_step` hides the events of an earlier session from that step on."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step)
