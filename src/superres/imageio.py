"""Image files in and out: the only module of superres that opens or writes them.

Reading applies the EXIF orientation, so pixels come out upright; grayscale stays one channel in `Picture`
and is replicated to RGB by `read_rgb_u8` / `read_rgb`; palette and CMYK images become RGB; alpha is kept in
`Picture.alpha` and dropped elsewhere. 16-bit PNG and TIFF keep their 16 bits in `Picture`. Every problem with
a file raises `ImageFileError` with one line that names the file. Writes are atomic: a hidden temporary file in
the same folder, renamed over the target once complete.

Pillow decodes 16-bit RGB(A) PNG to 8 bits; `_png16_samples` recovers the low bytes by decoding a second time
with Pillow's little-endian unpacker, so both halves come from Pillow's own (C) PNG decoder. 16-bit RGB(A) PNG
is written by the small zlib writer `_write_png16`, 16-bit colour TIFF is read and all TIFF is written with
tifffile.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import tifffile
import torch
from PIL import Image

from superres.files import atomic_write

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"})
DEFAULT_MAX_PIXELS: int = 100_000_000

_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                  ".tiff": "TIFF", ".bmp": "BMP"}
_ORIENTATION_TAG = 0x0112
_ICC_TAG = 34675
_PILLOW_LIMIT_LOCK = threading.Lock()
# tifffile logs every damaged tag it skips. Without a handler of the application's, Python would print those
# records on stderr (logging.lastResort); the one line of an ImageFileError, or a picture read anyway, is enough.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


class ImageFileError(Exception):
    """A file could not be read or written as an image; the message is one line naming the file."""


@dataclass(frozen=True, eq=False)
class Picture:
    """A decoded image with what it takes to write it back faithfully."""

    pixels: torch.Tensor  # (C, H, W) float32 in [0, 1]; C = 1 (grayscale) or 3 (RGB)
    alpha: torch.Tensor | None = None  # (1, H, W) float32 in [0, 1]
    bit_depth: int = 8  # 8 or 16: the precision of the source, and of the output where the format allows
    format: str = "PNG"  # Pillow's name for the source format: "PNG", "JPEG", "WEBP", "TIFF", "BMP"
    icc_profile: bytes | None = None

    def __post_init__(self):
        if self.pixels.ndim != 3 or self.pixels.shape[0] not in (1, 3) or not self.pixels.is_floating_point():
            raise ValueError(f"pixels must be a float (1|3, H, W) tensor, got {tuple(self.pixels.shape)} "
                             f"{self.pixels.dtype}")
        if self.alpha is not None and (self.alpha.shape != (1, *self.pixels.shape[1:])
                                       or not self.alpha.is_floating_point()):
            raise ValueError(f"alpha must be a float (1, H, W) tensor matching pixels "
                             f"{tuple(self.pixels.shape)}, got {tuple(self.alpha.shape)} {self.alpha.dtype}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")


# ---------------------------------------------------------------- paths


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the suffix is one of IMAGE_SUFFIXES (any case); the file itself is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted, chosen by suffix; hidden files and hidden folders are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFileError(f"{folder}: not a folder")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        found += [Path(root, f) for f in files if not f.startswith(".") and is_image_path(f)]
    return sorted(found)


# ---------------------------------------------------------------- reading


def read_rgb_u8(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright; grayscale replicated, 16-bit rounded to 8 bits, alpha dropped."""
    pixels, _, _, _ = _decode(Path(path), max_pixels)
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.require(pixels, requirements=("C", "W"))  # contiguous and writable (torch.from_numpy wants both)


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]: exactly read_rgb_u8(path) / 255."""
    return torch.from_numpy(read_rgb_u8(path, max_pixels)).permute(2, 0, 1).float().div_(255)


def read_picture(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Everything `write_picture` needs to write the image back: channels, alpha, 16 bits, ICC profile."""
    pixels, alpha, image_format, icc_profile = _decode(Path(path), max_pixels)
    return Picture(pixels=_to_tensor(pixels), alpha=None if alpha is None else _to_tensor(alpha),
                   bit_depth=16 if pixels.dtype == np.uint16 else 8, format=image_format,
                   icc_profile=icc_profile)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    peak = 65535.0 if array.dtype == np.uint16 else 255.0
    return torch.from_numpy(array.astype(np.float32) / peak).permute(2, 0, 1).contiguous()  # (C, H, W)


