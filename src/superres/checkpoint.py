"""Resumable training state, written atomically, loaded safely.

`save_checkpoint(path, state)` writes `path` so that a crash at any moment leaves a complete file behind: the new
state goes to a temporary file in the same folder (flushed and fsynced), the current `path` is kept as
`<stem>.prev<suffix>` (e.g. last.pt -> last.prev.pt), and only then does os.replace move the new file into place.

`load_checkpoint(path)` reads with `torch.load(weights_only=True)`, so a checkpoint holds only tensors and plain
Python values (the trainer stores RNG states as tensors and the config as a TOML string). A truncated or corrupt
file raises CheckpointError, or, with `fallback=True` (the default), the previous checkpoint is loaded instead and
the returned `LoadedCheckpoint.skipped` says which file was skipped and why.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORMAT = "superres-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, or not a superres checkpoint."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    state: dict[str, Any]
    path: Path  # the file actually loaded
    skipped: tuple[str, ...] = ()  # one message per newer file that could not be loaded


def previous_path(path: str | Path) -> Path:
    """last.pt -> last.prev.pt: where save_checkpoint keeps the previous good checkpoint."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` (tensors and plain values only) to `path`, keeping the previous file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            keep_copy(path, previous_path(path))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def keep_copy(src: Path, dst: Path) -> None:
    """Atomically make `dst` a copy of `src` (a hard link where the file system allows) while `src` stays."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the file itself is already fsynced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint file or raise CheckpointError saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: {error})".strip()
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    return state


def load_checkpoint(
    path: str | Path, *, fallback: bool = True, map_location: str | torch.device = "cpu"
) -> LoadedCheckpoint:
    """Load `path`; if it is damaged (or missing) and `fallback`, load the previous checkpoint instead.
    Raises CheckpointError when no good checkpoint is left."""
    candidates = [Path(path), previous_path(path)] if fallback else [Path(path)]
    skipped: list[str] = []
    for candidate in candidates:
        try:
            return LoadedCheckpoint(read_checkpoint(candidate, map_location), candidate, tuple(skipped))
        except CheckpointError as error:
            skipped.append(str(error))
    raise CheckpointError("no usable checkpoint: " + "; ".join(skipped))
