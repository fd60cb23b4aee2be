"""Screenshots of the browser UI for the README: the page with a photo chosen, and the before/after view once the
photo is upscaled. Starts `superres serve --port 0` and drives Debian's chromium with Playwright.

    python3 tools/serve_screenshots.py [--photo examples/tiger_small.jpg] [--model rescnn] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_BYTES = 500_000


def start_server() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen([sys.executable, "-m", "superres", "serve", "--port", "0", "--device", "cpu"],
                              stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    line = server.stdout.readline()
    match = re.search(r"http://\S+/", line)
    if match is None:
        server.kill()
        raise SystemExit(f"superres serve did not start: {line!r}")
    return server, match.group(0)


def save_small(page, path: Path) -> None:
    """A 1280x800 screenshot; quantized to 256 colours if the full-colour PNG is over MAX_BYTES."""
    page.screenshot(path=str(path))
    if path.stat().st_size > MAX_BYTES:
        Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default=str(ROOT / "examples" / "tiger_small.jpg"))
    parser.add_argument("--model", default="rescnn")
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = parser.parse_args()
    out = Path(args.out)
    server, url = start_server()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.select_option("#model", args.model)
            page.set_input_files("#file", args.photo)
            save_small(page, out / "serve_before.png")
            page.click("#go")
            expect(page.locator(".job.done")).to_have_count(1, timeout=600_000)
            expect(page.locator("#after-img")).to_have_js_property("complete", True)
            page.locator("#split").fill("45")
            save_small(page, out / "serve_after.png")
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)


if __name__ == "__main__":
    main()
