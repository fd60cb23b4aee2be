"""The inference side of the browser UI: models loaded once and cached, and one thread that runs the jobs in order.

One worker thread means one inference at a time (a model's memory and the CPU cores are not shared between two
images), while the server's own threads stay free to answer uploads and progress polls. The thread also sweeps
expired jobs, and it stops a running job between tiles when the job is removed or the app shuts down.
"""

from __future__ import annotations

import queue
import threading
import time

from torch import nn

from superres.imageio import read_picture, write_picture
from superres.inference import upscale_picture
from superres.optimize import PreparedModel
from superres.runtime import resolve_device, resolve_precision, tile_batch
from superres.serve.jobs import BROWSER_SUFFIXES, Job, JobStore
from superres.weights import load_model


class ModelCache:
    """Each model loaded on first use and kept, with its inference versions (`superres.optimize.PreparedModel`:
    16-bit pictures run in fp32 under `auto`); the device and precision are resolved once, up front."""

    def __init__(self, device: str = "auto", precision: str = "auto", sources: dict[str, str] | None = None) -> None:
        self.device = resolve_device(device)  # fails here, at start-up, for --device cuda without a GPU
        self.precision = precision
        self.sources = sources or {}  # menu name -> weights file, for model files outside the catalogue
        resolve_precision(precision, self.device)  # an unknown precision fails here, at start-up
        self._models: dict[str, PreparedModel] = {}
        self._lock = threading.Lock()

    def get(self, name: str, bit_depth: int = 8) -> nn.Module:
        with self._lock:
            if name not in self._models:
                self._models[name] = PreparedModel(load_model(self.sources.get(name, name)), device=self.device,
                                                   precision=self.precision)
            return self._models[name].for_picture(bit_depth)


class _Stopped(Exception):
    """Raised between tiles when the job was removed or the app is shutting down."""


class Worker:
    """A daemon thread that takes jobs from a queue, one at a time, and sweeps expired ones in between."""

    def __init__(self, store: JobStore, models: ModelCache, *, max_pixels: int, overlap: int = 32,
                 sweep_seconds: float = 30.0) -> None:
        self.store, self.models = store, models
        self.max_pixels, self.overlap, self.sweep_seconds = max_pixels, overlap, sweep_seconds
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="superres-serve-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current tile; queued jobs are dropped."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._queue.get(timeout=self.sweep_seconds)
            except queue.Empty:
                job = None
            if job is not None and self.store.start(job):
                self._run(job)
            self.store.sweep()

    def _run(self, job: Job) -> None:
        def on_tile(done: int, total: int) -> None:
            if job.cancelled or self._stopping.is_set():
                raise _Stopped
            job.tiles_done, job.tiles_total = done, total

        try:
            picture = read_picture(job.input_path, max_pixels=self.max_pixels)  # checked at upload already
            model = self.models.get(job.model, picture.bit_depth)
            job.scale = model.scale
            started = time.perf_counter()  # the time shown: upscaling and writing, not the first load of a model
            sr = upscale_picture(model, picture, tile=job.tile, overlap=self.overlap,
                                 batch=tile_batch(self.models.device), on_tile=on_tile, outscale=job.outscale)
            if job.cancelled or self._stopping.is_set():
                raise _Stopped
            result = job.folder / f"result{job.suffix}"
            write_picture(result, sr)
            after = result
            if job.suffix not in BROWSER_SUFFIXES:  # e.g. TIFF: the page shows a PNG copy, the download is TIFF
                after = job.folder / "after.png"
                write_picture(after, sr)
            job.result_path, job.after_path = result, after
            job.output_size = (sr.pixels.shape[-1], sr.pixels.shape[-2])
            job.seconds = time.perf_counter() - started
            self.store.finish(job)
        except _Stopped:
            self.store.finish(job, error="stopped")
        except MemoryError:
            self.store.finish(job, error="out of memory: try a smaller tile size or a smaller image")
        except Exception as error:  # the thread must outlive any one bad job; the page shows the line
            self.store.finish(job, error=job.user_message(error))
