"""The training loop: schedule, step, log, validate, checkpoint, resume. One loop for every mode and every caller.

    loop = Loop(SupervisedStep(...), Batches(sampler, 16, seed=0), config.train, folder=folder, validate=validation)
    result = loop.run(progress)          # result.history: every logged number, by key

Steps count optimizer updates: after step k the model has been updated k times, and the k-th update used
`lr_at(k - 1, t)`. Logging, validation and checkpoints happen after steps that are multiples of their `*_every`,
and all three after the last step (or when `t.max_minutes` runs out). Validation and the weights files take the
step's `inference_model` (the EMA of the generator's weights when train.ema_decay > 0). Without a folder and a
validation (a sweep that wants numbers, not files) the loop only steps, logs into `history` and stops on
non-finite numbers.

In a job of several processes every rank runs this loop on its own patches; the logged numbers are means over the
ranks (one all-reduce per log window), so every rank takes the same decisions (stop on NaN or collapse, stop on
time) at the same step. Rank 0 alone has the folder and the validation: it validates, logs, checkpoints and writes
weights while the others wait at their next collective.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from superres.config import TrainConfig
from superres.distributed import World, any_rank, gather, mean_over_ranks, rank_seed
from superres.steps import Step

if TYPE_CHECKING:  # the loop only calls them
    from superres.data import PatchSampler
    from superres.runfolder import RunFolder

Progress = Callable[[int, int, dict[str, float]], None]  # (step, total, newest logged numbers), after every step
Validate = Callable[[nn.Module], tuple[dict[str, float], dict[str, torch.Tensor]]]  # -> metrics, images to show


class TrainingError(RuntimeError):
    """A run that cannot go on: non-finite loss, collapsed GAN, or a run folder that does not fit the config."""


def lr_at(step: int, cfg: TrainConfig, base_lr: float | None = None) -> float:
    """Piecewise-constant schedule: base_lr (default cfg.lr) times lr_gamma per milestone reached by `step`."""
    reached = sum(1 for milestone in cfg.lr_milestones if step >= milestone)
    return (cfg.lr if base_lr is None else base_lr) * cfg.lr_gamma**reached


class Batches:
    """Training batches on `device`. Each data rank draws `batch_size` patches from `sampler` with its own generator,
    seeded by `rank_seed(seed, rank)`; by default this process draws for its own rank. `ranks=range(n)` in one
    process draws, concatenated, what n ranks would each draw: the batch a job of n ranks averages its gradients
    over, so that job can be replayed (or checked) in one process."""

    def __init__(self, sampler: PatchSampler, batch_size: int, seed: int, *, world: World = World(),
                 ranks: range | None = None, device: torch.device | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:  # fmt: skip
        self.ranks = range(world.rank, world.rank + 1) if ranks is None else ranks
        if world.size > 1 and len(self.ranks) != 1:
            raise ValueError("a process of a job of several processes draws for its own rank only")
        self.sampler, self.batch_size, self.world, self.memory_format = sampler, batch_size, world, memory_format
        self.device = device or sampler.device
        self.generators = [torch.Generator(device=sampler.device).manual_seed(rank_seed(seed, r)) for r in self.ranks]
        self.num_ranks = len(self.ranks) * world.size  # data ranks of the whole job
        self.global_batch = batch_size * self.num_ranks  # patches per optimizer step, all ranks together

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lq, gt): (B, 3, p/s, p/s), (B, 3, p, p) with B = batch_size times the ranks this process draws for."""
        pairs = [self.sampler.sample(self.batch_size, g) for g in self.generators]
        lq, gt = (torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*pairs))
        lq = lq.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        gt = gt.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return lq, gt

    def state(self) -> list[torch.Tensor]:
        """Every data rank's generator state, in rank order (a collective: every rank calls it)."""
        per_process = gather(self.world, [g.get_state() for g in self.generators])
        return [state for states in per_process for state in states]

    def load_state(self, states: list[torch.Tensor]) -> str | None:
        """Continue each rank's stream from `states`; a rank the checkpoint did not have starts afresh. Returns a note
        when the checkpoint was written by another number of ranks."""
        for rank, generator in zip(self.ranks, self.generators):
            if rank < len(states):
                generator.set_state(states[rank])
        if len(states) == self.num_ranks:
            return None
        return (
            f"the checkpoint was written by {len(states)} rank(s) and this run has {self.num_ranks}: the weights and "
            f"optimizer state continue, but the patches (global batch now {self.global_batch}) differ from a run "
            f"that kept {len(states)} rank(s)"
        )


@dataclass(frozen=True)
class LoopResult:
    step: int  # optimizer steps done, all sessions together
    seconds: float  # training wall-clock time, all sessions together
    stopped: str  # "completed" or "time_limit"
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation: val/psnr, val/ssim
    best_psnr: float | None = None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict, repr=False)  # this session's log


