"""Atomic file writes: a hidden temporary file beside the target, flushed to disk, then renamed over it, so a
reader (or a crash) never sees half a file and a failure leaves nothing behind."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temporary file in `path`'s folder, then rename it to `path`."""
    path = Path(path)
    temporary = path.parent / f".{path.name}.partial-{secrets.token_hex(4)}{path.suffix}"
    try:
        with open(temporary, "xb") as file:  # exclusive create, the usual permissions
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write` of UTF-8 text; creates missing parent folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))
