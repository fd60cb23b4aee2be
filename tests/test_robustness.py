"""Issue 7: bad input and load. Every row of the tables below runs the real `superres upscale` in-process on a file
of the corpus (tests/corpus.py, made in tmp_path) and gets its documented outcome: upscaled x4 keeping what the
picture is (gray stays gray, alpha and 16 bits kept, EXIF orientation applied), or one `superres: error:` line,
exit code 2 and no output file. Interruption is in test_interruption.py, the fuzz test in test_fuzz.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import superres
from superres.cli import main
from superres.inference import upscale
from superres.models import build_model
from superres.weights import save_weights

from corpus import BUILDERS, make, make_all

SRC = Path(superres.__file__).resolve().parents[1]
ENV = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}

# corpus file -> (output size (width, height), output mode as Pillow opens it, bit depth in the PNG header)
UPSCALED = {
    "one-pixel.png": ((4, 4), "RGB", 8),
    "odd-7x13.png": ((28, 52), "RGB", 8),
    "palette.png": ((48, 40), "RGB", 8),
    "palette-transparent.png": ((48, 40), "RGBA", 8),
    "cmyk.jpg": ((48, 40), "RGB", 8),
    "rgb16.png": ((48, 40), "RGB", 16),  # Pillow opens 16-bit RGB as 8-bit RGB: the header says 16
    "gray16.png": ((48, 40), "I;16", 16),
    "rgba.png": ((48, 40), "RGBA", 8),
    "la.png": ((48, 40), "LA", 8),
    "gray.png": ((48, 40), "L", 8),
    "exif-rotated.jpg": ((64, 128), "RGB", 8),  # stored 32x16 with orientation 6: upright 16x32
    "png-named.jpg": ((48, 40), "RGB", 8),  # PNG data under a .jpg name: the content decides
    "broken-tag16.tif": ((48, 40), "RGB", 16),  # a tag of an invalid type is skipped, silently
    "broken-exif.png": ((48, 40), "RGB", 8),  # so is EXIF cut short
}
# corpus file -> what its one error line says after the file's name
REFUSED = {
    "zero-bytes.png": "empty file (0 bytes)",
    "truncated.png": "cannot decode image data (image file is truncated)",
    "truncated.jpg": "cannot decode image data",
    "text-named.png": "not an image file (cannot identify format)",
    "bomb.png": "image is 40000x40000 (1600.0 MP), over the limit of 100 MP",
}
assert UPSCALED.keys() | REFUSED.keys() == BUILDERS.keys()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err.startswith("superres: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text.lower() in err.lower(), (text, err)


def leftovers(folder: Path) -> list[str]:
    """Files the atomic writer would leave if it failed: hidden `.NAME.partial-XXXX.EXT` temporaries."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or ".partial-" in p.name)


def as_float(image: Image.Image) -> np.ndarray:
    """(H, W, C) floats in [0, 1] of an 8- or 16-bit Pillow image."""
    array = np.asarray(image).astype(np.float64)
    array = array[:, :, None] if array.ndim == 2 else array
    return array / (65535 if image.mode.startswith("I") else 255)


@pytest.mark.parametrize("name", UPSCALED)
def test_upscaled(tmp_path, capsys, name):
    source = make(name, tmp_path / "in")
    target = tmp_path / "out" / (Path(name).stem + ".png")
    code, out, err = run(capsys, "upscale", source, "-o", target, "--model", "bicubic")
    assert code == 0 and err == "", err
    assert out == f"{target}: x4 with bicubic\n"
    size, mode, bit_depth = UPSCALED[name]
    with Image.open(target) as sr, Image.open(source) as lq:
        assert (sr.size, sr.mode) == (size, mode)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's word on broken-exif.png
            upright = ImageOps.exif_transpose(lq).convert(mode)  # Pillow's own reading, to compare with
        width, height = upright.size
        pooled = as_float(sr).reshape(height, 4, width, 4, -1).mean(axis=(1, 3))  # back to the input's grid
        assert np.abs(pooled - as_float(upright)).mean() < 0.03  # the same picture, the same way up
    assert target.read_bytes()[24] == bit_depth  # IHDR bit depth
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", REFUSED)
def test_refused(tmp_path, capsys, name):
    source = make(name, tmp_path / "in")
    target = tmp_path / "out" / "sr.png"
    code, out, err = run(capsys, "upscale", source, "-o", target, "--model", "bicubic")
    assert_one_error_line(code, err, f"{source}: {REFUSED[name]}")
    assert out == "" and not target.exists() and leftovers(tmp_path) == []