def _decode(path: Path, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, str, bytes | None]:
    """(pixels (H, W, 1|3), alpha (H, W, 1) or None, format, ICC profile); uint8 or uint16, upright."""
    if not path.exists():
        raise ImageFileError(f"{path}: no such file")
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path}: empty file (0 bytes)")
    try:
        try:
            pixels, alpha, image_format, icc_profile, orientation = _decode_file(path, max_pixels)
        except Image.DecompressionBombError:  # over Pillow's own limit: read the size ourselves, then decide
            with _pillow_limit_lifted():
                pixels, alpha, image_format, icc_profile, orientation = _decode_file(path, max_pixels)
    except ImageFileError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image file (cannot identify format)") from None
    except PermissionError:
        raise ImageFileError(f"{path}: cannot read (permission denied)") from None
    except MemoryError:
        raise
    except Exception as error:  # Pillow and tifffile raise OSError, SyntaxError, ValueError, KeyError, ...
        raise ImageFileError(f"{path}: cannot decode image data ({_one_line(error)})") from error
    if icc_profile is not None and _icc_colour_space(icc_profile) != _icc_colour_space_for(pixels.shape[2]):
        icc_profile = None  # e.g. the CMYK profile of a CMYK JPEG no longer describes its RGB pixels
    alpha = None if alpha is None else _orient(alpha, orientation)
    return _orient(pixels, orientation), alpha, image_format, icc_profile


def _decode_file(path: Path, max_pixels: int):
    tiff_header = _read_tiff_header(path)
    if tiff_header is not None and tiff_header.bitspersample > 8 and tiff_header.samplesperpixel > 1:
        try:
            return _decode_wide_tiff(path, tiff_header, max_pixels)  # Pillow would cut it to 8 bits
        except ImageFileError:
            raise
        except Exception:  # e.g. LZW needs the optional imagecodecs: Pillow can still read it at 8 bits
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own max_pixels
        warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data", "Truncated File Read": metadata we skip
        with Image.open(path) as image:
            _check_size(path, *image.size, max_pixels)
            pixels, alpha = _pixels_of(image, path)  # first: PNG's getexif() would decode at 8 bits
            image_format = "JPEG" if image.format == "MPO" else image.format
            icc_profile = image.info.get("icc_profile") or None
            orientation = _exif_orientation(image)
    return pixels, alpha, image_format, icc_profile, orientation


