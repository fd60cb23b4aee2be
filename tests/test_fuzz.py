"""Issue 7: fuzzing image decoding and `superres upscale` with Hypothesis.

Inputs are random bytes (some behind a real format signature) and small real images made here, PNG and JPEG
first, with bits flipped, the end cut off and bytes inserted. `read_picture` must return a valid Picture or raise
ImageFileError, nothing else; `superres upscale` must exit 0 with a valid output or 2 with one error line, never a
traceback. Derandomized (the same cases on every run, so CI is stable) and bounded: 230 cases in all.
"""

from __future__ import annotations

import contextlib
import gc
import io
import warnings

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from superres.cli import main
from superres.imageio import ImageFileError, Picture, read_picture

from corpus import exif_rotated_jpeg_bytes, jpeg_bytes, photo, png16_rgb_bytes, png_bytes


def _encoded(image: np.ndarray | Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(buffer, format=format, **options)
    return buffer.getvalue()


def _tiff16() -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, photo(10, 8, peak=65535), photometric="rgb")
    return buffer.getvalue()


# Small real files to mutate: PNG and JPEG in their common kinds, and one of each other format read.
SEEDS: dict[str, bytes] = {
    "rgb.png": png_bytes(photo(10, 8)),
    "rgba.png": png_bytes(photo(10, 8, channels=4)),
    "palette.png": _encoded(Image.fromarray(photo(10, 8)).quantize(8), "PNG"),
    "rgb16.png": png16_rgb_bytes(photo(10, 8, peak=65535)),
    "gray16.png": png_bytes(photo(10, 8, channels=1, peak=65535)[:, :, 0]),
    "rgb.jpg": jpeg_bytes(photo(16, 16)),
    "exif.jpg": exif_rotated_jpeg_bytes(),
    "gray.jpg": jpeg_bytes(photo(16, 16, channels=1)[:, :, 0]),
    "rgb16.tif": _tiff16(),
    "rgb.webp": _encoded(photo(10, 8), "WEBP", lossless=True),
    "rgb.bmp": _encoded(photo(10, 8), "BMP"),
}
SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM",
              b"RIFF\x00\x01\x00\x00WEBPVP8L"]


def fuzz(cases: int) -> settings:
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """(seed name, its bytes after 1 to 4 mutations), half of the positions in the first 64 bytes (the headers)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        end = len(data) - 1
        position = draw(st.one_of(st.integers(0, min(end, 63)), st.integers(0, end)))
        kind = draw(st.sampled_from(["flip", "truncate", "insert"]))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return name, bytes(data)


random_files = st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=1024)).map(
    lambda t: ("random.png", t[0] + t[1]))  # random bytes, some behind a real format's signature


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_picture(picture: Picture) -> None:
    assert isinstance(picture, Picture)
    channels, height, width = picture.pixels.shape
    assert channels in (1, 3) and height > 0 and width > 0 and picture.pixels.dtype == torch.float32
    for plane in (picture.pixels, picture.alpha):
        if plane is not None:
            assert torch.isfinite(plane).all() and plane.min() >= 0 and plane.max() <= 1
    assert picture.alpha is None or picture.alpha.shape == (1, height, width)


def read_or_refuse(path) -> Picture | None:
    try:
        picture = read_picture(path, max_pixels=1 << 20)
    except ImageFileError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return None
    check_picture(picture)
    return picture


@fuzz(110)
@given(case=mutated())
def test_read_picture_of_mutated_images(folder, case):
    name, data = case
    path = folder / f"mutated-{name}"
    path.write_bytes(data)
    read_or_refuse(path)


@fuzz(60)
@given(case=random_files)
def test_read_picture_of_random_bytes(folder, case):
    name, data = case
    path = folder / name
    path.write_bytes(data)
    read_or_refuse(path)


@fuzz(60)
@given(case=mutated())
def test_upscale_of_mutated_images(folder, case):
    name, data = case
    source, target = folder / f"in-{name}", folder / "out" / "sr.png"
    source.write_bytes(data)
    target.unlink(missing_ok=True)
    out, err = io.StringIO(), io.StringIO()
    gc.collect()  # so that files other tests left open are not reported as this run's warnings
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        code = main(["upscale", str(source), "-o", str(target), "--model", "bicubic", "--max-pixels", str(1 << 18)])
    assert [str(warning.message) for warning in w] == []  # a warning would be printed under the error line
    if code == 0:
        lq, sr = read_picture(source), read_picture(target)
        check_picture(sr)
        assert sr.pixels.shape[1:] == (lq.pixels.shape[1] * 4, lq.pixels.shape[2] * 4)
        assert err.getvalue() == ""
    else:
        assert code == 2, err.getvalue()
        message = err.getvalue()
        assert message.startswith("superres: error: ") and message.count("\n") == 1, message
        assert not target.exists() and out.getvalue() == ""
    assert not list((folder / "out").glob(".*"))  # no temporary file of the atomic writer left
