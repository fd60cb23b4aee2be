"""Training runs, supervised and GAN, in one process or in a job of several (torchrun): a config in, a run folder out.

    config = load_config("configs/rescnn_x4_bicubic.toml")
    result = train(config, "runs/rescnn", resume=True, progress=lambda step, total, numbers: ...)

`train` puts the parts together and runs them: the networks and the step object of the mode (`superres.steps`),
this process's patches (`superres.loop.Batches`), the validation pairs, the run folder (`superres.runfolder`) and
the loop (`superres.loop`, whose docstring says when it logs, validates and checkpoints). A resumed run continues
from the newest good checkpoint with the same weights, optimizer state, RNG states and batches, so it ends with the
same weights as a run that was never interrupted; log rows written after that checkpoint are dropped.

Several processes (`torchrun ... -m superres train`, see `superres.distributed`): every rank trains the networks
through DistributedDataParallel on its own patches, `data.batch_size` of them, so the global batch is
`data.batch_size` times the number of ranks; the learning rate is used as configured. Rank 0 alone reads and
writes the run folder and validates. A checkpoint holds every rank's data stream and their number; resuming with
another number of ranks continues the weights and optimizer state with a note (the patches then differ from those
of an uninterrupted run).

Nothing here prints: `progress(step, total, numbers)` is called after every step with the newest logged numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from superres.checkpoint import LoadedCheckpoint, load_checkpoint
from superres.config import RunConfig, loads_config
from superres.data import PatchSampler, degrade, make_params, match_pairs
from superres.data.conditions import condition_lq
from superres.data.degrade import Params
from superres.distributed import World, current_world, on_main
from superres.imageio import list_images, read_rgb
from superres.inference import upscale
from superres.loop import Batches, Loop, Progress, TrainingError
from superres.metrics import psnr, ssim
from superres.losses import build_content_loss, resolve_content_loss
from superres.models import DISCRIMINATORS, build_model
from superres.runfolder import CHECKPOINT_FILE, RunFolder, has_checkpoint
from superres.runtime import resolve_device, resolve_precision
from superres.steps import GanStep, Step, SupervisedStep

VAL_SEED = 1234  # validation LQ images are made once, with their own generator, so they never touch training RNG


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
    ranks: int = 1  # data ranks: processes of the job (or replayed in one process)
    speed: dict[str, float] = field(default_factory=dict)  # the last log window's speed/* numbers (superres.loop)


# --- the run ------------------------------------------------------------------------------------------------


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    world: World | None = None,
    replay_ranks: int | None = None,
) -> TrainResult:
    """Train (or, with `resume`, continue) the run `config` describes in `run_dir`; see the module docstring.

    `world`: this process's place in a job of several (default: the process group joined, else one process).
    `replay_ranks=n` draws in one process, concatenated, the patches that n ranks would each draw: one optimizer
    step then sees the batch a job of n ranks averages its gradients over (the same update, up to float rounding,
    for models without batch norm), and a checkpoint of either can be resumed by the other."""
    started = time.perf_counter()
    t, d = config.train, config.data
    world = world or current_world()
    run_dir = Path(run_dir)
    loaded = on_main(world, lambda: checkpoint_to_resume(run_dir, resume))  # rank 0 reads; every rank gets it
    device, precision = resolve_runtime(config, world)
    check_data_split(config)
    torch.manual_seed(t.seed)
    train_step, arch, args = build_step(config, device, precision, world)

    # Data: explicit generators, one per data rank, drive every random choice of the batches.
    sampler = make_sampler(config, device)
    notes = [f"{sampler.num_skipped} training images skipped (smaller than a patch)"] if sampler.num_skipped else []
    batches = make_batches(config, sampler, device, world, replay_ranks)
    validation = Validation(load_val_set(config), scale=d.scale) if world.is_main and t.val_every else None
    folder = None
    if world.is_main:
        recipe = {
            "mode": config.mode, "config": config.name, "device": device_name(device), "precision": precision,
            "batch_size": d.batch_size, "ranks": batches.num_ranks, "global_batch": batches.global_batch,
            "patch_size": d.patch_size, "lr": t.lr, "lr_milestones": list(t.lr_milestones),
            "train_roots": list(d.train_roots), "ema_decay": t.ema_decay, **loss_recipe(config),
            "init_weights": config.model.init_weights if config.mode == "supervised" else config.gan.generator_weights,
        }  # fmt: skip
        params = degradation_params(config)
        if params is not None:  # every range of a random degradation, defaults included: the weights say what they saw
            recipe["degradation_params"] = dataclasses.asdict(params)
        folder = RunFolder(run_dir, config, arch=arch, args=args, recipe=recipe)
    loop = Loop(train_step, batches, t, folder=folder, validate=validation, started=started)

    # Resume: weights, optimizers, RNG states and counters from the newest good checkpoint.
    resumed_from = None
    if loaded is not None:
        notes += list(loaded.skipped)
        check_same_run(loads_config(loaded.state["config"], source=str(loaded.path)), config)
        saved = loaded.state["model"]["arch"], json.loads(loaded.state["model"]["args"])
        if saved != (arch, args):
            raise TrainingError(f"the checkpoint holds a {saved[0]} {saved[1]}, not the {arch} {args} configured")
        notes += loop.load_state_dict(loaded.state)
        resumed_from = loop.step
    with batches, folder.opened(loop.step) if folder is not None else contextlib.nullcontext():
        result = loop.run(progress)
    speed = {key: values[-1][1] for key, values in result.history.items() if key.startswith("speed/")}
    return TrainResult(run_dir, result.step, result.seconds, result.stopped, result.metrics, result.best_psnr,
                       resumed_from, tuple(notes), batches.num_ranks, speed)  # fmt: skip


def resolve_runtime(config: RunConfig, world: World) -> tuple[torch.device, str]:
    """This process's device and the precision to train in; refuses what cannot run (fp16 GANs, CPU SyncBatchNorm)."""
    t = config.train
    device = world.device(resolve_device(t.device))
    precision = resolve_precision(t.precision, device)
    if config.mode == "gan" and precision == "fp16":
        raise TrainingError("GAN training has no gradient scaling: use precision bf16 or fp32, not fp16")
    if t.sync_batchnorm and world.size > 1 and device.type != "cuda":
        raise TrainingError("train.sync_batchnorm needs GPUs (SyncBatchNorm does not run on the CPU)")
    return device, precision