def _pixels_of(image: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode every pixel (a truncated file fails here) into (H, W, 1|3) and alpha (H, W, 1) or None."""
    if image.format == "PNG" and _tile_rawmode(image) in ("RGB;16B", "RGBA;16B", "LA;16B"):
        samples = _png16_samples(image, path)  # (H, W, 2|3|4) uint16
    else:
        image.load()
        mode = image.mode
        if mode in ("P", "PA"):
            image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
        elif mode == "1":
            image = image.convert("L")
        elif mode.startswith("I"):  # I;16, I;16B, I (32-bit int holding 16-bit values)
            return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)[:, :, None], None
        elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, ...
            image = image.convert("RGB")
        samples = np.asarray(image)
        if samples.ndim == 2:
            samples = samples[:, :, None]
    has_alpha = samples.shape[2] in (2, 4)
    return (samples[:, :, :-1], samples[:, :, -1:]) if has_alpha else (samples, None)


def _tile_rawmode(image: Image.Image) -> str | None:
    if len(image.tile) != 1:
        return None
    args = image.tile[0][3]
    return args if isinstance(args, str) else args[0] if args else None


def _png16_samples(image: Image.Image, path: Path) -> np.ndarray:
    """16-bit samples of an RGB, RGBA or gray+alpha PNG: the high bytes as Pillow gives them, the low bytes
    from a second decode that tells Pillow's unpacker the samples are little-endian."""
    rawmode = _tile_rawmode(image)
    if rawmode == "LA;16B":  # 4 bytes a pixel, as 8-bit RGBA has: decode raw bytes (L hi, L lo, A hi, A lo)
        raw = _decode_png_as(path, "RGBA").astype(np.uint16)
        return (raw[:, :, 0::2] << 8) | raw[:, :, 1::2]
    image.load()
    high = np.asarray(image).astype(np.uint16)
    low = _decode_png_as(path, rawmode.replace("16B", "16L"))
    return (high << 8) | low


def _decode_png_as(path: Path, rawmode: str) -> np.ndarray:
    with Image.open(path) as image:
        image.tile = [tile._replace(args=rawmode) if hasattr(tile, "_replace") else (*tile[:3], rawmode)
                      for tile in image.tile]
        image.load()
        return np.asarray(image)


def _read_tiff_header(path: Path):
    """The first page of a TIFF file (lazy, no pixels read), or None when the file is not a TIFF."""
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            return tiff.pages[0]
    except Exception:  # let Pillow read it, or say what is wrong with it
        return None


def _decode_wide_tiff(path: Path, page, max_pixels: int):
    """16-bit colour or alpha TIFF through tifffile."""
    _check_size(path, page.imagewidth, page.imagelength, max_pixels)
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        samples = page.asarray()
        orientation = page.tags.valueof(_ORIENTATION_TAG, 1)
        icc_profile = page.tags.valueof(_ICC_TAG)
        axes = page.axes
    if axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    elif axes != "YXS":
        raise ImageFileError(f"{path}: unsupported TIFF layout (axes {axes})")
    if samples.dtype != np.uint16 or samples.shape[2] > 4:
        raise ImageFileError(f"{path}: unsupported TIFF samples ({samples.shape[2]} x {samples.dtype})")
    has_alpha = samples.shape[2] in (2, 4)
    pixels, alpha = (samples[:, :, :-1], samples[:, :, -1:]) if has_alpha else (samples, None)
    return pixels, alpha, "TIFF", bytes(icc_profile) if icc_profile else None, orientation


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageFileError(f"{path}: image is {width}x{height} ({width * height / 1e6:.1f} MP), "
                             f"over the limit of {max_pixels / 1e6:g} MP")


@contextmanager
def _pillow_limit_lifted():
    """Pillow refuses images over 2 * Image.MAX_IMAGE_PIXELS before we can see their size; lift its limit
    (ours still applies) for one decode, under a lock so threads cannot restore it out of order."""
    with _PILLOW_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _exif_orientation(image: Image.Image) -> int:
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not make the pixels unreadable
        return 1
    return orientation if orientation in range(1, 9) else 1


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W, C) stored pixels upright by EXIF orientation, as PIL.ImageOps.exif_transpose does."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation, lambda a: a)(array)
    return np.ascontiguousarray(turned)


def _icc_colour_space(icc_profile: bytes) -> bytes:
    return icc_profile[16:20]  # the profile header's data colour space: b"RGB ", b"GRAY", b"CMYK", ...


def _icc_colour_space_for(channels: int) -> bytes:
    return b"GRAY" if channels == 1 else b"RGB "


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# ---------------------------------------------------------------- in memory: arrays, tensors, Pillow images


