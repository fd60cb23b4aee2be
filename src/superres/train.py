"""Training runs, supervised and GAN: one visible loop with schedule, step, log, validate, checkpoint, resume.

    config = load_config("configs/rescnn_x4_bicubic.toml")
    result = train(config, "runs/rescnn", resume=True, progress=lambda step, total, numbers: ...)

The run folder holds `config.toml` (the resolved config), `log.csv` (`step,seconds,key,value`, append-only),
`checkpoints/last.pt` (and `last.prev.pt`, the one before), `best.safetensors` (best val/psnr so far),
`last.safetensors` (the newest weights) and `curves.png`.

Steps count optimizer updates: after step k the model has been updated k times, and the k-th update used
`lr_at(k - 1, cfg)`. Logging, validation and checkpoints happen after steps that are multiples of their
`*_every`, and all three after the last step (or when `train.max_minutes` runs out). A resumed run continues from
the newest good checkpoint with the same weights, optimizer state, RNG states and batches, so it ends with the
same weights as a run that was never interrupted; log rows written after that checkpoint are dropped.

Nothing here prints: `progress(step, total, numbers)` is called after every step with the newest logged numbers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from superres.checkpoint import load_checkpoint, previous_path, save_checkpoint
from superres.config import RunConfig, TrainConfig, load_config, loads_config, to_toml
from superres.data import PatchSampler, degrade, make_params, match_pairs
from superres.data.degrade import Params
from superres.files import atomic_write_text
from superres.imageio import list_images, read_rgb
from superres.inference import upscale
from superres.metrics import psnr, ssim
from superres.models import build_model
from superres.report import plot_learning_curves
from superres.runtime import autocast_for, resolve_device, resolve_precision
from superres.weights import save_weights

Progress = Callable[[int, int, dict[str, float]], None]
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
CONFIG_FILE, LOG_FILE, CHECKPOINT_FILE = "config.toml", "log.csv", "checkpoints/last.pt"
LOG_HEADER = ("step", "seconds", "key", "value")
VAL_SEED = 1234  # validation LQ images are made once, with their own generator, so they never touch training RNG


class TrainingError(RuntimeError):
    """A run that cannot go on: non-finite loss, collapsed GAN, or a run folder that does not fit the config."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done, all sessions together
    seconds: float  # training wall-clock time, all sessions together
    stopped: str  # "completed" or "time_limit"
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation: val/psnr, val/ssim
    best_psnr: float | None = None
    resumed_from: int | None = None  # the checkpoint step this call started from
    notes: tuple[str, ...] = ()  # e.g. a damaged checkpoint that was skipped on resume


def lr_at(step: int, cfg: TrainConfig, base_lr: float | None = None) -> float:
    """Piecewise-constant schedule: base_lr (default cfg.lr) times lr_gamma per milestone reached by `step`."""
    reached = sum(1 for milestone in cfg.lr_milestones if step >= milestone)
    return (cfg.lr if base_lr is None else base_lr) * cfg.lr_gamma**reached


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


def run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The resolved config a run folder was started with (for resuming without naming the TOML file again)."""
    return load_config(Path(run_dir) / CONFIG_FILE, overrides)


# --- what the loop needs: data, networks, validation images, the log ----------------------------------------


def degradation_params(config: RunConfig) -> Params | None:
    """data.degradation_params as the data module's parameter object (None for the deterministic kinds)."""
    return make_params(config.data.degradation, config.data.degradation_params)


def check_data_split(config: RunConfig) -> None:
    """Training data must not be validation or benchmark data (../shared/data/README.md: train only on train/)."""
    d = config.data
    train_roots = [Path(r).resolve() for r in (*d.train_roots, d.div2k_root, d.paired_lq_root) if r]
    if not train_roots:
        raise TrainingError("data.train_roots names no folder")
    val_roots = [Path(r).resolve() for r in config.train.val_roots] if config.train.val_every else []
    for root in train_roots:
        held_out = {("data", "benchmarks"), ("data", "div2k_unknown_x4")}
        if any(pair in held_out for pair in zip(root.parts, root.parts[1:])):
            raise TrainingError(f"{root} is benchmark data: train only on the train/ folders")
        for val in val_roots:
            if root == val or root in val.parents or val in root.parents:
                raise TrainingError(f"training data {root} overlaps the validation data {val}")


