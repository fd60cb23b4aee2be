"""A corpus of awkward image files, made by the tests themselves (nothing binary is checked in).

`make(name, folder)` writes the corpus file `name` into `folder` and returns its path. Every builder is
independent of superres: files are written with Pillow, or byte by byte where Pillow cannot (16-bit RGB PNG, a
decompression bomb).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


def photo(width: int, height: int, channels: int = 3, seed: int = 0, peak: int = 255) -> np.ndarray:
    """(height, width, channels) smooth colours with a little noise, uint8 (or uint16 for peak 65535)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 7 + y * 5 + 60 * c) % 256 for c in range(channels)], axis=2) / 255
    values = np.clip(base + rng.uniform(-0.03, 0.03, base.shape), 0, 1) * peak
    return values.round().astype(np.uint16 if peak > 255 else np.uint8)


def png_bytes(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image | np.ndarray, **options) -> bytes:
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written byte by byte: IHDR with the given header, one IDAT of `rows` (already filtered), IEND."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def png16_rgb_bytes(samples: np.ndarray) -> bytes:
    """16-bit RGB PNG of (H, W, 3) uint16 samples, filter type 0 on every row."""
    height, width, _ = samples.shape
    rows = b"".join(b"\0" + row.tobytes() for row in samples.astype(">u2").reshape(height, -1))
    return raw_png(width, height, 16, 2, rows)


def exif_rotated_jpeg_bytes() -> bytes:
    """Stored 32 wide x 16 high, left half red, right half blue; EXIF orientation 6 (turn 90 degrees clockwise
    to display), so the upright picture is 16 wide x 32 high, red on top."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return jpeg_bytes(stored, exif=exif.tobytes())


def tiff16_with_a_broken_tag() -> bytes:
    """A 16-bit RGB TIFF whose ImageDescription tag has the invalid data type 0: the pixels are fine."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, photo(12, 10, peak=65535), photometric="rgb", description="made by tests/corpus.py")
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"II*\0"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, ifd)[0]):
        offset = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", data, offset)[0] == 270:  # ImageDescription
            struct.pack_into("<H", data, offset + 2, 0)
            return bytes(data)
    raise AssertionError("tifffile wrote no ImageDescription tag")


def png_with_broken_exif() -> bytes:
    """A good PNG with an eXIf chunk cut off inside its first IFD."""
    data = png_bytes(photo(12, 10))
    end = data.index(b"IEND") - 4
    return data[:end] + _chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\x05\x01\x12") + data[end:]


# name -> bytes of the file; each builder is cheap (tiny images).
BUILDERS: dict[str, Callable[[], bytes]] = {
    "zero-bytes.png": lambda: b"",
    "truncated.png": lambda: png_bytes(photo(64, 48))[:300],
    "truncated.jpg": lambda: jpeg_bytes(photo(64, 48))[:400],
    "text-named.png": lambda: b"this is a text file, not a picture\n",
    "one-pixel.png": lambda: png_bytes(photo(1, 1)),
    "odd-7x13.png": lambda: png_bytes(photo(7, 13)),
    "palette.png": lambda: _palette_png(),
    "palette-transparent.png": lambda: _palette_png(transparency=0),
    "cmyk.jpg": lambda: jpeg_bytes(Image.fromarray(photo(12, 10)).convert("CMYK")),
    "rgb16.png": lambda: png16_rgb_bytes(photo(12, 10, peak=65535)),
    "gray16.png": lambda: png_bytes(photo(12, 10, channels=1, peak=65535)[:, :, 0]),
    "rgba.png": lambda: png_bytes(photo(12, 10, channels=4)),
    "la.png": lambda: _la_png(),
    "gray.png": lambda: png_bytes(photo(12, 10, channels=1)[:, :, 0]),
    "exif-rotated.jpg": exif_rotated_jpeg_bytes,
    "png-named.jpg": lambda: png_bytes(photo(12, 10)),  # the content decides, not the suffix
    "broken-tag16.tif": tiff16_with_a_broken_tag,
    "broken-exif.png": png_with_broken_exif,
    "bomb.png": lambda: raw_png(40000, 40000, 8, 2, b"\0" * 64),  # 1.6 gigapixels declared, 100 bytes
}


def _palette_png(**options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(12, 10)).quantize(16).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _la_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(12, 10, channels=2), mode="LA").save(buffer, format="PNG")
    return buffer.getvalue()


def make(name: str, folder: Path) -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BUILDERS[name]())
    return path


def make_all(folder: Path) -> list[Path]:
    return [make(name, folder) for name in BUILDERS]
