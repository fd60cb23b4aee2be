"""The browser UI (`superres serve`): its HTTP API in-process, the CLI around it, and the page in a real browser."""

from __future__ import annotations

import base64
import io
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from superres.cli import main  # noqa: E402
from superres.serve import ServeSettings, create_app  # noqa: E402
from superres.serve.jobs import JobStore  # noqa: E402
from superres.serve.worker import ModelCache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WRITE = {"X-Superres": "1"}


def image_bytes(size=(20, 12), image_format="PNG", mode="RGB") -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, image_format)
    return buffer.getvalue()


@pytest.fixture
def client():
    settings = ServeSettings(max_upload_bytes=200_000, max_pixels=10_000, device="cpu")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def upload(client, data, name="photo.png", model="bicubic", tile=0, headers=WRITE, outscale=0):
    params = {"name": name, "model": model, "tile": tile, "outscale": outscale}
    return client.post("/api/jobs", params=params, content=data, headers=headers)


def finished(client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def job_folders(client) -> list[Path]:
    return sorted(client.app.state.store.root.iterdir())


# ---------------------------------------------------------------------------------------------------- API
def test_bicubic_job_gives_four_times_the_size(client):
    response = upload(client, image_bytes((20, 12)), name="photo.png")
    assert response.status_code == 202, response.text
    job = finished(client, response.json()["id"])
    assert job["state"] == "done" and job["input_size"] == [20, 12] and job["output_size"] == [80, 48]
    assert job["seconds"] >= 0 and job["tiles_done"] == job["tiles_total"] == 1
    download = client.get(job["download_url"])
    assert download.status_code == 200 and 'filename="photo_x4.png"' in download.headers["content-disposition"]
    assert Image.open(io.BytesIO(download.content)).size == (80, 48)
    assert Image.open(io.BytesIO(client.get(job["before_url"]).content)).size == (20, 12)
    assert Image.open(io.BytesIO(client.get(job["after_url"]).content)).size == (80, 48)


@pytest.mark.parametrize("name, image_format, shown", [("scan.jpeg", "JPEG", "JPEG"), ("scan.tif", "TIFF", "PNG"),
                                                        ("no_suffix", "WEBP", "WEBP")])
def test_result_keeps_the_input_format(client, name, image_format, shown):
    job = finished(client, upload(client, image_bytes(image_format=image_format), name=name).json()["id"])
    result = Image.open(io.BytesIO(client.get(job["download_url"]).content))
    assert result.format == image_format and result.size == (80, 48)
    assert job["download_name"].startswith(Path(name).stem + "_x4.")
    assert Image.open(io.BytesIO(client.get(job["after_url"]).content)).format == shown  # what <img> can show
    assert Image.open(io.BytesIO(client.get(job["before_url"]).content)).format == shown


def test_progress_counts_tiles(client):
    job = finished(client, upload(client, image_bytes((64, 40)), tile=16).json()["id"])
    assert job["state"] == "done" and job["tiles_done"] == job["tiles_total"] == 4 * 3


def test_bad_files_give_one_line_and_the_app_keeps_working(client):
    good = image_bytes()
    for data, name, expected in [
        (b"not an image at all", "broken.png", "broken.png: not an image file (cannot identify format)"),
        (good[: len(good) // 2], "cut.png", "cut.png: cannot decode image data"),
        (b"", "empty.png", "empty.png: empty file (0 bytes)"),
    ]:
        response = upload(client, data, name=name)
        assert response.status_code == 400
        assert response.json()["error"].startswith(expected) and "\n" not in response.json()["error"]
        assert str(client.app.state.store.root) not in response.json()["error"]  # no server paths in messages
    assert job_folders(client) == []  # refused uploads leave nothing behind
    job = finished(client, upload(client, good).json()["id"])
    assert job["state"] == "done" and len(job_folders(client)) == 1


def test_oversize_upload_is_refused(client):
    too_big = b"\0" * 200_001
    response = upload(client, too_big, name="huge.png")
    assert response.status_code == 413
    assert response.json()["error"] == "huge.png: larger than the upload limit of 0.2 MB"
    streamed = upload(client, iter([too_big[:100_000], too_big[100_000:]]), name="huge.png")  # no Content-Length
    assert streamed.status_code == 413 and "upload limit" in streamed.json()["error"]
    assert job_folders(client) == []


def test_too_many_pixels_is_refused(client):
    response = upload(client, image_bytes((200, 100)), name="wide.png")
    assert response.status_code == 400
    assert response.json()["error"] == "wide.png: image is 200x100 (0.0 MP), over the limit of 0.01 MP"


def test_jobs_are_reachable_only_by_their_random_id(client):
    first, second = (upload(client, image_bytes()).json()["id"] for _ in range(2))
    assert first != second and len(first) == 22
    finished(client, first)
    guessed = first[:-1] + ("A" if first[-1] != "A" else "B")
    for path in (guessed, f"{guessed}/download", f"{guessed}/before", "..%2F..%2Fetc%2Fpasswd", "0", "1/download"):
        response = client.get(f"/api/jobs/{path}")
        assert response.status_code == 404 and "error" in response.json()


def test_options_and_origins_are_checked(client):
    assert upload(client, image_bytes(), model="../../weights.safetensors").json()["error"].startswith("unknown model")
    assert upload(client, image_bytes(), tile=5).status_code == 400
    assert upload(client, image_bytes(), headers={}).status_code == 403  # another site's page cannot set the header
    other_host = client.get("/api/config", headers={"Host": "attacker.example"})
    assert other_host.status_code == 400 and "unknown Host" in other_host.json()["error"]
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    names = [m["name"] for m in client.get("/api/config").json()["models"]]
    assert {"rescnn", "cnn", "gan", "bicubic"} <= set(names)


def test_temporary_files_are_deleted():
    app = create_app(ServeSettings(device="cpu"))
    root = app.state.store.root
    with TestClient(app, base_url="http://127.0.0.1") as client:
        job = finished(client, upload(client, image_bytes()).json()["id"])
        folder = root / job["id"]
        assert folder.is_dir()
        assert client.delete(f"/api/jobs/{job['id']}", headers=WRITE).status_code == 204
        assert not folder.exists() and client.get(f"/api/jobs/{job['id']}").status_code == 404
        finished(client, upload(client, image_bytes()).json()["id"])
        assert len(list(root.iterdir())) == 1
    assert not root.exists()  # the app has shut down: its whole temporary folder is gone


def test_finished_jobs_expire():
    now = [0.0]
    store = JobStore(ttl_seconds=60, max_jobs=4, clock=lambda: now[0])
    job_id, folder = store.reserve()
    (folder / "upload").write_bytes(image_bytes())
    job = store.create(job_id, folder, folder / "upload", name="a.png", model="bicubic", tile=None, max_pixels=10_000)
    assert store.start(job)
    store.finish(job)
    now[0] = 59.0
    assert store.sweep() == 0 and store.get(job_id) is job  # looking at it restarts its clock
    now[0] = 118.0
    assert store.sweep() == 0
    now[0] = 119.0
    assert store.sweep() == 1 and not folder.exists() and store.get(job_id) is None
    store.close()
    assert not store.root.exists()


def test_outscale_gives_any_output_size(client):
    assert client.get("/api/config").json()["outscales"][0] == 0  # 0: the model's own scale
    job = finished(client, upload(client, image_bytes((20, 12)), name="photo.png", outscale=1.5).json()["id"])
    assert job["state"] == "done" and job["output_size"] == [30, 18] and job["download_name"] == "photo_x1.5.png"
    assert Image.open(io.BytesIO(client.get(job["download_url"]).content)).size == (30, 18)
    refused = upload(client, image_bytes(), outscale=-2)
    assert refused.status_code == 400 and refused.json()["error"].startswith("outscale must be a number over 0")


def test_models_dir_adds_model_files_to_the_menu(tmp_path):
    pytest.importorskip("spandrel", reason="spandrel is not installed")
    import torch
    from spandrel.architectures.Compact import Compact

    from superres.serve.options import model_file_choices

    torch.manual_seed(0)
    torch.save({"params": Compact(num_feat=8, num_conv=2, upscale=2).state_dict()}, tmp_path / "compact-x2.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a model")
    (tmp_path / "notes.txt").write_text("not a model file, not even tried")
    choices, problems = model_file_choices(tmp_path)
    assert [c.name for c in choices] == ["compact-x2.pth"] and "RealESRGAN Compact x2" in choices[0].note
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'broken.pth'}: not a loadable .pth file")
    settings = ServeSettings(max_pixels=10_000, device="cpu", model_files=tuple(choices))
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert "compact-x2.pth" in [m["name"] for m in client.get("/api/config").json()["models"]]
        job = finished(client, upload(client, image_bytes((20, 12)), model="compact-x2.pth").json()["id"])
        assert job["state"] == "done" and job["output_size"] == [40, 24], job
        assert job["download_name"] == "photo_x2.png"


def test_models_are_loaded_once():
    cache = ModelCache("cpu")
    assert cache.get("bicubic") is cache.get("bicubic")


# ---------------------------------------------------------------------------------------------------- CLI
def test_serve_without_its_packages_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "superres[serve]"' in err


def test_serve_warns_when_not_on_loopback(monkeypatch, capsys):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "warning: --host 0.0.0.0 is not loopback" in err and "open http://127.0.0.1:" in out
    assert main(["serve", "--port", "0", "--device", "cpu"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_serve_models_dir_warns_about_unusable_files(monkeypatch, capsys, tmp_path):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    (tmp_path / "broken.safetensors").write_bytes(b"not a model")
    assert main(["serve", "--port", "0", "--device", "cpu", "--models-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"superres: warning: left out of the menu: {tmp_path / 'broken.safetensors'}: ")
    assert main(["serve", "--port", "0", "--models-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"superres: error: {tmp_path / 'none'}: no such folder\n"


# ---------------------------------------------------------------------------------------------------- browser
@pytest.fixture
def live_url():
    """The real app under uvicorn on a free loopback port, in a thread of this process."""
    import uvicorn

    app = create_app(ServeSettings(device="cpu"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)
    sock.close()


def real_photo() -> Path:
    shared = ROOT.parent / "shared" / "data" / "benchmarks" / "set5" / "LR_bicubic" / "X4" / "img_003.png"
    return shared if shared.is_file() else ROOT / "examples" / "tiger_small.jpg"


def test_browser_upscale_compare_download(live_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    expect = sync_api.expect
    photo = real_photo()
    with Image.open(photo) as source:
        (width, height), kept_format = source.size, source.format  # the result keeps the input's format
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("request", lambda r: None if r.url.startswith(live_url) else problems.append(f"fetched {r.url}"))
        page.goto(live_url)
        expect(page.locator("#model")).to_have_value("rescnn")
        expect(page.locator("#model-note")).to_contain_text("for any photo")

        page.set_input_files("#file", str(photo))
        for count, model in enumerate(("bicubic", "cnn"), start=1):
            page.select_option("#model", model)
            page.click("#go")
            expect(page.locator(".job.done")).to_have_count(count, timeout=120_000)
            sizes = f"{width}\u00d7{height} \u2192 {width * 4}\u00d7{height * 4}"
            expect(page.locator("#view-info")).to_contain_text(sizes)
            expect(page.locator("#view-info")).to_contain_text(model)
            with page.expect_download() as download_info:
                page.click("#download")
            saved = tmp_path / f"{model}_{download_info.value.suggested_filename}"
            download_info.value.save_as(saved)
            with Image.open(saved) as result:
                assert result.size == (width * 4, height * 4) and result.format == kept_format
        expect(page.locator("#after-img")).to_have_js_property("naturalWidth", width * 4)

        page.locator("#split").fill("25")
        assert page.eval_on_selector("#compare", "c => c.style.getPropertyValue('--split')") == "25%"
        page.check("#pixelated")
        expect(page.locator("#before-img")).to_have_class("pixelated")
        page.click("#zoom-1")
        assert page.eval_on_selector("#compare", "c => c.getBoundingClientRect().width") == width * 4
        page.click("#zoom-fit")
        page.screenshot(path=str(tmp_path / "page.png"))
        with Image.open(tmp_path / "page.png") as screenshot:
            assert screenshot.size == (1280, 800)

        broken = base64.b64encode(b"this is not an image").decode()  # dropped, as from a file manager
        page.evaluate("""([name, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            const drop = new DragEvent("drop", { dataTransfer: transfer, bubbles: true });
            document.getElementById("drop").dispatchEvent(drop);
        }""", ["broken.png", broken])
        expect(page.locator("#picked")).to_contain_text("broken.png")
        page.click("#go")
        expect(page.locator(".job.error")).to_contain_text("broken.png: not an image file (cannot identify format)")

        page.set_input_files("#file", str(photo))  # and the app keeps working
        page.select_option("#model", "bicubic")
        page.click("#go")
        expect(page.locator(".job.done")).to_have_count(3, timeout=60_000)

        page.select_option("#outscale", "2")  # the output size: the model's x4, then resized to twice the input
        page.click("#go")
        expect(page.locator(".job.done")).to_have_count(4, timeout=60_000)
        expect(page.locator("#view-info")).to_contain_text(f"\u2192 {width * 2}\u00d7{height * 2}")
        browser.close()
    assert problems == []
