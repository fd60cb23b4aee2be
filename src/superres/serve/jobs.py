"""Jobs of the browser UI: one per uploaded image, each with a random id and its own folder.

No request sees another's files: ids are 128 random bits (`secrets.token_urlsafe`), a job's files live only in its
own folder under fixed names (never a name from the request), and they are reached only through the job's id. All
folders sit in one app-level `tempfile.TemporaryDirectory`. A job is deleted when the page removes it, after
`ttl_seconds` without being looked at once it has finished, and with everything else when the store closes.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from superres.imageio import ImageFileError, read_picture, write_picture

JobState = Literal["queued", "running", "done", "error"]

BROWSER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})  # shown by <img> as they are
_FORMAT_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                   ".tiff": "TIFF", ".bmp": "BMP"}
_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # token_urlsafe(16)


class JobLimitError(Exception):
    """Too many jobs are kept at once; the message is one line."""


@dataclass(eq=False)
class Job:
    """One upload and what became of it. The worker thread updates state and progress; requests read them."""

    id: str
    folder: Path
    name: str  # the uploaded file's name: shown, and the stem of the download's name; never a path here
    model: str
    tile: int | None
    input_path: Path
    input_size: tuple[int, int]  # (width, height)
    suffix: str  # of the input and the result: the input's format
    before_path: Path  # what the page shows as "before": the upload, or a PNG of it for TIFF and the like
    outscale: float | None = None  # output size / input size; None: the model's scale
    scale: int = 4  # the model's, once the worker has loaded it
    state: JobState = "queued"
    tiles_done: int = 0
    tiles_total: int = 0
    error: str | None = None
    result_path: Path | None = None
    after_path: Path | None = None
    output_size: tuple[int, int] | None = None
    seconds: float | None = None
    cancelled: bool = False
    touched: float = field(default_factory=time.monotonic)

    @property
    def download_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", Path(self.name).stem).strip(" .") or "image"
        return f"{stem[:100]}_x{self.outscale or self.scale:g}{self.suffix}"

    def user_message(self, error: BaseException) -> str:
        """One line, with this job's temporary paths replaced by the uploaded file's name."""
        lines = str(error).strip().splitlines()
        text = lines[0] if lines else type(error).__name__
        return text.replace(str(self.input_path), self.name).replace(f"{self.folder}/", "")


class JobStore:
    """Job folders under one temporary folder, the jobs by id, and their expiry. Thread-safe."""

    def __init__(self, *, ttl_seconds: float, max_jobs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._temporary = tempfile.TemporaryDirectory(prefix="superres-serve-", ignore_cleanup_errors=True)
        self.root = Path(self._temporary.name)
        self.ttl_seconds, self.max_jobs, self._clock = ttl_seconds, max_jobs, clock
        self._jobs: dict[str, Job] = {}
        self._reserved = 0
        self._lock = threading.Lock()

    def reserve(self) -> tuple[str, Path]:
        """A fresh id and an empty folder for an upload about to stream in; give it back with `discard`."""
        with self._lock:
            if len(self._jobs) + self._reserved >= self.max_jobs:
                raise JobLimitError(f"the server keeps at most {self.max_jobs} jobs: remove some results or wait")
            self._reserved += 1
        job_id = secrets.token_urlsafe(16)
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        return job_id, folder

    def discard(self, folder: Path) -> None:
        """Delete a reserved folder whose upload was refused."""
        shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._reserved -= 1

    def create(self, job_id: str, folder: Path, upload: Path, *, name: str, model: str, tile: int | None,
               max_pixels: int, outscale: float | None = None) -> Job:
        """Check a finished upload (size from the header, then every pixel decoded) and register its job.
        Raises ImageFileError, with the uploaded name in its message, for a file that is not a usable image."""
        try:
            picture = read_picture(upload, max_pixels=max_pixels)
        except ImageFileError as error:
            raise ImageFileError(str(error).replace(str(upload), name)) from None
        given = Path(name).suffix.lower()
        suffix = given if _SUFFIX_FORMATS.get(given) == picture.format else _FORMAT_SUFFIXES.get(picture.format, ".png")
        input_path = upload.rename(folder / f"input{suffix}")
        before_path = input_path
        if suffix not in BROWSER_SUFFIXES:
            before_path = folder / "before.png"
            write_picture(before_path, picture)
        height, width = picture.pixels.shape[-2:]
        job = Job(job_id, folder, name, model, tile, input_path, (width, height), suffix, before_path,
                  outscale=outscale, touched=self._clock())
        with self._lock:
            self._reserved -= 1
            self._jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id (and it counts as looked at), or None."""
        if not _ID.match(job_id):
            return None
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.touched = self._clock()
            return job

    def ahead_of(self, job: Job) -> int:
        """How many jobs wait or run before this queued one."""
        with self._lock:
            if job.state != "queued":
                return 0
            ahead = 0
            for other in self._jobs.values():  # in upload order
                if other is job:
                    return ahead
                ahead += other.state in ("queued", "running")
            return ahead

    def start(self, job: Job) -> bool:
        """Mark a job running; False when it was removed while it waited."""
        with self._lock:
            if job.cancelled:
                return False
            job.state = "running"
            return True

    def finish(self, job: Job, *, error: str | None = None) -> None:
        """Mark a running job done (or failed); delete its folder if it was removed while it ran."""
        with self._lock:
            job.state, job.error, job.touched = ("error" if error else "done"), error, self._clock()
            removed = job.cancelled
        if removed:
            shutil.rmtree(job.folder, ignore_errors=True)

    def remove(self, job_id: str) -> bool:
        """Forget a job and delete its files (a running job's, once the worker lets go of them)."""
        if not _ID.match(job_id):
            return False
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancelled = True
            running = job.state == "running"
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def sweep(self) -> int:
        """Remove finished jobs not looked at for `ttl_seconds`; how many were removed."""
        now = self._clock()
        with self._lock:
            expired = [j.id for j in self._jobs.values()
                       if j.state in ("done", "error") and now - j.touched >= self.ttl_seconds]
        return sum(self.remove(job_id) for job_id in expired)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def close(self) -> None:
        """Forget every job and delete the whole temporary folder."""
        with self._lock:
            for job in self._jobs.values():
                job.cancelled = True
            self._jobs.clear()
        self._temporary.cleanup()
