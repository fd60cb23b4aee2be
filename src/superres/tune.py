"""The GAN hyper-parameter sweep of the report's table I: one factor at a time from a base setting.

Base: learning rate 1e-4 (G and D, Adam betas 0.9/0.999), discriminator with 1 hidden dense layer of 1024 units,
LeakyReLU(0.2). The six rows are three pairs, each varying one factor with the other two at the base:

    lr 1e-3 | lr 1e-4 (base) | hidden layers 0 | hidden layers 1 (base) | ReLU | LeakyReLU (base)

The base appears in all three pairs; it is trained once and its result reported in each (`SweepRow.shared`), so the
six rows cost four runs. Every run starts from the same generator weights, the same discriminator seed and the same
batches. A row's scores are moving averages over the last `window` steps of g/total (SRGAN's perceptual loss:
content + adv_weight * adversarial) and of d/real + d/fake; g/content is reported alongside. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from superres.gan import Autocast, gan_step
from superres.losses import build_content_loss
from superres.models import Discriminator

Sampler = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]  # seeded generator -> (lq, gt) batch
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


def run_sweep(
    sampler: Sampler,
    generator_factory: Callable[[], nn.Module],
    settings: Sequence[SweepSetting] = SWEEP,
    *,
    steps: int,
    content_loss_kind: str,
    seed: int,
    window: int = 250,
    progress: Progress | None = None,
    discriminator_kwargs: dict | None = None,
    vgg_weights: str | os.PathLike | None = None,
    adv_weight: float = 1e-3,
    device: torch.device | str = "cpu",
    data_device: torch.device | str = "cpu",
    autocast: Autocast = contextlib.nullcontext,
) -> list[SweepRow]:
    """Train each setting for `steps` GAN steps and score it; one row per setting, in order.

    `sampler(g)` draws a batch (lq, gt) with `g`, a `torch.Generator` on `data_device` seeded with `seed` at the
    start of each run (e.g. `lambda g: patches.sample(batch_size, g)`); batches are then moved to `device`.
    `discriminator_kwargs` (e.g. channels) apply to every run; the setting fixes hidden_layers and activation."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    initial = generator_factory().to(device)
    vgg = build_content_loss("vgg54", vgg_weights=vgg_weights).to(device) if content_loss_kind == "vgg54" else None
    done: dict[tuple, SweepRow] = {}
    rows = []
    for setting in settings:
        if setting.key in done:
            rows.append(replace(done[setting.key], setting=setting, shared=True))
            continue
        with torch.random.fork_rng(devices=[]):  # the same D initialisation for every run, global RNG untouched
            torch.manual_seed(seed)
            discriminator = Discriminator(
                **(discriminator_kwargs or {}), hidden_layers=setting.hidden_layers, activation=setting.activation
            ).to(device)
        generator = copy.deepcopy(initial)
        content_loss = vgg if vgg is not None else build_content_loss(content_loss_kind, discriminator=discriminator)
        opt_g = torch.optim.Adam(generator.parameters(), lr=setting.lr, betas=(0.9, 0.999))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=setting.lr, betas=(0.9, 0.999))
        batches = torch.Generator(device=data_device).manual_seed(seed)
        curves: dict[str, list[float]] = {}
        diverged_at, start = None, time.perf_counter()
        for step in range(1, steps + 1):
            lq, gt = (t.to(device) for t in sampler(batches))
            logs = gan_step(
                generator, discriminator, opt_g, opt_d, lq, gt,
                content_loss=content_loss, adv_weight=adv_weight, autocast=autocast,
            )  # fmt: skip
            logs["d/total"] = logs["d/real"] + logs["d/fake"]
            for key, value in logs.items():
                curves.setdefault(key, []).append(value)
            if progress is not None:
                progress(setting, step, logs)
            if not all(math.isfinite(v) for v in logs.values()):
                diverged_at = step
                break
        scores = {k: math.nan if diverged_at else moving_average(v, window) for k, v in curves.items()}
        row = SweepRow(
            setting=setting,
            g_total=scores["g/total"],
            g_content=scores["g/content"],
            d_loss=scores["d/total"],
            d_acc_real=scores["d/acc_real"],
            d_acc_fake=scores["d/acc_fake"],
            steps=len(curves["g/total"]),
            window=min(window, len(curves["g/total"])),
            seconds=time.perf_counter() - start,
            diverged_at=diverged_at,
            curves=curves,
        )
        done[setting.key] = row
        rows.append(row)
    return rows


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
