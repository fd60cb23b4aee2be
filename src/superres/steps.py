"""One training step per mode: a step object holds the networks, their optimizers and the update.

- `SupervisedStep`: the generator on an L1 or MSE loss against the HR patch (fp16 with gradient scaling).
- `GanStep`: freeze D, step G; unfreeze D, step D (`superres.gan`), and the collapse rule of `GanConfig`.

Both show the loop (`superres.loop`) the same face: `step(lq, gt)` returns the numbers to log (tensors stay on the
device), `networks`, `optimizers` and `base_lrs` by name, `generator` (unwrapped: what trains), `inference_model`
(what is validated and saved: the EMA of the generator's weights with train.ema_decay > 0, else the generator),
`check(step, means)` after each log window (a reason to stop, or None), and `state_dict()` / `load_state_dict()`
for checkpoints (with the EMA's weights and update count). In a job of several processes the networks train through
DistributedDataParallel, which averages the gradients over the ranks; `networks` keeps the unwrapped modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from superres.config import GanConfig, TrainConfig
from superres.distributed import World, data_parallel
from superres.ema import ModelEma
from superres.gan import discriminator_step, generator_step
from superres.losses import PIXEL_LOSSES, build_texture_losses
from superres.runtime import autocast_for

Stop = tuple[str, str]  # (what went wrong, what to change), for a one-line TrainingError


def supervised_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    lq: torch.Tensor,
    gt: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    grad_clip: float = 0.0,
) -> torch.Tensor:
    """One update: forward under autocast, the loss in fp32, backward (scaled for fp16), step. Returns the
    detached loss, left on the device (no sync)."""
    with autocast():
        sr = model(lq)  # (B, 3, H*s, W*s)
    loss = loss_fn(sr.float(), gt)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def adam(module: nn.Module, lr: float, betas: tuple[float, float], device: torch.device, weight_decay: float = 0.0):
    """Adam with the fused kernel on CPUs and GPUs (one kernel for all parameters: 4x faster than the loop on a CPU,
    the same update up to rounding)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(module.parameters(), lr, betas, weight_decay=weight_decay, fused=fused)