def loss_recipe(config: RunConfig) -> dict:
    """The losses of a run, for the weights' recipe (the content loss "auto" as what it became)."""
    if config.mode == "supervised":
        return {"loss": config.train.loss}
    g = config.gan
    return {
        "loss": resolve_content_loss(g.content_loss, g.vgg_weights), "adv_loss": g.adv_loss,
        "adv_weight": g.adv_weight, "pixel_weight": g.pixel_weight, "fft_weight": g.fft_weight,
        "gram_weight": g.gram_weight, "periodic_weight": g.periodic_weight, "discriminator": g.discriminator,
        "d_args": dict(g.d_args),
    }  # fmt: skip


def checkpoint_to_resume(run_dir: Path, resume: bool) -> LoadedCheckpoint | None:
    """The newest good checkpoint of `run_dir` with `resume`; None for a new run. A run folder that holds a
    checkpoint is never trained into afresh."""
    if not has_checkpoint(run_dir):
        return None
    if not resume:
        raise TrainingError(f"{run_dir} already holds a checkpoint: resume it, or train into a new folder")
    return load_checkpoint(run_dir / CHECKPOINT_FILE)  # falls back to last.prev.pt when last.pt is damaged


def check_same_run(saved: RunConfig, config: RunConfig) -> None:
    """A resumed run may change its length, budget, schedule, logging and validation, not what is being trained."""
    same = {
        "mode": saved.mode == config.mode,
        "model": saved.model == config.model,
        "data.scale": saved.data.scale == config.data.scale,
        "gan.discriminator": saved.gan.discriminator == config.gan.discriminator,
        "gan.d_args": saved.gan.d_args == config.gan.d_args,
    }
    changed = [key for key, ok in same.items() if not ok]
    if changed:
        raise TrainingError(f"the checkpoint was trained with other {', '.join(changed)}: resume with its config.toml")