def _locked_folder(tmp_path: Path, monkeypatch) -> Path:
    """A folder we may not write into. chmod 0o500 stops everyone but root; as root (containers, CI) the kernel
    lets every write through, so the refusal the system would give is simulated where the file gets created."""
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    if os.name != "posix" or os.geteuid() == 0:
        import superres.files

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(superres.files, "open", refuse, raising=False)
    return folder / "sr.png"


def _under_a_file(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    return tmp_path / "notes.txt" / "sr.png"


# output problem -> (how the output path is made, what the error line says)
OUTPUT_PROBLEMS = {
    "output folder not writable": (_locked_folder, "permission denied"),
    "output folder is a regular file": (_under_a_file, "notes.txt is a file, not a folder"),
    "output equals the input": (lambda tmp_path, monkeypatch: tmp_path / "in" / "gray.png",
                                "output would overwrite its input"),
    "output format unknown": (lambda tmp_path, monkeypatch: tmp_path / "sr.gif", "unsupported output format '.gif'"),
}


@pytest.mark.parametrize("problem", OUTPUT_PROBLEMS)
def test_refused_output(tmp_path, capsys, monkeypatch, problem):
    source = make("gray.png", tmp_path / "in")
    before = source.read_bytes()
    make_target, message = OUTPUT_PROBLEMS[problem]
    target = make_target(tmp_path, monkeypatch)
    code, out, err = run(capsys, "upscale", source, "-o", target, "--model", "bicubic")
    assert_one_error_line(code, err, message)
    assert out == "" and source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        p.name for p in (source, tmp_path / "notes.txt") if p.is_file())  # nothing new anywhere


def test_missing_input_is_named(tmp_path, capsys):
    code, _, err = run(capsys, "upscale", tmp_path / "nowhere.png", "-o", tmp_path / "sr.png", "--model", "bicubic")
    assert_one_error_line(code, err, "nowhere.png: no such file or folder")


def test_folder_run_over_the_whole_corpus(tmp_path):
    """In a real process, so that anything Pillow, tifffile or torch would print (warnings, log records) shows."""
    make_all(tmp_path / "in")
    result = subprocess.run([sys.executable, "-m", "superres", "upscale", tmp_path / "in", "-o", tmp_path / "out",
                             "--model", "bicubic"], env=ENV, capture_output=True, text=True, timeout=300)
    code, out, err = result.returncode, result.stdout, result.stderr
    assert code == 1
    assert out == f"upscaled {len(UPSCALED)} of {len(BUILDERS)} images x4 with bicubic into {tmp_path / 'out'}\n"
    lines = err.splitlines()  # after the summary, one line per bad file, in the order they were met
    assert len(lines) == len(REFUSED)
    for line, name in zip(lines, sorted(REFUSED)):
        assert line.startswith(f"failed: {tmp_path / 'in' / name}: {REFUSED[name]}"), line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(UPSCALED)
    for name, (size, _, _) in UPSCALED.items():
        with Image.open(tmp_path / "out" / name) as sr:
            sr.load()
            assert sr.size == size
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- weights
ARGS = {"scale": 4, "channels": 4}


