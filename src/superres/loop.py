"""The training loop: schedule, step, log, validate, checkpoint, resume. One loop for every mode and every caller.

    loop = Loop(SupervisedStep(...), Batches(sampler, 16, seed=0), config.train, folder=folder, validate=validation)
    result = loop.run(progress)          # result.history: every logged number, by key

Steps count optimizer updates: after step k the model has been updated k times, and the k-th update used
`lr_at(k - 1, t)`. Logging, validation and checkpoints happen after steps that are multiples of their `*_every`,
and all three after the last step (or when `t.max_minutes` runs out); with `t.checkpoint_minutes` also a checkpoint
at the first log step that many minutes after the last one (a job cut off from outside keeps recent weights).
The first step of a session runs under `FlopCounterMode` (it only counts) to log the speed as `speed/steps_per_s`,
`speed/hr_mpx_per_s` (HR pixels of the patches trained on) and `speed/tflop_per_s` (the FLOPs of that step, forward
and backward of every network, times the step rate), all ranks together. Validation and the weights files take the
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
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from superres.config import TrainConfig
from superres.distributed import World, any_rank, gather, mean_over_ranks, rank_seed
from superres.steps import Step

if TYPE_CHECKING:  # the loop only calls them
    from superres.data import PatchSampler
    from superres.runfolder import RunFolder

Progress = Callable[[int, int, dict[str, float]], None]  # (step, total, newest logged numbers), after every step
Validate = Callable[[nn.Module], tuple[dict[str, float], dict[str, torch.Tensor]]]  # -> metrics, images to show


def counted(train_step: Step, lq: torch.Tensor, gt: torch.Tensor) -> tuple[dict, int]:
    """`train_step(lq, gt)` under `FlopCounterMode` (which only counts): its numbers, and the FLOPs of the step
    (forward and backward of every network it updates)."""
    with FlopCounterMode(display=False) as counter:
        stats = train_step(lq, gt)
    return stats, counter.get_total_flops()


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
    over, so that job can be replayed (or checked) in one process.

    `prefetch=n` draws up to n batches ahead in a background thread while the model trains on the current one: the
    same batches in the same order as drawing them in the loop, and `state()` is that of the batches handed out, so
    a checkpoint resumes exactly either way. Use it as a context manager (or call `close()`) to stop the thread."""

    def __init__(self, sampler: PatchSampler, batch_size: int, seed: int, *, world: World = World(),
                 ranks: range | None = None, device: torch.device | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, prefetch: int = 0) -> None:  # fmt: skip
        self.ranks = range(world.rank, world.rank + 1) if ranks is None else ranks
        if world.size > 1 and len(self.ranks) != 1:
            raise ValueError("a process of a job of several processes draws for its own rank only")
        self.sampler, self.batch_size, self.world, self.memory_format = sampler, batch_size, world, memory_format
        self.device = device or sampler.device
        self.generators = [torch.Generator(device=sampler.device).manual_seed(rank_seed(seed, r)) for r in self.ranks]
        self.num_ranks = len(self.ranks) * world.size  # data ranks of the whole job
        self.global_batch = batch_size * self.num_ranks  # patches per optimizer step, all ranks together
        self.prefetch = prefetch
        self._states = [g.get_state() for g in self.generators]  # after the batches handed out so far
        self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lq, gt): (B, 3, p/s, p/s), (B, 3, p, p) with B = batch_size times the ranks this process draws for."""
        if not self.prefetch:
            lq, gt, self._states = self._draw()
            return lq, gt
        if self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="superres-batches", daemon=True)
            self._thread.start()
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        lq, gt, self._states = item
        return lq, gt

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        pairs = [self.sampler.sample(self.batch_size, g) for g in self.generators]
        lq, gt = (torch.cat(parts) if len(parts) > 1 else parts[0] for parts in zip(*pairs))
        lq = lq.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        gt = gt.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return lq, gt, [g.get_state() for g in self.generators]

    def _fill(self) -> None:
        """The background thread: draw batches into the queue until closed (an error goes to the queue too)."""
        try:
            while not self._stop.is_set():
                self._put(self._draw())
        except BaseException as error:  # noqa: BLE001 -- handed to the training thread, which raises it
            self._put(error)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the background thread (if any) and drop the batches it drew ahead: the generators go back to where
        the batches handed out left them, so a later `next()` continues the same stream."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread, self._queue = None, queue.Queue(maxsize=self._queue.maxsize)
        self._stop.clear()
        for generator, state in zip(self.generators, self._states):
            generator.set_state(state)

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def state(self) -> list[torch.Tensor]:
        """Every data rank's generator state after the batches handed out, in rank order (a collective: every rank
        calls it)."""
        per_process = gather(self.world, self._states)
        return [state for states in per_process for state in states]

    def load_state(self, states: list[torch.Tensor]) -> str | None:
        """Continue each rank's stream from `states`; a rank the checkpoint did not have starts afresh. Returns a note
        when the checkpoint was written by another number of ranks."""
        if self._thread is not None:
            raise RuntimeError("load_state after batches were drawn ahead: load before the first next()")
        for rank, generator in zip(self.ranks, self.generators):
            if rank < len(states):
                generator.set_state(states[rank])
        self._states = [g.get_state() for g in self.generators]
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
        self.step_flops: int | None = None  # of one optimizer step on this process, counted on the session's first
        self.last_checkpoint = self.started  # perf_counter of this session's last checkpoint

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
            stats = self.counted_step(lq, gt)
            self.step += 1
            step = self.step
            window_steps += 1
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + (value.detach() if torch.is_tensor(value) else value)

            late = t.max_minutes > 0 and time.perf_counter() - self.started > 60 * t.max_minutes
            out_of_time = t.max_minutes > 0 and any_rank(self.world, late, self.device)
            final = step == t.steps or out_of_time
            do_log = step % t.log_every == 0 or final
            do_checkpoint = step % t.checkpoint_every == 0 or final or (do_log and self.checkpoint_due())
            do_val = t.val_every > 0 and (step % t.val_every == 0 or final)  # the same on every rank
            if do_log or do_val or do_checkpoint:
                means = self.window_means(sums, window_steps)  # syncs (and all-reduces); raises on NaN/inf
                synced = time.perf_counter()
            if do_log:
                rate = window_steps / max(synced - window_start, 1e-9)
                write(step, means | {"lr": lr_at(step - 1, t), "batch/global": self.batches.global_batch}
                      | self.speed(rate, gt))  # fmt: skip
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
                self.last_checkpoint = time.perf_counter()
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

    def checkpoint_due(self) -> bool:
        """`t.checkpoint_minutes` have passed since the last checkpoint (on any rank: all decide alike)."""
        minutes = self.t.checkpoint_minutes
        late = minutes > 0 and time.perf_counter() - self.last_checkpoint >= 60 * minutes
        return minutes > 0 and any_rank(self.world, late, self.device)

    def counted_step(self, lq: torch.Tensor, gt: torch.Tensor) -> dict:
        """The train step; the session's first one also counts its FLOPs."""
        if self.step_flops is not None:
            return self.train_step(lq, gt)
        stats, self.step_flops = counted(self.train_step, lq, gt)
        return stats

    def speed(self, rate: float, gt: torch.Tensor) -> dict[str, float]:
        """The log's speed numbers at `rate` optimizer steps per second, for the whole job."""
        ranks = self.world.size  # every process trains on a batch like `gt` (a replay's gt holds every rank's)
        numbers = {"speed/steps_per_s": rate, "speed/hr_mpx_per_s": rate * gt.shape[0] * gt[0, 0].numel() * ranks / 1e6}
        if self.step_flops:
            numbers["speed/tflop_per_s"] = rate * self.step_flops * ranks / 1e12
        return numbers

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