# --- networks -----------------------------------------------------------------------------------------------


def init_from(generator: nn.Module, start: nn.Module, arch: str, args: dict) -> None:
    """Copy `start`'s weights into `generator`, both `arch` with the same arguments: all of them, or where only
    the scale or the upsampler differ the feature extractor (everything before the upsampler and the tail), so that
    an x1 restoration model starts from an x4 model's features while its zero tail keeps it the identity, and a
    nearest-conv upsampler is trained on a pixel-shuffle model's features."""
    upsampling_args = ("scale", "upsampler")  # change only the upsampler and the tail

    def but_upsampling(kwargs: dict) -> dict:
        return {k: v for k, v in kwargs.items() if k not in upsampling_args}

    if (start.info.arch, but_upsampling(start.info.args)) != (arch, but_upsampling(args)):
        raise TrainingError(f"model.init_weights holds {start.info.arch} {start.info.args}, not {arch} {args}")
    state = start.state_dict()
    same = start.scale == generator.scale and upsampler_shapes(state) == upsampler_shapes(generator.state_dict())
    if not same:
        state = {k: v for k, v in state.items() if not k.startswith(("upsample.", "tail."))}
    generator.load_state_dict(state, strict=same)


def upsampler_shapes(state: dict[str, torch.Tensor]) -> dict[str, torch.Size]:
    """The upsampler's tensors by name and shape: the same for two models exactly when one's upsampler loads into
    the other's, whatever arguments (or the defaults of older files) built them."""
    return {k: v.shape for k, v in state.items() if k.startswith("upsample.")}


def build_step(config: RunConfig, device: torch.device, precision: str, world: World) -> tuple[Step, str, dict]:
    """The step object of the mode with its networks on `device`, and the generator's arch and args. In GAN mode
    the generator starts from `gan.generator_weights`; in supervised mode from scratch or `model.init_weights`."""
    from superres.weights import load_model

    t, memory_format = config.train, memory_format_of(config)
    if config.mode == "gan":
        generator = load_model(config.gan.generator_weights, device=device)
        arch, args = generator.info.arch, dict(generator.info.args)
    else:
        arch, args = config.model.arch, dict(config.model.args)
        generator = build_model(arch, **args)
        if config.model.init_weights:  # fine-tune: start from trained weights of the same architecture
            init_from(generator, load_model(config.model.init_weights), arch, args)
    generator = sync_batchnorm(generator.to(device, memory_format=memory_format).train(), t.sync_batchnorm, world)
    if generator.scale != config.data.scale:
        raise TrainingError(f"the {arch} model upscales x{generator.scale} but data.scale is {config.data.scale}")
    if config.mode == "supervised":
        return SupervisedStep(generator, t, device=device, precision=precision, world=world), arch, args

    g, d_arch = config.gan, DISCRIMINATORS[config.gan.discriminator]
    try:
        discriminator = build_model(d_arch, **g.d_args).to(device, memory_format=memory_format)
    except TypeError as error:  # an argument the chosen discriminator does not take
        raise TrainingError(f"gan.d_args {g.d_args} do not fit the {g.discriminator} discriminator ({error})") from None
    discriminator = sync_batchnorm(discriminator, t.sync_batchnorm, world)
    content_loss = build_content_loss(g.content_loss, vgg_weights=g.vgg_weights, discriminator=discriminator)
    step = GanStep(generator, discriminator, content_loss.to(device), t, g, device=device, precision=precision,
                   world=world, scale=config.data.scale)  # fmt: skip
    return step, arch, args


def memory_format_of(config: RunConfig) -> torch.memory_format:
    return torch.channels_last if config.train.channels_last else torch.contiguous_format