def picture_from_tensor(image: torch.Tensor, *, bit_depth: int = 16) -> Picture:
    """(C, H, W) float in [0, 1] with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) as a Picture.
    `bit_depth` 16 (the default for float data) keeps it in fp32 under `--precision auto`."""
    if image.ndim != 3 or image.shape[0] not in (1, 2, 3, 4):
        raise ValueError(f"expected (C, H, W) with 1 to 4 channels, got shape {tuple(image.shape)}")
    image = image.detach().to("cpu", torch.float32)
    colour = 1 if image.shape[0] < 3 else 3
    alpha = image[colour:] if image.shape[0] > colour else None
    return Picture(pixels=image[:colour].contiguous(), alpha=alpha, bit_depth=bit_depth)


def picture_to_tensor(picture: Picture) -> torch.Tensor:
    """(C, H, W) float32: the channels of `picture_from_tensor`'s input, alpha last."""
    channels = [picture.pixels] if picture.alpha is None else [picture.pixels, picture.alpha]
    return torch.cat(channels).clamp_(0, 1)


def picture_from_array(samples: np.ndarray) -> Picture:
    """(H, W) or (H, W, C) samples, C = 1 to 4 as in `picture_from_tensor`: uint8, uint16 or float in [0, 1]."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {samples.shape}")
    if samples.dtype in (np.uint8, np.uint16):
        tensor, bit_depth = _to_tensor(samples), 8 if samples.dtype == np.uint8 else 16
    elif samples.dtype.kind == "f":
        tensor, bit_depth = torch.from_numpy(np.array(samples, np.float32)).permute(2, 0, 1), 16
    else:
        raise ValueError(f"expected uint8, uint16 or float samples, got {samples.dtype}")
    return picture_from_tensor(tensor, bit_depth=bit_depth)


def picture_to_array(picture: Picture, dtype: np.dtype) -> np.ndarray:
    """(H, W, C) samples, alpha last: uint8 or uint16 rounded, or float32 in [0, 1]."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return picture_to_tensor(picture).permute(1, 2, 0).numpy().astype(np.float32)
    return _to_samples(picture_to_tensor(picture), 16 if dtype == np.uint16 else 8)


def picture_from_pil(image: Image.Image) -> Picture:
    """A Pillow image as `read_picture` would decode its file: palette and CMYK become RGB, alpha and 16 bits
    are kept, the ICC profile carries over. EXIF orientation is not applied: the pixels are taken as they are."""
    pixels, alpha = _pixels_of(image, Path(getattr(image, "filename", "") or "image"))
    return Picture(pixels=_to_tensor(pixels), alpha=None if alpha is None else _to_tensor(alpha),
                   bit_depth=16 if pixels.dtype == np.uint16 else 8, format=image.format or "PNG",
                   icc_profile=image.info.get("icc_profile") or None)


def picture_to_pil(picture: Picture) -> Image.Image:
    """A Pillow image of `picture` in L, LA, RGB, RGBA or I;16 (Pillow's only 16-bit mode: plain grayscale), with
    its ICC profile."""
    wide = picture.bit_depth == 16 and picture.pixels.shape[0] == 1 and picture.alpha is None
    image = _pil_image(picture_to_array(picture, np.uint16 if wide else np.uint8))
    if picture.icc_profile:
        image.info["icc_profile"] = picture.icc_profile
    return image


# ---------------------------------------------------------------- writing


