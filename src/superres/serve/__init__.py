"""The browser UI of `superres serve`: a small FastAPI app with one static page, served by uvicorn on loopback.

Why FastAPI + uvicorn + one hand-written page rather than Gradio: three small dependencies instead of hundreds of
megabytes; no CDN, analytics or telemetry (the page loads nothing from the network, and its Content-Security-Policy
forbids it); and full control of the limits that matter on a shared machine: upload bytes are counted while they
stream in, pixel counts are checked from the header before decoding, every job gets a random id and its own
temporary folder, and one worker thread runs inference so the server stays responsive.

Modules: `options` (settings and the model menu), `jobs` (job folders, ids, expiry), `worker` (the model cache and
the inference thread), `app` (the HTTP routes), `static/` (index.html, app.js, style.css).
"""

from superres.serve.app import create_app
from superres.serve.options import ServeSettings, model_choices

__all__ = ["ServeSettings", "create_app", "model_choices"]
