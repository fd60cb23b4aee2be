"""superres.imageio on tiny images made in tmp_path."""

import os
import struct
import zlib

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from superres import imageio
from superres.imageio import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageFileError, Picture, is_image_path,
                              list_images, read_picture, read_rgb, read_rgb_u8, save_rgb, write_picture)

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
LOSSY = {".jpg", ".jpeg", ".webp"}


def gradient(height=12, width=16, channels=3, peak=255, seed=0):
    """(H, W, C) smooth test pixels with a little noise; uint8 or uint16 from `peak`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 4 + y * 3 + 50 * c + 20 for c in range(channels)], axis=2) / 255
    values = np.clip(base + rng.uniform(-0.01, 0.01, base.shape), 0, 1) * peak
    return values.round().astype(np.uint16 if peak > 255 else np.uint8)


def as_tensor(samples):
    peak = 65535 if samples.dtype == np.uint16 else 255
    return torch.from_numpy(samples.astype(np.float32) / peak).permute(2, 0, 1)


def plain_png16(path, samples):
    """A 16-bit PNG written without filters, independently of the module's writer."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type,
                                                                       0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip(tmp_path, suffix, channels):
    samples = gradient(channels=channels)
    path = tmp_path / f"picture{suffix}"
    write_picture(path, Picture(pixels=as_tensor(samples)))
    picture = read_picture(path)
    expected_channels = 3 if suffix == ".webp" else channels  # WebP has no grayscale
    assert picture.pixels.shape == (expected_channels, 12, 16) and picture.pixels.dtype == torch.float32
    assert picture.bit_depth == 8 and picture.alpha is None
    assert picture.format == Image.registered_extensions()[suffix]
    error = (picture.pixels - as_tensor(samples)).abs()
    if suffix in LOSSY:
        assert error.mean() < 3 / 255 and error.max() < 16 / 255
    else:
        assert error.max() < 1e-6
    assert leftovers(tmp_path) == []


def test_read_rgb_u8_and_read_rgb_agree(tmp_path):
    samples = gradient(channels=1)
    Image.fromarray(samples[:, :, 0]).save(tmp_path / "gray.png")
    rgb_u8 = read_rgb_u8(tmp_path / "gray.png")
    assert rgb_u8.shape == (12, 16, 3) and rgb_u8.dtype == np.uint8
    assert (rgb_u8 == samples).all()  # replicated
    rgb = read_rgb(str(tmp_path / "gray.png"))
    assert rgb.shape == (3, 12, 16) and rgb.dtype == torch.float32
    assert torch.equal(rgb, torch.from_numpy(rgb_u8).permute(2, 0, 1).float() / 255)


def test_save_rgb_rounds_to_nearest(tmp_path):
    image = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.7, -0.3]).reshape(1, 2, 3)
    save_rgb(tmp_path / "out.png", image)
    assert (np.asarray(Image.open(tmp_path / "out.png")) == [[0, 0, 1], [255, 255, 0]]).all()
    save_rgb(tmp_path / "rgb.bmp", image.expand(3, 2, 3))
    assert read_rgb_u8(tmp_path / "rgb.bmp")[:, :, 2].tolist() == [[0, 0, 1], [255, 255, 0]]


# ---------------------------------------------------------------- orientation


