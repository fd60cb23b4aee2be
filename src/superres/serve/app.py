"""The HTTP side of the browser UI: routes over a JobStore and a Worker, built by `create_app(settings)`.

    GET    /                          the page (static/index.html; /static/ holds its script and style)
    GET    /api/config                the model menu with one line each, tile sizes, the limits
    POST   /api/jobs?name=&model=&tile=&outscale=   body: the image's bytes -> 202 job, 400 bad image or option,
                                      413 over the upload limit, 503 too many jobs kept
    GET    /api/jobs/{id}             state, tiles done of total, input and output sizes, seconds taken
    GET    /api/jobs/{id}/before      the input as a browser can show it
    GET    /api/jobs/{id}/after       the result as a browser can show it
    GET    /api/jobs/{id}/download    the result in the input's format
    DELETE /api/jobs/{id}             forget the job and delete its files

Errors are JSON `{"error": "one line"}`. The upload is the file's raw bytes rather than a multipart form, so they are
counted while they stream to disk and refused the moment they pass the limit, with no form parser and no spooled
copy. POST and DELETE need the header `X-Superres: 1`, which a page from another site cannot send without a CORS
preflight this app never grants; with the Host check (against DNS rebinding) that keeps other web sites out of a
loopback server.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from superres.imageio import ImageFileError
from superres.inference import check_outscale
from superres.serve.jobs import Job, JobLimitError, JobStore
from superres.serve.options import OUTSCALE_CHOICES, TILE_CHOICES, ServeSettings, model_choices
from superres.serve.worker import ModelCache, Worker
from superres.weights import DEFAULT_MODEL

STATIC_DIR = Path(__file__).parent / "static"
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_NO_STORE = {"Cache-Control": "no-store"}


class _TooLarge(Exception):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _host_name(header: str) -> str:
    """The host of a Host header without its port: `[::1]:7860` -> `[::1]`, `localhost:7860` -> `localhost`."""
    return header[: header.find("]") + 1] if header.startswith("[") else header.split(":")[0]


def _clean_name(name: str) -> str:
    """The uploaded file's base name without control characters, for messages and the download's name."""
    base = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return base[:255] or "image"


async def _receive(request: Request, path: Path, limit: int, name: str) -> int:
    """Stream the request body to `path`; raise _TooLarge as soon as it passes `limit` bytes."""
    size = 0
    with open(path, "wb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge(f"{name}: larger than the upload limit of {limit / 1e6:g} MB")
            file.write(chunk)
    return size


def _job_json(job: Job, store: JobStore) -> dict:
    base = f"/api/jobs/{job.id}"
    return {
        "id": job.id, "name": job.name, "model": job.model, "tile": job.tile or 0, "outscale": job.outscale or 0,
        "state": job.state, "ahead": store.ahead_of(job), "error": job.error,
        "tiles_done": job.tiles_done, "tiles_total": job.tiles_total,
        "input_size": list(job.input_size), "output_size": list(job.output_size) if job.output_size else None,
        "seconds": job.seconds, "download_name": job.download_name,
        "before_url": f"{base}/before", "after_url": f"{base}/after", "download_url": f"{base}/download",
    }


def create_app(settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The app with its own job store, model cache and worker thread; they start and stop with its lifespan."""
    choices = [*model_choices(), *settings.model_files]
    names = [c.name for c in choices]
    sources = {c.name: c.source for c in choices if c.source}
    store = JobStore(ttl_seconds=settings.ttl_seconds, max_jobs=settings.max_jobs)
    worker = Worker(store, ModelCache(settings.device, settings.precision, sources), max_pixels=settings.max_pixels,
                    overlap=settings.overlap)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()
            store.close()

    app = FastAPI(title="superres", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.worker, app.state.settings = store, worker, settings

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = _host_name(request.headers.get("host", ""))
        if settings.allowed_hosts is not None and host not in settings.allowed_hosts:
            return _error(400, f"unknown Host {host!r}: open the app at http://127.0.0.1 and its port")
        if request.method in ("POST", "DELETE") and request.headers.get("x-superres") != "1":
            return _error(403, "missing header X-Superres: 1 (requests from other web pages are refused)")
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_option(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        return _error(400, f"{first['loc'][-1]}: {first['msg']}")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_NO_STORE)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/config")
    def config() -> dict:
        return {
            "models": [{"name": c.name, "note": c.note} for c in choices],
            "default_model": DEFAULT_MODEL,
            "tiles": [*TILE_CHOICES, 0],
            "default_tile": settings.default_tile,
            "outscales": [0, *OUTSCALE_CHOICES],
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
        }

    @app.post("/api/jobs", status_code=202)
    async def create_job(request: Request, name: str = Query("image", max_length=1000),
                         model: str = Query(DEFAULT_MODEL), tile: int = Query(settings.default_tile),
                         outscale: float = Query(0)) -> Response:
        name = _clean_name(name)
        if model not in names:
            return _error(400, f"unknown model {model!r}; choose one of {', '.join(names)}")
        if tile != 0 and not 16 <= tile <= 4096:
            return _error(400, f"tile must be 0 (whole image) or 16 to 4096 input pixels, got {tile}")
        if outscale != 0:
            try:
                check_outscale(outscale)
            except ValueError as error:
                return _error(400, f"{error} (or 0: the model's own scale)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_upload_bytes:
            return _error(413, f"{name}: larger than the upload limit of {settings.max_upload_bytes / 1e6:g} MB")
        try:
            job_id, folder = store.reserve()
        except JobLimitError as error:
            return _error(503, str(error))
        try:
            if await _receive(request, folder / "upload", settings.max_upload_bytes, name) == 0:
                raise ImageFileError(f"{name}: empty file (0 bytes)")
            job = await run_in_threadpool(store.create, job_id, folder, folder / "upload", name=name, model=model,
                                          tile=tile or None, max_pixels=settings.max_pixels, outscale=outscale or None)
        except (_TooLarge, ImageFileError) as error:
            store.discard(folder)
            return _error(413 if isinstance(error, _TooLarge) else 400, str(error).splitlines()[0])
        except BaseException:
            store.discard(folder)
            raise
        worker.submit(job)
        return JSONResponse(_job_json(job, store), status_code=202)

    def _find(job_id: str) -> Job:
        job = store.get(job_id)
        if job is None:
            raise StarletteHTTPException(404, "no such job: it was removed or has expired")
        return job

    def _finished(job_id: str) -> Job:
        job = _find(job_id)
        if job.state != "done":
            raise StarletteHTTPException(409, f"job is {job.state}, there is no result yet" if job.state != "error"
                                         else f"job failed: {job.error}")
        return job

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        return _job_json(_find(job_id), store)

    @app.get("/api/jobs/{job_id}/before")
    def before(job_id: str) -> FileResponse:
        return FileResponse(_find(job_id).before_path, headers=_NO_STORE)

    @app.get("/api/jobs/{job_id}/after")
    def after(job_id: str) -> FileResponse:
        return FileResponse(_finished(job_id).after_path, headers=_NO_STORE)

    @app.get("/api/jobs/{job_id}/download")
    def download(job_id: str) -> FileResponse:
        job = _finished(job_id)
        return FileResponse(job.result_path, filename=job.download_name, headers=_NO_STORE)

    @app.delete("/api/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str) -> Response:
        if not store.remove(job_id):
            raise StarletteHTTPException(404, "no such job: it was removed or has expired")
        return Response(status_code=204)

    return app
