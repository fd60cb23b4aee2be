"""The Python API (`superres.load_model`, `superres.upscale`, `superres.restore`): the README's snippet, and the
same type out as in, for Pillow images, NumPy arrays and torch tensors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import superres
from superres.imageio import picture_from_array, picture_to_array

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bicubic():
    return superres.load_model("bicubic", device="cpu")


def gradient(height=12, width=16, channels=3, dtype=np.uint8) -> np.ndarray:
    peak = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1.0)
    ramp = np.linspace(0, 1, height * width * channels).reshape(height, width, channels)
    return (ramp * peak).astype(dtype) if peak != 1.0 else ramp.astype(dtype)


def test_the_readme_snippet_runs(monkeypatch, one_thread):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # its own asserts check the sizes
    assert isinstance(namespace["big"], Image.Image) and namespace["big"].mode == "RGB"


def test_importing_superres_loads_neither_torch_nor_models():
    code = "import sys, superres; print('torch' in sys.modules, sorted(superres.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src")}).stdout
    assert out.strip() == "False ['__version__', 'load_model', 'restore', 'upscale']"


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "I", "P"])
def test_pil_images_keep_their_mode(bicubic, mode):
    base = Image.fromarray(gradient())
    image = {"I;16": lambda: Image.fromarray(gradient(channels=1, dtype=np.uint16)[:, :, 0]),
             "I": lambda: Image.fromarray(gradient(channels=1, dtype=np.uint16)[:, :, 0]).convert("I")}.get(
        mode, lambda: base.convert(mode))()
    result = superres.upscale(image, model=bicubic)
    assert result.size == (64, 48)
    assert result.mode == ("RGB" if mode == "P" else mode)  # a palette image comes back as RGB
    if mode in ("I;16", "I"):
        assert np.asarray(result).max() > 255  # 16 bits kept


def test_pil_icc_profile_is_kept(bicubic):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.fromarray(gradient())
    image.info["icc_profile"] = profile
    assert superres.upscale(image, model=bicubic).info["icc_profile"] == profile


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_numpy_arrays_keep_shape_kind_and_dtype(bicubic, dtype, channels):
    array = gradient(channels=channels or 1, dtype=dtype)
    if channels is None:
        array = array[:, :, 0]
    result = superres.upscale(array, model=bicubic)
    expected_dtype = np.float32 if np.dtype(dtype).kind == "f" else dtype
    assert result.dtype == expected_dtype
    assert result.shape == (48, 64) + (() if channels is None else (channels,))


def test_numpy_matches_the_file_pipeline(bicubic, tmp_path):
    """An array upscaled in memory equals the same pixels written, upscaled by the CLI and read back."""
    from superres.cli import main

    array = gradient()
    Image.fromarray(array).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", "bicubic"]) == 0
    assert np.array_equal(superres.upscale(array, model=bicubic), np.asarray(Image.open(tmp_path / "out.png")))


@pytest.mark.parametrize("shape", [(3, 10, 12), (1, 10, 12), (4, 10, 12), (2, 3, 10, 12)])
def test_tensors_keep_layout_dtype_and_device(bicubic, shape):
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = superres.upscale(image, model=bicubic)
    assert result.shape == (*shape[:-2], 40, 48) and result.dtype == torch.float64 and result.device == image.device
    whole = torch.nn.functional.interpolate(image.reshape(-1, *shape[-3:]).float(), scale_factor=4, mode="bicubic",
                                            antialias=True).clamp(0, 1)
    if shape[-3] != 4:  # alpha aside, bicubic through the API is plain bicubic
        assert (result.reshape(whole.shape).float() - whole).abs().max() < 1e-5


def test_outscale_sizes_and_no_resize_at_the_models_scale(bicubic):
    array = gradient(10, 14)
    assert superres.upscale(array, model=bicubic, outscale=2.5).shape == (25, 35, 3)
    assert superres.upscale(array, model=bicubic, outscale=0.5).shape == (5, 7, 3)
    assert np.array_equal(superres.upscale(array, model=bicubic, outscale=4), superres.upscale(array, model=bicubic))
    for bad in (0, -1, float("nan"), 1e6):
        with pytest.raises(ValueError, match="outscale must be a number over 0 and at most 16"):
            superres.upscale(array, model=bicubic, outscale=bad)


def test_a_loaded_model_is_reused_and_names_load_per_call(bicubic, one_thread):
    assert superres.upscale(gradient(), model="bicubic", device="cpu").shape == (48, 64, 3)
    prepared = superres.load_model("bicubic", device="cpu", precision="fp32")
    assert repr(prepared) == "PreparedModel(bicubic, x4, cpu, fp32)"
    first = prepared.at()
    superres.upscale(gradient(), model=prepared)
    assert prepared.at() is first  # the prepared version is made once


def test_restore_refuses_upscaling_models(bicubic):
    with pytest.raises(ValueError, match="bicubic is an x4 model; restore takes x1 models"):
        superres.restore(gradient(), model=bicubic)


def test_wrong_inputs_say_what_is_expected(bicubic):
    with pytest.raises(TypeError, match="expected a PIL image, a NumPy array or a torch tensor, got list"):
        superres.upscale([[0, 1]], model=bicubic)
    with pytest.raises(ValueError, match="expected a float tensor"):
        superres.upscale(torch.zeros(3, 4, 4, dtype=torch.uint8), model=bicubic)
    with pytest.raises(ValueError, match="1 to 4 channels"):
        superres.upscale(np.zeros((4, 4, 5), np.uint8), model=bicubic)


def test_array_picture_round_trip_is_exact():
    for dtype in (np.uint8, np.uint16):
        array = gradient(channels=4, dtype=dtype)
        assert np.array_equal(picture_to_array(picture_from_array(array), dtype), array)
