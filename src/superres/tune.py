"""The GAN hyper-parameter sweep of the report's table I: one factor at a time from a base setting.

Base: learning rate 1e-4 (G and D), discriminator with 1 hidden dense layer of 1024 units, LeakyReLU(0.2). The six
rows are three pairs, each varying one factor with the other two at the base:

    lr 1e-3 | lr 1e-4 (base) | hidden layers 0 | hidden layers 1 (base) | ReLU | LeakyReLU (base)

The base appears in all three pairs; it is trained once and its result reported in each (`SweepRow.shared`), so the
six rows cost four runs. Each run is a GAN training run of the config (`sweep_config`: the setting's lr for G and
D, its D head, a log entry every step, no validation, files or collapse stop) through the code `superres train`
runs: the same data guard, sampler, networks, step (every gan.* option: losses, d_betas, pixel and texture
weights, EMA) and loop. Every run starts from the same generator weights, the same discriminator seed and the same
batches. A row's scores are moving averages over the last `window` steps of g/total (G's whole loss: content +
adv_weight * adversarial + the other weighted terms; SRGAN's perceptual loss when those are 0) and of
d/real + d/fake; g/content is reported alongside. Nothing here prints.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from superres.config import RunConfig
from superres.data import PatchSampler
from superres.distributed import World
from superres.loop import Loop, TrainingError
from superres.train import build_step, check_data_split, make_batches, make_sampler, resolve_runtime

Progress = Callable[["SweepSetting", int, dict[str, float]], None]  # (setting, step, logs), after every step


@dataclass(frozen=True)
class SweepSetting:
    factor: str  # the factor this row varies: "lr", "hidden_layers" or "activation"
    lr: float = 1e-4
    hidden_layers: int = 1
    activation: str = "leaky_relu"

    @property
    def key(self) -> tuple[float, int, str]:
        return (self.lr, self.hidden_layers, self.activation)


BASE = SweepSetting(factor="base")
SWEEP = (
    replace(BASE, factor="lr", lr=1e-3),
    replace(BASE, factor="lr"),
    replace(BASE, factor="hidden_layers", hidden_layers=0),
    replace(BASE, factor="hidden_layers"),
    replace(BASE, factor="activation", activation="relu"),
    replace(BASE, factor="activation"),
)


@dataclass(frozen=True)
class SweepRow:
    setting: SweepSetting
    g_total: float  # moving average of g/total over the last `window` steps (the score)
    g_content: float  # moving average of g/content
    d_loss: float  # moving average of d/real + d/fake
    d_acc_real: float
    d_acc_fake: float
    steps: int  # steps run; fewer than asked when the losses stopped being finite
    window: int  # steps averaged
    seconds: float
    diverged_at: int | None = None  # the step whose losses were not finite (scores are then nan)
    shared: bool = False  # the result of an identical setting earlier in the sweep (the base)
    curves: dict[str, list[float]] = field(default_factory=dict, repr=False)  # every step's logs, for plots


def moving_average(values: Sequence[float], window: int) -> float:
    tail = values[-window:]
    return sum(tail) / len(tail) if tail else math.nan


def sweep_config(config: RunConfig, setting: SweepSetting, steps: int) -> RunConfig:
    """The run of one setting: `config` with the setting's lr for G and D and its D head, `steps` steps, every step
    logged, no validation, no time limit and no collapse stop (a setting whose D wins is scored, not stopped)."""
    train = replace(config.train, steps=steps, lr=setting.lr, log_every=1, val_every=0, checkpoint_every=steps,
                    max_minutes=0.0)  # fmt: skip
    d_args = config.gan.d_args | {"hidden_layers": setting.hidden_layers, "activation": setting.activation}
    gan = replace(config.gan, d_lr=setting.lr, d_args=d_args, collapse_patience=0)
    return replace(config, train=train, gan=gan)


def run_sweep(
    config: RunConfig,
    settings: Sequence[SweepSetting] = SWEEP,
    *,
    steps: int,
    window: int = 250,
    progress: Progress | None = None,
) -> list[SweepRow]:
    """Train each setting of the GAN `config` for `steps` steps and score it; one row per setting, in order.

    Refuses what `superres train` refuses (training data that is validation or benchmark data: TrainingError) and
    discriminators other than "srgan" (the sweep varies its dense head)."""
    if config.mode != "gan" or config.gan.discriminator != "srgan":
        raise ValueError('the sweep needs a GAN config with gan.discriminator = "srgan" (it varies its dense head)')
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    check_data_split(config)
    device, precision = resolve_runtime(config, World())
    sampler = make_sampler(config, device)  # decoded once, shared by every run
    done: dict[tuple, SweepRow] = {}
    rows = []
    for setting in settings:
        if setting.key not in done:
            done[setting.key] = run_setting(sweep_config(config, setting, steps), setting, sampler, device, precision,
                                            window=window, progress=progress)  # fmt: skip
            rows.append(done[setting.key])
        else:
            rows.append(replace(done[setting.key], setting=setting, shared=True))
    return rows


def run_setting(config: RunConfig, setting: SweepSetting, sampler: PatchSampler, device: torch.device,
                precision: str, *, window: int, progress: Progress | None = None) -> SweepRow:  # fmt: skip
    """One GAN run of `config` (see `sweep_config`) without a run folder; the global RNG is left as it was."""
    curves: dict[str, list[float]] = {}

    def record(step: int, total: int, numbers: dict[str, float]) -> None:
        logs = numbers | {"d/total": numbers["d/real"] + numbers["d/fake"]}
        for key, value in logs.items():
            curves.setdefault(key, []).append(value)
        if progress is not None:
            progress(setting, step, logs)

    start, diverged_at = time.perf_counter(), None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)  # the same D initialisation for every run, as `train` seeds it
        train_step, _, _ = build_step(config, device, precision, World())
        with make_batches(config, sampler, device, World()) as batches:
            loop = Loop(train_step, batches, config.train)
            try:
                loop.run(record)
            except TrainingError:  # with no collapse stop, only non-finite losses end a run early
                diverged_at = loop.step
    scores = {k: math.nan if diverged_at else moving_average(v, window) for k, v in curves.items()}
    done = len(curves.get("g/total", []))
    return SweepRow(
        setting=setting,
        g_total=scores.get("g/total", math.nan),
        g_content=scores.get("g/content", math.nan),
        d_loss=scores.get("d/total", math.nan),
        d_acc_real=scores.get("d/acc_real", math.nan),
        d_acc_fake=scores.get("d/acc_fake", math.nan),
        steps=diverged_at or done,
        window=min(window, done),
        seconds=time.perf_counter() - start,
        diverged_at=diverged_at,
        curves=curves,
    )


CSV_COLUMNS = (
    "factor", "lr", "hidden_layers", "activation", "g_total", "g_content", "d_loss", "d_acc_real", "d_acc_fake",
    "steps", "window", "seconds", "diverged_at", "shared",
)  # fmt: skip


def _record(row: SweepRow) -> dict[str, object]:
    s = row.setting
    return {"factor": s.factor, "lr": s.lr, "hidden_layers": s.hidden_layers, "activation": s.activation} | {
        k: getattr(row, k) for k in CSV_COLUMNS[4:]
    }


def write_csv(rows: Sequence[SweepRow], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(_record(row) for row in rows)


def format_markdown(rows: Sequence[SweepRow]) -> str:
    """The sweep as a Markdown table; scores are moving averages over each row's last `window` steps."""
    lines = [
        "| varied | lr | D hidden layers | D activation | G perceptual (g/total) | g/content | D loss (real + fake) "
        "| D acc real | D acc fake | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row.setting
        steps = f"{row.steps} (diverged)" if row.diverged_at else str(row.steps)
        if row.shared:
            steps += " (base, shared)"
        lines.append(
            f"| {s.factor} | {s.lr:g} | {s.hidden_layers} | {s.activation} | {row.g_total:.4g} | {row.g_content:.4g} "
            f"| {row.d_loss:.4g} | {row.d_acc_real:.2f} | {row.d_acc_fake:.2f} | {steps} |"
        )
    return "\n".join(lines) + "\n"