def make_sampler(config: RunConfig, device: torch.device) -> PatchSampler:
    """HR folders degraded on the fly; or the real LR/HR pairs of `data.div2k_root` (its train split), or of the
    single train root and `data.paired_lq_root` (LR files named like the HR ones, optionally with an x4 suffix)."""
    d = config.data
    where = device if d.device_resident else torch.device("cpu")
    if d.div2k_root:
        return PatchSampler.from_div2k(d.div2k_root, "train", d.degradation, d.scale, d.patch_size, where,
                                       degradation_params(config))  # fmt: skip
    if d.paired_lq_root:
        if len(d.train_roots) != 1:
            raise TrainingError("data.paired_lq_root pairs with exactly one data.train_roots folder")
        pairs = match_pairs(list_images(d.paired_lq_root), list_images(d.train_roots[0]), d.scale)
        return PatchSampler.from_pairs(pairs, d.scale, d.patch_size, where, degradation=d.degradation)
    return PatchSampler.from_hr_folder(list(d.train_roots), d.degradation, d.scale, d.patch_size, where,
                                       degradation_params(config))  # fmt: skip


def load_val_set(config: RunConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(lq, gt) pairs on the CPU: the first `val_max_images` of `val_roots`, centre-cropped to `val_crop`."""
    t, d = config.train, config.data
    if not t.val_every:
        return []
    paths = [p for root in t.val_roots for p in list_images(root)]
    if not paths:
        raise TrainingError(f"no validation images in {list(t.val_roots)}")
    paths = paths[: t.val_max_images or None]
    generator, params = torch.Generator().manual_seed(VAL_SEED), degradation_params(config)
    pairs = []
    for path in paths:
        gt = read_rgb(path)  # (3, H, W)
        h, w = gt.shape[-2:]
        if t.val_crop:
            h, w = min(h, t.val_crop), min(w, t.val_crop)
        h, w = h // d.scale * d.scale, w // d.scale * d.scale
        top, left = (gt.shape[-2] - h) // 2, (gt.shape[-1] - w) // 2
        gt = gt[:, top : top + h, left : left + w].contiguous()
        lq = degrade(gt[None], d.degradation, d.scale, generator, params)[0]  # (3, h/s, w/s)
        pairs.append((lq, gt))
    return pairs


def validate(
    model: nn.Module, val_set: list, *, scale: int, autocast: Callable = contextlib.nullcontext
) -> dict[str, float]:
    """Mean PSNR/SSIM on Y with a border of `scale` px, the published SR protocol."""
    was_training = model.training
    model.eval()
    scores = []
    for lq, gt in val_set:
        sr = upscale(model, lq, autocast=autocast)  # (3, H, W) on the CPU, clamped to [0, 1]
        scores.append((psnr(sr, gt, crop_border=scale), ssim(sr, gt, crop_border=scale)))
    model.train(was_training)
    psnrs, ssims = zip(*scores)
    return {"val/psnr": math.fsum(psnrs) / len(psnrs), "val/ssim": math.fsum(ssims) / len(ssims)}


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


def rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def window_means(sums: dict, steps: int, step: int, checkpoint_path: Path) -> dict[str, float]:
    """Mean of each logged quantity over the last `steps` steps. The sums stay on the device between logs (no sync
    per step), so a NaN or inf in a sum means some step since the last log went bad: stop before saving anything."""
    means = {key: float(value) / steps for key, value in sums.items()}
    bad = sorted(key for key, value in means.items() if not math.isfinite(value))
    if bad:
        raise TrainingError(
            f"non-finite {', '.join(bad)} within steps {step - steps + 1}..{step}; the last good checkpoint "
            f"{checkpoint_path} is kept (lower train.lr, or use precision fp32)"
        )
    return means


def is_collapsed(numbers: dict[str, float], config: RunConfig) -> bool:
    """One log window of a GAN run: did D win outright? (the rule is documented on GanConfig)"""
    g = config.gan
    d_loss = numbers["d/real"] + numbers["d/fake"]
    return d_loss < g.collapse_d_loss or (numbers["d/acc_fake"] >= 1.0 and numbers["g/adv"] > g.collapse_g_adv)


def check_collapse(windows: int, numbers: dict[str, float], config: RunConfig, step: int, checkpoint_path: Path):
    if windows >= config.gan.collapse_patience:
        raise TrainingError(
            f"the GAN collapsed: D won outright in {windows} log windows in a row up to step {step} "
            f"(d/real + d/fake = {numbers['d/real'] + numbers['d/fake']:.3g}, "
            f"d/acc_fake = {numbers['d/acc_fake']:.3f}, g/adv = {numbers['g/adv']:.3g}); the last good checkpoint "
            f"{checkpoint_path} is kept (lower gan.d_lr or raise gan.adv_weight)"
        )


# --- the run ------------------------------------------------------------------------------------------------


def train(
    config: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: Progress | None = None
) -> TrainResult:
    """Train (or, with `resume`, continue) the run `config` describes in `run_dir`; see the module docstring."""
    t, d = config.train, config.data
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT_FILE
    has_checkpoint = checkpoint_path.exists() or previous_path(checkpoint_path).exists()
    if has_checkpoint and not resume:
        raise TrainingError(f"{run_dir} already holds a checkpoint: resume it, or train into a new folder")
    call_start = time.perf_counter()
    device = resolve_device(t.device)
    precision = resolve_precision(t.precision, device)
    if config.mode == "gan" and precision == "fp16":
        raise TrainingError("GAN training has no gradient scaling: use precision bf16 or fp32, not fp16")
    autocast = autocast_for(device, precision)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    torch.manual_seed(t.seed)

    # Networks and optimizers. In GAN mode the generator starts from trained weights.
    if config.mode == "gan":
        from superres.gan import gan_step
        from superres.losses import build_content_loss
        from superres.weights import load_model

        generator = load_model(config.gan.generator_weights, device=device)
        arch, args = generator.info.arch, dict(generator.info.args)
        discriminator = build_model("discriminator", **config.gan.d_args).to(device, memory_format=memory_format)
        content_loss = build_content_loss(
            config.gan.content_loss, vgg_weights=config.gan.vgg_weights, discriminator=discriminator
        ).to(device)
    else:
        arch, args = config.model.arch, dict(config.model.args)
        generator, discriminator = build_model(arch, **args), None
        if config.model.init_weights:  # fine-tune: start from trained weights of the same architecture
            from superres.weights import load_model

            start = load_model(config.model.init_weights)
            if (start.info.arch, start.info.args) != (arch, args):
                raise TrainingError(f"model.init_weights holds {start.info.arch} {start.info.args}, not {arch} {args}")
            generator.load_state_dict(start.state_dict())
    generator = generator.to(device, memory_format=memory_format).train()
    if generator.scale != d.scale:
        raise TrainingError(f"the {arch} model upscales x{generator.scale} but data.scale is {d.scale}")
    fused = device.type == "cuda"
    optimizers = {
        "generator": torch.optim.Adam(generator.parameters(), t.lr, t.betas, weight_decay=t.weight_decay, fused=fused)
    }
    base_lrs = {"generator": t.lr}
    if discriminator is not None:
        g = config.gan
        optimizers["discriminator"] = torch.optim.Adam(discriminator.parameters(), g.d_lr, g.d_betas, fused=fused)
        base_lrs["discriminator"] = g.d_lr
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    forward = torch.compile(generator) if t.compile else generator  # weights are saved from `generator`, unwrapped
    loss_fn = LOSSES[t.loss]

    def train_step(lq: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor | float]:
        if discriminator is not None:  # freeze D, step G; unfreeze D, step D (superres.gan)
            return gan_step(
                forward, discriminator, optimizers["generator"], optimizers["discriminator"], lq, gt,
                content_loss=content_loss, adv_weight=config.gan.adv_weight,
                pixel_weight=config.gan.pixel_weight, autocast=autocast,
            )  # fmt: skip
        loss = supervised_step(
            forward, optimizers["generator"], scaler, lq, gt, loss_fn=loss_fn, autocast=autocast, grad_clip=t.grad_clip
        )
        return {"train/loss": loss}

    # Data: an explicit generator drives every random choice of the batches.
    check_data_split(config)
    sampler = make_sampler(config, device)
    notes = [f"{sampler.num_skipped} training images skipped (smaller than a patch)"] if sampler.num_skipped else []
    data_generator = torch.Generator(device=sampler.device).manual_seed(t.seed)
    val_set = load_val_set(config)

    # Resume: weights, optimizers, RNG states and counters from the newest good checkpoint.
    step, seconds_before, best_psnr, collapsed_windows = 0, 0.0, None, 0
    resumed_from = None
    if has_checkpoint:
        loaded = load_checkpoint(checkpoint_path)  # falls back to last.prev.pt when last.pt is damaged
        notes += list(loaded.skipped)
        state = loaded.state
        check_same_run(loads_config(state["config"], source=str(loaded.path)), config)
        saved = state["model"]["arch"], json.loads(state["model"]["args"])
        if saved != (arch, args):
            raise TrainingError(f"the checkpoint holds a {saved[0]} {saved[1]}, not the {arch} {args} configured")
        generator.load_state_dict(state["models"]["generator"])
        if discriminator is not None:
            discriminator.load_state_dict(state["models"]["discriminator"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], data_generator)
        step, seconds_before = state["step"], state["seconds"]
        best_psnr, collapsed_windows = state["best_psnr"], state["collapsed_windows"]
        resumed_from = step
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, to_toml(config))
    log_path = run_dir / LOG_FILE
    keep_log_until(log_path, step)

    def seconds() -> float:
        return seconds_before + time.perf_counter() - call_start

    def save_state(step: int) -> None:
        state = {
            "step": step,
            "seconds": seconds(),
            "config": to_toml(config),
            "model": {"arch": arch, "args": json.dumps(args)},
            "models": {"generator": generator.state_dict()}
            | ({"discriminator": discriminator.state_dict()} if discriminator is not None else {}),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
            "scaler": scaler.state_dict(),
            "rng": rng_state(data_generator),
            "best_psnr": best_psnr,
            "collapsed_windows": collapsed_windows,
        }
        save_checkpoint(checkpoint_path, state)

    def save_model(name: str, step: int, metrics: dict[str, float]) -> None:
        recipe = {
            "mode": config.mode, "config": config.name, "steps": step, "wall_seconds": round(seconds(), 1),
            "device": device_name(device), "precision": precision, "batch_size": d.batch_size,
            "patch_size": d.patch_size, "loss": t.loss if config.mode == "supervised" else config.gan.content_loss,
            "lr": t.lr, "lr_milestones": list(t.lr_milestones), "train_roots": list(d.train_roots),
        }  # fmt: skip
        save_weights(run_dir / name, generator, arch=arch, args=args, scale=d.scale, degradation=d.degradation,
                     metrics=metrics, recipe=recipe)  # fmt: skip

    # The loop.
    stopped = "completed"
    numbers: dict[str, float] = {}  # the newest logged values, for `progress`
    metrics: dict[str, float] = {}
    sums: dict[str, torch.Tensor | float] = {}
    window_steps, window_start = 0, time.perf_counter()
    new_log = not log_path.exists()
    with log_path.open("a", newline="") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(LOG_HEADER)

        def write_rows(step: int, values: dict[str, float]) -> None:
            now = round(seconds(), 3)
            log.writerows((step, now, key, f"{value:.7g}") for key, value in values.items())
            log_file.flush()
            numbers.update(values)

        while step < t.steps:
            for name, optimizer in optimizers.items():
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, t, base_lrs[name])
            lq, gt = sampler.sample(d.batch_size, data_generator)  # (B, 3, p/s, p/s), (B, 3, p, p)
            lq = lq.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            gt = gt.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            stats = train_step(lq, gt)
            step += 1
            window_steps += 1
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + (value.detach() if torch.is_tensor(value) else value)

            out_of_time = t.max_minutes > 0 and time.perf_counter() - call_start > 60 * t.max_minutes
            final = step == t.steps or out_of_time
            do_log, do_checkpoint = step % t.log_every == 0 or final, step % t.checkpoint_every == 0 or final
            do_val = bool(val_set) and (step % t.val_every == 0 or final)
            if do_log or do_val or do_checkpoint:
                means = window_means(sums, window_steps, step, checkpoint_path)  # syncs; raises on NaN/inf
                synced = time.perf_counter()
            if do_log:
                rate = window_steps / max(synced - window_start, 1e-9)
                write_rows(step, means | {"lr": lr_at(step - 1, t), "speed/steps_per_s": rate})
                sums, window_steps, window_start = {}, 0, synced
                if discriminator is not None and config.gan.collapse_patience:
                    collapsed_windows = collapsed_windows + 1 if is_collapsed(means, config) else 0
                    check_collapse(collapsed_windows, means, config, step, checkpoint_path)
            if do_val:
                metrics = validate(generator, val_set, scale=d.scale)  # fp32: comparable across runs and devices
                write_rows(step, metrics)
                if best_psnr is None or metrics["val/psnr"] > best_psnr:
                    best_psnr = metrics["val/psnr"]
                    save_model("best.safetensors", step, metrics)
                plot_learning_curves([run_dir], run_dir / "curves.png")
            if do_checkpoint:
                save_state(step)
                save_model("last.safetensors", step, metrics)
            if do_log or do_val or do_checkpoint:
                window_start += time.perf_counter() - synced  # speed/steps_per_s counts training time only
            if progress is not None:
                progress(step, t.steps, dict(numbers))
            if out_of_time and step < t.steps:
                stopped = "time_limit"
                break
    plot_learning_curves([run_dir], run_dir / "curves.png")
    return TrainResult(run_dir, step, seconds(), stopped, metrics, best_psnr, resumed_from, tuple(notes))


def check_same_run(saved: RunConfig, config: RunConfig) -> None:
    """A resumed run may change its length, budget, schedule, logging and validation, not what is being trained."""
    same = {
        "mode": saved.mode == config.mode,
        "model": saved.model == config.model,
        "data.scale": saved.data.scale == config.data.scale,
        "gan.d_args": saved.gan.d_args == config.gan.d_args,
    }
    changed = [key for key, ok in same.items() if not ok]
    if changed:
        raise TrainingError(f"the checkpoint was trained with other {', '.join(changed)}: resume with its config.toml")