class Loop:
    """Runs `train_step` on `batches` for `t.steps` steps with `t`'s schedule, logging, validation and checkpoints.
    `folder` (rank 0's RunFolder, or None) receives the log, checkpoints and weights; `validate(generator)` (rank 0
    only, or None) gives the validation metrics and images; `started` is when the session began (perf_counter)."""

    def __init__(self, train_step: Step, batches: Batches, t: TrainConfig, *, folder: RunFolder | None = None,
                 validate: Validate | None = None, started: float | None = None) -> None:  # fmt: skip
        self.train_step, self.batches, self.t, self.folder, self.validate = train_step, batches, t, folder, validate
        self.world, self.device = batches.world, batches.device
        self.started = time.perf_counter() if started is None else started
        self.step, self.seconds_before, self.best_psnr = 0, 0.0, None

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The resumable state (a collective: every rank calls it, for the data generators of all ranks)."""
        rng = {"torch": torch.get_rng_state(), "data": self.batches.state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return self.train_step.state_dict() | {
            "step": self.step, "seconds": self.seconds(), "best_psnr": self.best_psnr, "rng": rng,
            "world_size": self.batches.num_ranks,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> list[str]:
        """Continue from a checkpoint's state; returns notes for the user (another number of ranks)."""
        self.train_step.load_state_dict(state)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            if isinstance(rng["cuda"], list):  # older checkpoints hold every GPU's state
                torch.cuda.set_rng_state_all(rng["cuda"])
            else:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        data = rng["data"]  # one state per data rank; a single tensor in older checkpoints
        note = self.batches.load_state(data if isinstance(data, list) else [data])
        self.step, self.seconds_before, self.best_psnr = state["step"], state["seconds"], state["best_psnr"]
        return [note] if note else []

    # --- the loop ------------------------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> LoopResult:
        t, folder = self.t, self.folder
        stopped, metrics, numbers = "completed", {}, {}
        history: dict[str, list[tuple[int, float]]] = {}
        sums: dict[str, torch.Tensor | float] = {}
        window_steps, window_start = 0, time.perf_counter()

        def write(step: int, values: dict[str, float]) -> None:
            for key, value in values.items():
                history.setdefault(key, []).append((step, value))
            numbers.update(values)
            if folder is not None:
                folder.log(step, self.seconds(), values)

        while self.step < t.steps:
            for name, optimizer in self.train_step.optimizers.items():
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(self.step, t, self.train_step.base_lrs[name])
            lq, gt = self.batches.next()
            stats = self.train_step(lq, gt)
            self.step += 1
            step = self.step
            window_steps += 1
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + (value.detach() if torch.is_tensor(value) else value)

            late = t.max_minutes > 0 and time.perf_counter() - self.started > 60 * t.max_minutes
            out_of_time = t.max_minutes > 0 and any_rank(self.world, late, self.device)
            final = step == t.steps or out_of_time
            do_log, do_checkpoint = step % t.log_every == 0 or final, step % t.checkpoint_every == 0 or final
            do_val = t.val_every > 0 and (step % t.val_every == 0 or final)  # the same on every rank
            if do_log or do_val or do_checkpoint:
                means = self.window_means(sums, window_steps)  # syncs (and all-reduces); raises on NaN/inf
                synced = time.perf_counter()
            if do_log:
                rate = window_steps / max(synced - window_start, 1e-9)
                write(step, means | {"lr": lr_at(step - 1, t), "batch/global": self.batches.global_batch,
                                     "speed/steps_per_s": rate})  # fmt: skip
                sums, window_steps, window_start = {}, 0, synced
                stop = self.train_step.check(step, means)
                if stop is not None:
                    raise self.error(*stop)
            if do_val and self.validate is not None:
                # fp32: comparable across runs and devices
                metrics, images = self.validate(self.train_step.inference_model)
                write(step, metrics)
                if folder is not None:
                    folder.log_images(step, images)
                    if self.best_psnr is None or metrics["val/psnr"] > self.best_psnr:
                        self.best_psnr = metrics["val/psnr"]
                        folder.save_weights("best.safetensors", self.train_step.inference_model, step=step,
                                            seconds=self.seconds(), metrics=metrics)  # fmt: skip
                    folder.plot_curves()
            if do_checkpoint:
                state = self.state_dict()
                if folder is not None:
                    folder.save_checkpoint(state)
                    folder.save_weights("last.safetensors", self.train_step.inference_model, step=step,
                                        seconds=self.seconds(), metrics=metrics)  # fmt: skip
            if do_log or do_val or do_checkpoint:
                window_start += time.perf_counter() - synced  # speed/steps_per_s counts training time only
            if progress is not None:
                progress(step, t.steps, dict(numbers))
            if out_of_time and step < t.steps:
                stopped = "time_limit"
                break
        if folder is not None:
            folder.plot_curves()
        return LoopResult(self.step, self.seconds(), stopped, metrics, self.best_psnr, history)

    def window_means(self, sums: dict, steps: int) -> dict[str, float]:
        """Mean of each logged quantity over the last `steps` steps (and over the ranks). The sums stay on the device
        between logs (no sync per step), so a NaN or inf in a sum means some step since the last log went bad: stop
        before saving anything."""
        means = {key: value / steps for key, value in mean_over_ranks(self.world, sums, self.device).items()}
        bad = sorted(key for key, value in means.items() if not math.isfinite(value))
        if bad:
            first = self.step - steps + 1
            raise self.error(f"non-finite {', '.join(bad)} within steps {first}..{self.step}",
                             "lower train.lr, or use precision fp32")  # fmt: skip
        return means

    def error(self, reason: str, advice: str) -> TrainingError:
        if self.folder is not None:
            kept = f"the last good checkpoint {self.folder.checkpoint_path} is kept"
        else:
            kept = "rank 0 keeps the last good checkpoint" if self.world.size > 1 else "no checkpoint is written"
        return TrainingError(f"{reason}; {kept} ({advice})")