def sync_batchnorm(module: nn.Module, wanted: bool, world: World) -> nn.Module:
    """`module` with its BatchNorm layers computing their statistics over all ranks' patches, when `wanted` in a job
    of several processes (their running statistics then match on every rank); `module` itself otherwise."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module) if wanted and world.size > 1 else module


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


# --- data: training patches and validation pairs ------------------------------------------------------------


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


def make_batches(config: RunConfig, sampler: PatchSampler, device: torch.device, world: World,
                 replay_ranks: int | None = None) -> Batches:  # fmt: skip
    """This process's training batches on `device`, drawn from `sampler` with generators seeded by train.seed (and
    each data rank); `replay_ranks=n` draws what n ranks would (see `train`)."""
    return Batches(sampler, config.data.batch_size, config.train.seed, world=world, device=device,
                   memory_format=memory_format_of(config), prefetch=config.data.prefetch,
                   ranks=None if replay_ranks is None else range(replay_ranks))  # fmt: skip


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


def load_val_set(config: RunConfig) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """(lq, gt, condition) on the CPU: the first `val_max_images` of `val_roots`, centre-cropped to `val_crop`, with
    their LR made once by the training degradation (seeded), or by each of `val_conditions`."""
    t, d = config.train, config.data
    if not t.val_every:
        return []
    paths = [p for root in t.val_roots for p in list_images(root)]
    if not paths:
        raise TrainingError(f"no validation images in {list(t.val_roots)}")
    paths = paths[: t.val_max_images or None]
    generator, params = torch.Generator().manual_seed(VAL_SEED), degradation_params(config)
    triples = []
    for path in paths:
        gt = read_rgb(path)  # (3, H, W)
        h, w = gt.shape[-2:]
        if t.val_crop:
            h, w = min(h, t.val_crop), min(w, t.val_crop)
        h, w = h // d.scale * d.scale, w // d.scale * d.scale
        top, left = (gt.shape[-2] - h) // 2, (gt.shape[-1] - w) // 2
        gt = gt[:, top : top + h, left : left + w].contiguous()
        if not t.val_conditions:
            triples.append((degrade(gt[None], d.degradation, d.scale, generator, params)[0], gt, ""))
        for name in t.val_conditions:
            triples.append((condition_lq(gt, name, d.scale), gt, name))
    return triples


class Validation:
    """Mean PSNR/SSIM on Y with a border of `scale` px (the published SR protocol) over fixed (lq, gt, condition)
    triples, in fp32 (comparable across runs and devices), overall and per named condition; and, to look at, the
    centre `crop` px of the first `shown` outputs beside their ground truth."""

    def __init__(self, triples: list[tuple[torch.Tensor, torch.Tensor, str]], *, scale: int, shown: int = 3,
                 crop: int = 128) -> None:  # fmt: skip
        self.triples, self.scale, self.shown, self.crop = triples, scale, shown, crop

    def __call__(self, model: nn.Module) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        was_training = model.training
        model.eval()
        scores: dict[str, list[tuple[float, float]]] = {}
        images = {}
        for i, (lq, gt, condition) in enumerate(self.triples):
            sr = upscale(model, lq)  # (3, H, W) on the CPU, clamped to [0, 1]
            score = (psnr(sr, gt, crop_border=self.scale), ssim(sr, gt, crop_border=self.scale))
            scores.setdefault(condition, []).append(score)
            if i < self.shown:
                images[f"val/images/{i}"] = torch.cat([centre_crop(sr, self.crop), centre_crop(gt, self.crop)], -1)
        model.train(was_training)
        every = [score for group in scores.values() for score in group]
        numbers = {"val/psnr": _mean([p for p, _ in every]), "val/ssim": _mean([s for _, s in every])}
        for condition, group in scores.items():
            if condition:
                numbers[f"val/psnr/{condition}"] = _mean([p for p, _ in group])
        return numbers, images


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    """The centre side x side px of a (C, H, W) image (all of a side that is shorter)."""
    h, w = image.shape[-2:]
    top, left = max(h - side, 0) // 2, max(w - side, 0) // 2
    return image[..., top : top + side, left : left + side]