def save_rgb(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write a (3, H, W) or (1, H, W) float tensor in [0, 1] as an 8-bit image; the format comes from the
    suffix."""
    write_picture(path, Picture(pixels=image))


def write_picture(path: str | os.PathLike, picture: Picture, *, quality: int = 95) -> None:
    """Write atomically in the format of the suffix, upright, without EXIF. 16 bits go to PNG and TIFF only;
    alpha is dropped for JPEG and BMP; the ICC profile goes to PNG, JPEG, WEBP and TIFF; `quality` is for
    JPEG (4:4:4, no chroma subsampling) and WEBP."""
    path = Path(path)
    image_format = _WRITE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ImageFileError(f"{path}: cannot write '{path.suffix}' files "
                             f"(use {', '.join(sorted(_WRITE_FORMATS))})")
    bit_depth = picture.bit_depth if image_format in ("PNG", "TIFF") else 8
    pixels = _to_samples(picture.pixels, bit_depth)
    alpha = None if picture.alpha is None or image_format in ("JPEG", "BMP") else _to_samples(picture.alpha,
                                                                                              bit_depth)
    if image_format == "WEBP" and pixels.shape[2] == 1:  # WebP has no grayscale
        pixels = np.repeat(pixels, 3, axis=2)
    samples = pixels if alpha is None else np.concatenate([pixels, alpha], axis=2)  # (H, W, 1|2|3|4)
    icc_profile = picture.icc_profile
    if image_format == "BMP" or (icc_profile and _icc_colour_space(icc_profile)
                                 != _icc_colour_space_for(pixels.shape[2])):
        icc_profile = None  # BMP takes none; a profile for other channels would misdescribe these
    if image_format == "TIFF":
        _atomic_write(path, lambda file: _write_tiff(file, samples, icc_profile))
    elif image_format == "PNG" and bit_depth == 16:
        _atomic_write(path, lambda file: _write_png16(file, samples, icc_profile))
    else:
        options = {"icc_profile": icc_profile} if icc_profile else {}
        if image_format in ("JPEG", "WEBP"):
            options["quality"] = quality
        if image_format == "JPEG":
            options["subsampling"] = 0
        pil_image = _pil_image(samples)
        _atomic_write(path, lambda file: pil_image.save(file, format=image_format, **options))


def _pil_image(samples: np.ndarray) -> Image.Image:
    """(H, W, 1|2|3|4) uint8 or uint16 samples as a Pillow image: L, LA, RGB, RGBA or I;16."""
    return Image.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)


def _to_samples(tensor: torch.Tensor, bit_depth: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) uint8 or uint16, rounded; values outside [0, 1] are clipped.
    Converted a block of rows at a time, so a huge picture needs no full-size float temporaries."""
    tensor = tensor.detach().to("cpu", torch.float32)
    peak, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    channels, height, width = tensor.shape
    samples = np.empty((height, width, channels), dtype)
    rows = max(1, (1 << 22) // max(width * channels, 1))  # blocks of about 16 MB of float32
    for top in range(0, height, rows):
        block = tensor[:, top : top + rows]
        if torch.isnan(block).any():
            raise ValueError("cannot write an image that contains NaN")
        samples[top : top + rows] = block.clamp(0, 1).mul_(peak).round_().permute(1, 2, 0).numpy().astype(dtype)
    return samples


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run `write` on a hidden temporary file beside `path`, then rename it over `path`; nothing is left
    behind on failure."""
    folder = path.parent
    if not folder.is_dir():
        raise ImageFileError(f"{path}: cannot write, folder {folder} does not exist")
    if path.is_dir():
        raise ImageFileError(f"{path}: cannot write, a folder has that name")
    try:
        atomic_write(path, write)
    except PermissionError as error:
        raise ImageFileError(f"{path}: cannot write to folder {folder} ({error.strerror or error})") from error
    except Exception as error:
        if isinstance(error, ImageFileError):
            raise
        raise ImageFileError(f"{path}: cannot write ({_one_line(error)})") from error


def _write_tiff(file: BinaryIO, samples: np.ndarray, icc_profile: bytes | None) -> None:
    channels = samples.shape[2]
    tifffile.imwrite(
        file, samples[:, :, 0] if channels == 1 else samples,
        photometric="rgb" if channels >= 3 else "minisblack", planarconfig="contig",
        extrasamples=[2] if channels in (2, 4) else None,  # 2: unassociated alpha
        compression="zlib", iccprofile=icc_profile,
    )


def _write_png16(file: BinaryIO, samples: np.ndarray, icc_profile: bytes | None) -> None:
    """16-bit PNG (gray, gray+alpha, RGB or RGBA) with the Paeth filter on every row."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
    pixel_bytes = channels * 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type,
                                                                   0, 0, 0)))
    if icc_profile:
        file.write(chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    compressor = zlib.compressobj(6)
    above = np.zeros((1, rows.shape[1]), np.int16)
    for start in range(0, height, 256):  # blocks of rows bound the memory of the int16 temporaries
        block = rows[start:start + 256].astype(np.int16)
        up = np.concatenate([above, block[:-1]])
        left = np.pad(block, ((0, 0), (pixel_bytes, 0)))[:, :-pixel_bytes]
        up_left = np.pad(up, ((0, 0), (pixel_bytes, 0)))[:, :-pixel_bytes]
        guess = left + up - up_left
        far_left, far_up, far_up_left = np.abs(guess - left), np.abs(guess - up), np.abs(guess - up_left)
        paeth = np.where((far_left <= far_up) & (far_left <= far_up_left), left,
                         np.where(far_up <= far_up_left, up, up_left))
        filtered = ((block - paeth) & 0xFF).astype(np.uint8)
        data = compressor.compress(np.pad(filtered, ((0, 0), (1, 0)), constant_values=4).tobytes())  # 4: Paeth
        if data:
            file.write(chunk(b"IDAT", data))
        above = block[-1:]
    file.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- codecs in memory


CODEC_FORMATS: dict[str, str] = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "png": "PNG"}
LOSSLESS_FORMATS: frozenset[str] = frozenset({"WEBP", "PNG"})  # quality None: lossless; PNG is nothing else


