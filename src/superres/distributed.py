"""Several processes, one job: torchrun's environment, the process group, and the few collectives superres uses.

    torchrun --nproc_per_node 2 -m superres train --config configs/tiny.toml

torchrun starts one process per GPU (or per CPU share) and tells each its place in the environment variables RANK,
WORLD_SIZE and LOCAL_RANK. `session(backend)` joins the process group when WORLD_SIZE is above 1 and leaves it at the
end; without torchrun it yields the one-process `World()` and touches nothing, so a plain run never imports or
initialises `torch.distributed`. Every helper here is a no-op for a one-process world. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one job: rank `rank` of `size`, `local_rank` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates, logs, checkpoints, writes weights and prints the summary."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: cuda:LOCAL_RANK in a job of several processes, `device` itself otherwise."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.size > 1 else device

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of a sorted list: items rank, rank + size, rank + 2 * size, ..."""
        return list(items[self.rank :: self.size])


def env_world() -> World:
    """The world torchrun describes in the environment; the one-process World() without torchrun."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return World()
    return World(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))


def current_world() -> World:
    """The world of the process group this process has joined (by `session` or by the caller), else World()."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), env_world().local_rank)


@contextlib.contextmanager
def session(backend: str, *, timeout: timedelta | None = None) -> Iterator[World]:
    """Join torchrun's process group with `backend` ("nccl" for GPUs, "gloo" for CPUs) for the duration, binding
    this process to its GPU for NCCL; yield the World. Without torchrun (or with one process) yield World()."""
    world = env_world()
    if world.size == 1:
        yield World()
        return
    import torch.distributed as dist

    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend, timeout=timeout)
    try:
        yield World(dist.get_rank(), dist.get_world_size(), world.local_rank)
    finally:
        dist.destroy_process_group()


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


# --- collectives: every rank calls them at the same point, in the same order --------------------------------


def on_main(world: World, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and give every rank its result, or raise its exception on every rank, so that a
    decision about shared files (a run folder on rank 0's disk) is taken once and every rank acts on it alike."""
    if world.size == 1:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if world.is_main:
        try:
            box[0] = (fn(), None)
        except Exception as error:  # handed to every rank, raised there
            box[0] = (None, error)
    dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if error is not None:
        raise error
    return result


def gather(world: World, value: T) -> list[T]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if world.size == 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def mean_over_ranks(world: World, values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
    """The mean over the ranks of each value (a number or a one-element tensor on `device`), as floats."""
    if world.size == 1:
        return {key: float(value) for key, value in values.items()}
    import torch.distributed as dist

    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values.values()])
    dist.all_reduce(stacked)  # sum
    return dict(zip(values, (stacked / world.size).tolist()))


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one."""
    if world.size == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def data_parallel(module: nn.Module, world: World, device: torch.device) -> nn.Module:
    """`module` wrapped in DistributedDataParallel (gradients averaged over the ranks in backward), or `module`
    itself in a one-process world. The caller keeps the unwrapped module to save and validate."""
    if world.size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s data stream: `seed` itself for rank 0 (a one-process run draws what it always drew),
    a distant seed for the others."""
    return (seed + rank * 0x9E3779B97F4A7C15) % 2**64