class MaliciousPayload:
    """Unpickling this runs a shell command that creates the marker file named in it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tampered(tmp_path: Path, problem: str) -> Path:
    """A weights file with one thing wrong with it."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = build_model("cnn", **ARGS)
    good = save_weights(tmp_path / "good.safetensors", model, arch="cnn", args=ARGS, scale=4, degradation="bicubic")
    with safe_open(str(good), "pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(good))
    path = tmp_path / f"{problem.replace(' ', '-')}.safetensors"
    data = good.read_bytes()
    if problem == "bad metadata JSON":
        save_file(tensors, str(path), metadata=metadata | {"args": "{channels: 4"})
    elif problem == "unknown arch":
        save_file(tensors, str(path), metadata=metadata | {"arch": "edsr"})
    elif problem == "no arch":
        save_file(tensors, str(path), metadata={k: v for k, v in metadata.items() if k != "arch"})
    elif problem == "wrong tensor shape":
        save_file(tensors | {"tail.weight": torch.zeros(3, 4, 5, 5)}, str(path), metadata=metadata)
    elif problem == "missing tensor":
        save_file({k: v for k, v in tensors.items() if k != "tail.bias"}, str(path), metadata=metadata)
    elif problem == "extra tensor":
        save_file(tensors | {"extra.weight": torch.zeros(2)}, str(path), metadata=metadata)
    elif problem == "arguments do not build":
        save_file(tensors, str(path), metadata=metadata | {"args": '{"channels": -4}'})
    elif problem == "truncated file":
        path.write_bytes(data[: len(data) // 2])
    elif problem == "broken header":
        header_end = 8 + int.from_bytes(data[:8], "little")
        path.write_bytes(data[:8] + data[8 : header_end - 2] + b"!}" + data[header_end:])
    elif problem == "a PNG renamed":
        path.write_bytes(BUILDERS["gray.png"]())
    elif problem == "a .pth renamed":
        torch.save({"arch": "cnn", "args": ARGS, "state_dict": model.state_dict()}, path)
    elif problem == "bare state dict .pth":
        path = path.with_suffix(".pth")
        torch.save(model.state_dict(), path)
    elif problem == "malicious pickle .pth":
        path = path.with_suffix(".pth")
        torch.save({"arch": "cnn", "args": ARGS, "state_dict": MaliciousPayload(tmp_path / "pwned")}, path)
    elif problem == "pth args not a dict":
        path = path.with_suffix(".pth")
        torch.save({"arch": "cnn", "args": 4, "state_dict": model.state_dict()}, path)
    return path


# weights problem -> what the error line says (after the file's name)
WEIGHTS_PROBLEMS = {
    "bad metadata JSON": "metadata field 'args' is not valid JSON",
    "unknown arch": "metadata names unknown architecture 'edsr'",
    "no arch": "not a superres weights file (its metadata has no 'arch')",  # then why spandrel could not load it
    "wrong tensor shape": "do not match cnn {'channels': 4, 'scale': 4}: 1 with wrong shapes "
                          "(first: tail.weight (3, 4, 5, 5), expected (3, 4, 3, 3))",
    "missing tensor": "missing 1 tensors (first: tail.bias)",
    "extra tensor": "1 unexpected tensors (first: extra.weight)",
    "arguments do not build": "arguments {'channels': -4} do not fit 'cnn'",
    "truncated file": "not a readable .safetensors file",
    "broken header": "not a readable .safetensors file (Error while deserializing header: invalid JSON",
    "a PNG renamed": "not a readable .safetensors file",
    "a .pth renamed": "not a readable .safetensors file",
    "bare state dict .pth": "not a superres weights file (a dict with 'arch', 'args' and 'state_dict')",
    "malicious pickle .pth": "not a loadable .pth file (Weights only load failed",
    "pth args not a dict": "'args' must be a dict of the model's arguments, not int",
}


@pytest.mark.parametrize("problem", WEIGHTS_PROBLEMS)
def test_refused_weights(tmp_path, capsys, problem):
    weights = _tampered(tmp_path, problem)
    source = make("gray.png", tmp_path / "in")
    code, out, err = run(capsys, "upscale", source, "-o", tmp_path / "sr.png", "--model", weights)
    assert_one_error_line(code, err, f"error: {weights}: ", WEIGHTS_PROBLEMS[problem])
    assert out == "" and not (tmp_path / "sr.png").exists()
    assert not (tmp_path / "pwned").exists()  # the pickle's payload never ran


def test_the_malicious_payload_is_real(tmp_path):
    """What weights_only=True stops: unpickled the unsafe way, the file above runs its command."""
    path = _tampered(tmp_path, "malicious pickle .pth")
    torch.load(path, weights_only=False)
    assert (tmp_path / "pwned").exists()


def test_pth_in_our_own_format_loads_safely(tmp_path, capsys):
    """The one .pth form accepted: {'arch', 'args', 'state_dict'}, read with torch.load(weights_only=True)."""
    torch.manual_seed(0)
    model = build_model("cnn", **ARGS)
    torch.save({"arch": "cnn", "args": ARGS, "state_dict": model.state_dict()}, tmp_path / "mine.pth")
    source = make("gray.png", tmp_path / "in")
    code, out, err = run(capsys, "upscale", source, "-o", tmp_path / "sr.png", "--model", tmp_path / "mine.pth")
    assert code == 0 and out == f"{tmp_path / 'sr.png'}: x4 with mine\n", err


# ---------------------------------------------------------------------------------------------------- load
def test_a_tile_that_runs_out_of_memory_is_retried_smaller(monkeypatch):
    """A simulated GPU with room for 60x60 input windows: tiles of 64 (+ 2 x 12 overlap) fail, tiles of 32 fit,
    and the result is the untiled one."""
    torch.manual_seed(0)
    model = build_model("rescnn", scale=4, channels=8, num_blocks=1).eval()
    image = torch.rand(3, 100, 140, generator=torch.Generator().manual_seed(0))
    whole = upscale(model, image)
    forward, fitted, refused = model.forward, [], []

    def forward_in_limited_memory(x):
        if x.shape[-2] * x.shape[-1] > 60 * 60:
            refused.append(tuple(x.shape[-2:]))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        fitted.append(tuple(x.shape[-2:]))
        return forward(x)

    monkeypatch.setattr(model, "forward", forward_in_limited_memory)
    tiled = upscale(model, image, tile=64, overlap=12)
    assert refused and fitted and max(h * w for h, w in fitted) <= 60 * 60
    assert tiled.shape == whole.shape == (3, 400, 560)
    assert (tiled - whole).abs().max() <= 1 / 255


PEAK_RSS_SCRIPT = """
import resource, sys
from superres.cli import main
code = main(sys.argv[1:])
print(f"peak_rss_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
sys.exit(code)
"""


@pytest.mark.slow
def test_4000x3000_with_tiles_in_bounded_memory(tmp_path, monkeypatch):
    """A 12 MP photo with --tile 512 and a tiny model: 16000x12000 out; peak RSS measured in the subprocess.
    The float32 output buffer alone is 2.3 GB; the bound below leaves room for it, the uint8 picture Pillow
    encodes and the tile batch, but not for full-size float copies."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).resize((4000, 3000), Image.BICUBIC).save(
        tmp_path / "big.bmp")  # smooth noise; BMP: no time spent decompressing
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "tiny.safetensors", build_model("cnn", **ARGS).eval(), arch="cnn", args=ARGS,
                           scale=4, degradation="bicubic")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, "upscale", tmp_path / "big.bmp", "-o", tmp_path / "sr.jpg",
         "--model", weights, "--tile", "512"],
        env=ENV, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split("peak_rss_mib ")[1])
    print(f"4000x3000 -> 16000x12000 with --tile 512: {seconds:.1f} s, peak RSS {peak_mib} MiB")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # 192 MP is over Pillow's decompression-bomb guard
    with Image.open(tmp_path / "sr.jpg") as sr:
        assert sr.size == (16000, 12000)
    assert peak_mib < 5 * 1024