def codec_available(image_format: str) -> bool:
    """True when this Pillow can encode `image_format` ("JPEG", "WEBP", "AVIF", "PNG"): AVIF needs Pillow 11.3+
    built with libavif, WEBP libwebp."""
    from PIL import features

    Image.init()
    library = {"WEBP": "webp", "AVIF": "avif"}.get(image_format)
    return image_format in Image.SAVE and (library is None or bool(features.check(library)))


def encode(pixels: torch.Tensor, image_format: str, quality: int | None) -> bytes:
    """The file Pillow's real encoder makes of (C, H, W) float pixels in [0, 1] (rounded to 8 bits; C = 1 or 3):
    "JPEG", "WEBP" or "AVIF" at `quality` (0..100), or lossless with `quality` None ("WEBP" lossless, "PNG").
    Pillow's defaults otherwise: 4:2:0 chroma for JPEG, WEBP and AVIF, as cameras and web pictures use."""
    import io

    if image_format == "PNG" and quality is not None:
        raise ValueError("PNG is lossless only: give quality None")
    if quality is None and image_format not in LOSSLESS_FORMATS:
        raise ValueError(f"{image_format} has no lossless mode: give a quality")
    options: dict[str, object] = {"lossless": True} if image_format == "WEBP" and quality is None else {}
    if quality is not None:
        options["quality"] = int(quality)
    buffer = io.BytesIO()
    try:
        _pil_image(_to_samples(pixels, 8)).save(buffer, format=image_format, **options)
    except (KeyError, OSError, ValueError) as error:
        raise ImageFileError(f"cannot encode {image_format} with this Pillow ({_one_line(error)})") from None
    return buffer.getvalue()


def decode(data: bytes, channels: int = 3) -> torch.Tensor:
    """(channels, H, W) float32 on 8-bit levels from an encoded file in memory; channels 1 (gray) or 3 (RGB)."""
    import io

    with Image.open(io.BytesIO(data)) as decoded:
        array = np.asarray(decoded.convert("L" if channels == 1 else "RGB"))
    return _to_tensor(array.reshape(array.shape[0], array.shape[1], -1))


def encode_decode(pixels: torch.Tensor, image_format: str, quality: int | None) -> tuple[torch.Tensor, int]:
    """`encode` then `decode`: (the decoded pixels, shape and channels as given, 8-bit levels; the encoded size in
    bytes)."""
    data = encode(pixels, image_format, quality)
    return decode(data, pixels.shape[0]), len(data)