class Step:
    """What both modes share: the networks and optimizers by name, the generator's EMA, and their state for
    checkpoints."""

    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    base_lrs: dict[str, float]  # the schedule multiplies these
    ema: ModelEma | None = None

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    @property
    def inference_model(self) -> nn.Module:
        """What the run validates and exports: the EMA copy when train.ema_decay > 0, else the generator."""
        return self.generator if self.ema is None else self.ema.module

    def start_ema(self, decay: float) -> None:
        self.ema = ModelEma(self.generator, decay) if decay > 0 else None

    def update_ema(self) -> None:
        if self.ema is not None:
            self.ema.update(self.generator)

    def check(self, step: int, means: dict[str, float]) -> Stop | None:
        return None

    def state_dict(self) -> dict:
        return {
            "models": {name: network.state_dict() for name, network in self.networks.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
        } | ({"ema": self.ema.state_dict()} if self.ema is not None else {})

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint without an EMA (written with train.ema_decay = 0) starts the EMA from its weights."""
        for name, network in self.networks.items():
            network.load_state_dict(state["models"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        if self.ema is not None:
            if "ema" in state:
                self.ema.load_state_dict(state["ema"])
            else:
                self.start_ema(self.ema.decay)


class SupervisedStep(Step):
    """The generator alone, on `train.loss` (L1 or MSE), with `train.grad_clip` and fp16 gradient scaling."""

    def __init__(self, generator: nn.Module, t: TrainConfig, *, device: torch.device, precision: str, world: World):
        self.networks = {"generator": generator}
        self.optimizers = {"generator": adam(generator, t.lr, t.betas, device, t.weight_decay)}
        self.base_lrs = {"generator": t.lr}
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        forward = data_parallel(generator, world, device)
        self.forward = torch.compile(forward) if t.compile else forward
        self.loss_fn, self.grad_clip, self.autocast = PIXEL_LOSSES[t.loss], t.grad_clip, autocast_for(device, precision)
        self.start_ema(t.ema_decay)

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        optimizer = self.optimizers["generator"]
        loss = supervised_step(self.forward, optimizer, self.scaler, lq, gt, loss_fn=self.loss_fn,
                               autocast=self.autocast, grad_clip=self.grad_clip)  # fmt: skip
        self.update_ema()
        return {"train/loss": loss}

    def state_dict(self) -> dict:
        return super().state_dict() | {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.scaler.load_state_dict(state["scaler"])


class GanStep(Step):
    """Adversarial fine-tuning: G on content + adversarial (+ pixel, + texture) loss against a frozen D, then D on
    real and detached fake; no gradient scaling (bf16 or fp32). Counts collapsed log windows (`is_collapsed`)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, content_loss: nn.Module, t: TrainConfig,
                 gan: GanConfig, *, device: torch.device, precision: str, world: World, scale: int = 4,
                 ) -> None:  # fmt: skip
        self.networks = {"generator": generator, "discriminator": discriminator}
        self.optimizers = {
            "generator": adam(generator, t.lr, t.betas, device, t.weight_decay),
            "discriminator": adam(discriminator, gan.d_lr, gan.d_betas, device),
        }
        self.base_lrs = {"generator": t.lr, "discriminator": gan.d_lr}
        forward = data_parallel(generator, world, device)
        self.forward = torch.compile(forward) if t.compile else forward
        self.forward_d = data_parallel(discriminator, world, device)
        self.content_loss, self.gan, self.autocast = content_loss, gan, autocast_for(device, precision)
        self.texture = build_texture_losses(fft_weight=gan.fft_weight, gram_weight=gan.gram_weight,
                                            periodic_weight=gan.periodic_weight, period=scale,
                                            discriminator=discriminator)  # fmt: skip
        self.collapsed_windows = 0  # log windows in a row that D won outright
        self.start_ema(t.ema_decay)

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        g, d, kind = self.optimizers["generator"], self.optimizers["discriminator"], self.gan.adv_loss
        # G's half runs the frozen D unwrapped: D's parameters get no gradient there, and DDP would wait for them.
        sr, logs = generator_step(
            self.forward, self.networks["discriminator"], g, lq, gt, content_loss=self.content_loss,
            adv_weight=self.gan.adv_weight, pixel_weight=self.gan.pixel_weight, texture=self.texture, adv_loss=kind,
            autocast=self.autocast,
        )  # fmt: skip
        self.update_ema()
        return logs | discriminator_step(self.forward_d, d, sr, gt, adv_loss=kind, autocast=self.autocast)

    def check(self, step: int, means: dict[str, float]) -> Stop | None:
        patience = self.gan.collapse_patience
        if not patience:
            return None
        self.collapsed_windows = self.collapsed_windows + 1 if is_collapsed(means, self.gan) else 0
        if self.collapsed_windows < patience:
            return None
        return (
            f"the GAN collapsed: D won outright in {self.collapsed_windows} log windows in a row up to step {step} "
            f"(d/real + d/fake = {means['d/real'] + means['d/fake']:.3g}, d/acc_fake = {means['d/acc_fake']:.3f}, "
            f"g/adv = {means['g/adv']:.3g})",
            "lower gan.d_lr or raise gan.adv_weight",
        )

    def state_dict(self) -> dict:
        return super().state_dict() | {"collapsed_windows": self.collapsed_windows}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.collapsed_windows = state["collapsed_windows"]


def is_collapsed(numbers: dict[str, float], gan: GanConfig) -> bool:
    """One log window of a GAN run: did D win outright? (the rule is documented on GanConfig)"""
    d_loss = numbers["d/real"] + numbers["d/fake"]
    return d_loss < gan.collapse_d_loss or (numbers["d/acc_fake"] >= 1.0 and numbers["g/adv"] > gan.collapse_g_adv)