def test_exif_rotated_jpeg_reads_upright_and_writes_upright(tmp_path):
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)  # left half red
    stored[:, 16:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored turned 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_rgb_u8(tmp_path / "phone.jpg")
    assert upright.shape == (32, 16, 3)
    assert (np.abs(upright[:12].astype(int) - (255, 0, 0)) < 20).all()  # red on top
    assert (np.abs(upright[20:].astype(int) - (0, 0, 255)) < 20).all()  # blue below
    write_picture(tmp_path / "out.jpg", read_picture(tmp_path / "phone.jpg"))
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.size == (16, 32) and 0x0112 not in written.getexif()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_exif_transpose(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(gradient(5, 7)).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as image:
        expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(read_rgb_u8(tmp_path / "o.png"), expected)


def test_orientation_of_16_bit_tiff(tmp_path):
    samples = gradient(5, 7, peak=65535)
    tifffile.imwrite(tmp_path / "o.tif", samples, photometric="rgb", extratags=[(0x0112, "H", 1, 8, True)])
    picture = read_picture(tmp_path / "o.tif")
    assert picture.bit_depth == 16
    assert torch.equal(picture.pixels, as_tensor(np.rot90(samples, 1).copy()))


# ---------------------------------------------------------------- 16 bits


def test_16_bit_gray_png_keeps_values(tmp_path):
    samples = gradient(channels=1, peak=65535)
    Image.fromarray(samples[:, :, 0]).save(tmp_path / "gray16.png")
    picture = read_picture(tmp_path / "gray16.png")
    assert picture.bit_depth == 16 and picture.pixels.shape == (1, 12, 16)
    assert torch.equal(picture.pixels, as_tensor(samples))
    for suffix in (".png", ".tif"):
        write_picture(tmp_path / f"out{suffix}", picture)
        again = read_picture(tmp_path / f"out{suffix}")
        assert again.bit_depth == 16 and torch.equal(again.pixels, picture.pixels)
    assert (np.asarray(Image.open(tmp_path / "out.png")) == samples[:, :, 0]).all()


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_and_alpha_png_keep_values(tmp_path, channels):
    samples = gradient(channels=channels, peak=65535)
    plain_png16(tmp_path / "in.png", samples)
    picture = read_picture(tmp_path / "in.png")
    assert picture.bit_depth == 16
    assert torch.equal(picture.pixels, as_tensor(samples[:, :, :3 if channels >= 3 else 1]))
    assert (picture.alpha is not None) == (channels in (2, 4))
    if picture.alpha is not None:
        assert torch.equal(picture.alpha, as_tensor(samples[:, :, -1:]))
    for suffix in (".png", ".tiff"):
        write_picture(tmp_path / f"out{suffix}", picture)
        again = read_picture(tmp_path / f"out{suffix}")
        assert again.bit_depth == 16 and torch.equal(again.pixels, picture.pixels)
        assert torch.equal(again.alpha, picture.alpha) if channels in (2, 4) else again.alpha is None
    assert read_rgb_u8(tmp_path / "out.png").dtype == np.uint8


def test_16_bit_png_agrees_with_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    samples = gradient(40, 50, channels=3, peak=65535)
    cv2.imwrite(str(tmp_path / "cv.png"), samples[:, :, ::-1])  # OpenCV is BGR, filters rows its own way
    picture = read_picture(tmp_path / "cv.png")
    assert torch.equal(picture.pixels, as_tensor(samples))
    write_picture(tmp_path / "ours.png", picture)
    assert np.array_equal(cv2.imread(str(tmp_path / "ours.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1], samples)


def test_16_bit_rounds_to_8_bit_for_read_rgb_u8(tmp_path):
    values = np.array([[0, 128, 129, 385, 386, 65535]], np.uint16)  # 128 -> 0.498 -> 0, 129 -> 0.502 -> 1
    Image.fromarray(values).save(tmp_path / "g.png")
    assert read_rgb_u8(tmp_path / "g.png")[0, :, 0].tolist() == [0, 0, 1, 1, 2, 255]


def test_16_bit_rgb_tiff_keeps_values(tmp_path):
    samples = gradient(channels=3, peak=65535)
    tifffile.imwrite(tmp_path / "in.tif", samples, photometric="rgb")
    picture = read_picture(tmp_path / "in.tif")
    assert picture.bit_depth == 16 and picture.format == "TIFF"
    assert torch.equal(picture.pixels, as_tensor(samples))
    write_picture(tmp_path / "out.tif", picture)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), samples)
    write_picture(tmp_path / "out.jpg", picture)  # JPEG cannot hold 16 bits: written as 8
    assert np.abs(read_rgb_u8(tmp_path / "out.jpg").astype(int) - samples // 257).max() < 12


# ---------------------------------------------------------------- alpha, palette, CMYK


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_rgba_keeps_alpha(tmp_path, suffix):
    samples = gradient(channels=4)
    Image.fromarray(samples).save(tmp_path / f"in{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    picture = read_picture(tmp_path / f"in{suffix}")
    assert picture.pixels.shape == (3, 12, 16) and picture.alpha.shape == (1, 12, 16)
    assert torch.equal(picture.alpha, as_tensor(samples[:, :, 3:]))
    write_picture(tmp_path / f"out{suffix}", picture)
    again = read_picture(tmp_path / f"out{suffix}")
    assert (again.alpha - picture.alpha).abs().max() <= (2 / 255 if suffix == ".webp" else 0)
    assert read_rgb_u8(tmp_path / f"out{suffix}").shape == (12, 16, 3)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_alpha_dropped_where_format_has_none(tmp_path, suffix):
    picture = Picture(pixels=as_tensor(gradient()), alpha=torch.full((1, 12, 16), 0.5))
    write_picture(tmp_path / f"out{suffix}", picture)
    with Image.open(tmp_path / f"out{suffix}") as written:
        assert written.mode == "RGB"


def test_la_reads_gray_with_alpha_and_writes_back(tmp_path):
    samples = gradient(channels=2)
    Image.fromarray(samples, mode="LA").save(tmp_path / "la.png")
    picture = read_picture(tmp_path / "la.png")
    assert picture.pixels.shape == (1, 12, 16) and torch.equal(picture.alpha, as_tensor(samples[:, :, 1:]))
    write_picture(tmp_path / "out.png", picture)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "LA" and np.array_equal(np.asarray(written), samples)


def test_palette_without_and_with_transparency(tmp_path):
    palette_image = Image.fromarray(gradient()).quantize(16)
    palette_image.save(tmp_path / "p.png")
    picture = read_picture(tmp_path / "p.png")
    assert picture.alpha is None and picture.pixels.shape == (3, 12, 16)
    assert torch.equal(picture.pixels, as_tensor(np.asarray(palette_image.convert("RGB"))))
    palette_image.save(tmp_path / "pt.png", transparency=3)
    picture = read_picture(tmp_path / "pt.png")
    transparent = np.asarray(palette_image) == 3
    assert torch.equal(picture.alpha[0] == 0, torch.from_numpy(transparent))


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    rgb = Image.fromarray(gradient(16, 16))
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    picture = read_picture(tmp_path / "cmyk.jpg")
    assert picture.pixels.shape == (3, 16, 16) and picture.format == "JPEG"
    assert np.abs(read_rgb_u8(tmp_path / "cmyk.jpg").astype(int) - np.asarray(rgb)).mean() < 8


# ---------------------------------------------------------------- ICC profiles


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_icc_profile_carried_to_output(tmp_path, suffix, bit_depth):
    Image.fromarray(gradient()).save(tmp_path / "in.png", icc_profile=SRGB)
    picture = read_picture(tmp_path / "in.png")
    assert picture.icc_profile == SRGB
    picture = Picture(picture.pixels, bit_depth=bit_depth, icc_profile=picture.icc_profile)
    write_picture(tmp_path / f"out{suffix}", picture)
    assert read_picture(tmp_path / f"out{suffix}").icc_profile == SRGB


def test_16_bit_tiff_falls_back_to_pillow_when_tifffile_cannot_decode(tmp_path, monkeypatch):
    samples = gradient(channels=3, peak=65535)
    tifffile.imwrite(tmp_path / "in.tif", samples, photometric="rgb", compression="zlib")

    def missing_codec(*args):
        raise KeyError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(imageio, "_decode_wide_tiff", missing_codec)
    picture = read_picture(tmp_path / "in.tif")
    assert picture.bit_depth == 8
    assert (picture.pixels - as_tensor(samples)).abs().max() <= 1 / 255


def test_cmyk_profile_is_dropped_with_cmyk(tmp_path):
    cmyk_profile = SRGB[:16] + b"CMYK" + SRGB[20:]  # only the header's colour space matters here
    Image.fromarray(gradient()).convert("CMYK").save(tmp_path / "cmyk.jpg", icc_profile=cmyk_profile)
    assert read_picture(tmp_path / "cmyk.jpg").icc_profile is None


def test_icc_profile_of_another_colour_space_is_dropped(tmp_path):
    gray = Picture(pixels=torch.rand(1, 8, 8), icc_profile=SRGB)  # an RGB profile cannot describe gray pixels
    write_picture(tmp_path / "gray.png", gray)
    assert read_picture(tmp_path / "gray.png").icc_profile is None


# ---------------------------------------------------------------- errors


def check_error(error, name):
    message = str(error.value)
    assert name in message and "\n" not in message
    return message


def test_read_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image\n")
    (tmp_path / "folder.png").mkdir()
    Image.fromarray(gradient(64, 64)).save(tmp_path / "full.png")
    Image.fromarray(gradient(64, 64)).save(tmp_path / "full.jpg")
    for name in ("full.png", "full.jpg"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
    expected = {"missing.png": "no such file", "empty.png": "empty", "folder.png": "folder",
                "text.png": "not an image file (cannot identify format)",
                "cut-full.png": "cannot decode", "cut-full.jpg": "cannot decode"}
    for name, problem in expected.items():
        for read in (read_rgb_u8, read_rgb, read_picture):
            with pytest.raises(ImageFileError) as error:
                read(tmp_path / name)
            assert problem in check_error(error, name)


def declared_png(path, width, height):
    """A PNG whose header declares width x height but holds almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(20000, 20000), (12000, 9000)])  # over Pillow's error; its warning
def test_decompression_bomb_checked_before_decoding(tmp_path, width, height):
    declared_png(tmp_path / "bomb.png", width, height)
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageFileError) as error:
        read_rgb_u8(tmp_path / "bomb.png")
    megapixels = width * height / 1e6
    assert check_error(error, "bomb.png").endswith(
        f"image is {width}x{height} ({megapixels:.1f} MP), over the limit of {DEFAULT_MAX_PIXELS / 1e6:g} MP")
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_max_pixels_argument(tmp_path):
    Image.fromarray(gradient()).save(tmp_path / "small.png")
    with pytest.raises(ImageFileError, match=r"image is 16x12 \(0.0 MP\)"):
        read_picture(tmp_path / "small.png", max_pixels=100)
    assert read_rgb_u8(tmp_path / "small.png", max_pixels=16 * 12).shape == (12, 16, 3)


def test_write_errors_leave_nothing(tmp_path, monkeypatch):
    picture = Picture(pixels=torch.rand(3, 4, 4))
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "taken.png").mkdir()
    cases = {tmp_path / "out.gif": "cannot write '.gif' files", tmp_path / "missing" / "out.png": "does not exist",
             tmp_path / "file.txt" / "out.png": "does not exist", tmp_path / "taken.png": "a folder has that name"}
    for path, problem in cases.items():
        with pytest.raises(ImageFileError) as error:
            write_picture(path, picture)
        assert problem in check_error(error, path.name)

    def broken_writer(file, samples, icc_profile):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(imageio, "_write_tiff", broken_writer)
    with pytest.raises(ImageFileError, match="out.tif: cannot write \\(disk full\\)"):
        write_picture(tmp_path / "out.tif", picture)
    with pytest.raises(ValueError, match="NaN"):
        save_rgb(tmp_path / "nan.png", torch.full((3, 2, 2), float("nan")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "taken.png"]


def test_unwritable_folder(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.name != "posix" or os.geteuid() == 0:  # root writes anywhere: refuse the way the system would

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        import superres.files

        monkeypatch.setattr(superres.files, "open", refuse, raising=False)
    with pytest.raises(ImageFileError, match="cannot write to folder"):
        save_rgb(locked / "out.png", torch.rand(3, 4, 4))
    assert list(locked.iterdir()) == []


def test_overwrite_is_atomic_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.png"
    save_rgb(target, torch.zeros(3, 4, 4))
    save_rgb(target, torch.ones(3, 4, 4))
    assert (read_rgb_u8(target) == 255).all()
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_bad_picture_is_refused():
    with pytest.raises(ValueError):
        Picture(pixels=torch.rand(2, 4, 4))
    with pytest.raises(ValueError):
        Picture(pixels=torch.rand(3, 4, 4), alpha=torch.rand(1, 4, 5))
    with pytest.raises(ValueError):
        Picture(pixels=torch.rand(3, 4, 4), bit_depth=12)


# ---------------------------------------------------------------- listing


def test_list_images(tmp_path):
    for name in ("b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.webp", "sub/deeper/d.tiff",
                 ".cache/e.png", "sub/.f.bmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path) == [tmp_path / n for n in ("a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.tiff")]
    assert list_images(str(tmp_path), recursive=False) == [tmp_path / "a.jpg", tmp_path / "b.PNG"]
    assert is_image_path("x/y.JPEG") and is_image_path("y.tif") and not is_image_path("y.gif")
    with pytest.raises(ImageFileError, match="not a folder"):
        list_images(tmp_path / "nowhere")
