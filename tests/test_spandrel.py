"""Other projects' model files through spandrel: tiny random ESRGAN, Real-ESRGAN Compact and SwinIR models, saved
the way their projects save them, loaded by `superres.load_model` and the CLI (nothing is downloaded)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import superres
from superres.cli import main
from superres.inference import upscale
from superres.weights import WeightsError, load_model

spandrel = pytest.importorskip("spandrel", reason="spandrel is not installed: pip install -e '.[spandrel]'")
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402


def esrgan(in_nc: int = 3, out_nc: int = 3) -> torch.nn.Module:
    return ESRGAN(in_nc=in_nc, out_nc=out_nc, num_filters=8, num_blocks=1, scale=4)


def compact() -> torch.nn.Module:
    return Compact(num_feat=8, num_conv=2, upscale=4)


def swinir() -> torch.nn.Module:  # x2, 4x4 windows
    return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2.0, upscale=2,
                  upsampler="pixelshuffle")


# (builder, how its project saves weights, scale, architecture id spandrel reports)
ARCHITECTURES = {
    "esrgan-old-arch.pth": (esrgan, lambda state: state, 4, "ESRGAN"),  # the original ESRGAN repository
    "realesr-compact.pth": (compact, lambda state: {"params": state}, 4, "Compact"),  # Real-ESRGAN
    "swinir-x2.pth": (swinir, lambda state: {"params": state}, 2, "SwinIR"),  # SwinIR's own releases
    "esrgan-ema.pth": (esrgan, lambda state: {"params_ema": state}, 4, "ESRGAN"),  # BasicSR training output
}


def save(folder, file_name: str, seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A tiny random model of `file_name`'s architecture saved there as its project would; (model, path)."""
    build, wrap, _, _ = ARCHITECTURES[file_name]
    torch.manual_seed(seed)
    model = build().eval()
    path = folder / file_name
    torch.save(wrap(model.state_dict()), path)
    return model, path


def photo(size=(24, 20), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("file_name", ARCHITECTURES)
def test_community_models_load_and_match_their_own_forward(tmp_path, file_name, one_thread):
    net, path = save(tmp_path, file_name)
    _, _, scale, arch = ARCHITECTURES[file_name]
    model = load_model(path)
    assert model.scale == scale and model.info.arch == arch and model.info.name == path.stem
    lq = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(lq[None])[0].clamp(0, 1)
    sr = upscale(model, lq)
    assert sr.shape == (3, 20 * scale, 24 * scale)
    assert (sr - expected).abs().max() < 1e-4


def test_safetensors_of_another_project_loads_through_spandrel(tmp_path, one_thread):
    torch.manual_seed(0)
    net = compact().eval()
    save_file(net.state_dict(), tmp_path / "compact.safetensors")  # no superres metadata
    model = load_model(tmp_path / "compact.safetensors")
    assert model.info.arch == "Compact" and model.scale == 4


def test_esrgan_tiles_seamlessly_with_the_default_overlap(tmp_path, one_thread):
    """One RRDB block: a receptive field well inside the 32-pixel overlap, so tiled equals untiled."""
    _, path = save(tmp_path, "esrgan-old-arch.pth")
    model = load_model(path)
    lq = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(2))
    assert (upscale(model, lq, tile=16) - upscale(model, lq)).abs().max() < 1 / 255


def test_swinir_pads_small_inputs_to_its_minimum_and_crops_back(tmp_path, one_thread):
    _, path = save(tmp_path, "swinir-x2.pth")
    model = load_model(path)
    assert model.descriptor.size_requirements.minimum > 10
    assert upscale(model, torch.rand(3, 7, 10)).shape == (3, 14, 20)


def test_grayscale_model_runs_on_rgb_and_gray_pictures(tmp_path, capsys, one_thread):
    torch.manual_seed(0)
    torch.save(esrgan(in_nc=1, out_nc=1).state_dict(), tmp_path / "gray.pth")
    Image.fromarray(photo()).save(tmp_path / "rgb.png")
    Image.fromarray(photo()[:, :, 0]).save(tmp_path / "gray.png")
    for name, mode in (("rgb.png", "RGB"), ("gray.png", "L")):
        code, _, err = run(capsys, "upscale", tmp_path / name, "-o", tmp_path / f"out_{name}", "--model",
                           tmp_path / "gray.pth")
        assert code == 0, err
        with Image.open(tmp_path / f"out_{name}") as out:
            assert out.size == (96, 80) and out.mode == mode


def test_cli_runs_a_community_model_with_its_own_scale_alpha_and_16_bits(tmp_path, capsys, one_thread):
    _, path = save(tmp_path, "swinir-x2.pth")
    rgba = np.dstack([photo(), np.full((20, 24), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    code, out, err = run(capsys, "upscale", tmp_path / "rgba.png", "-o", tmp_path / "out.png", "--model", path)
    assert code == 0, err
    assert out == f"{tmp_path / 'out.png'}: x2 with swinir-x2\n"  # no --scale needed: the file says x2
    with Image.open(tmp_path / "out.png") as result:
        assert result.size == (48, 40) and result.mode == "RGBA"
    wide = (np.arange(20 * 24).reshape(20, 24) * 100).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "gray16.png")
    code, _, err = run(capsys, "upscale", tmp_path / "gray16.png", "-o", tmp_path / "out16.png", "--model", path)
    assert code == 0, err
    with Image.open(tmp_path / "out16.png") as result:
        assert result.mode in ("I;16", "I") and np.asarray(result).max() > 255


def test_precisions_follow_what_spandrel_says(tmp_path, one_thread):
    _, path = save(tmp_path, "swinir-x2.pth")
    prepared = superres.load_model(path, device="cpu", precision="auto")
    assert "fp16" not in prepared.model.precisions and prepared.precision in ("fp32", "bf16")
    lq = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))
    fp32 = upscale(superres.load_model(path, device="cpu", precision="fp32").at(), lq)
    bf16 = upscale(superres.load_model(path, device="cpu", precision="bf16").at(), lq)
    assert (bf16 - fp32).abs().mean() < 0.02  # bf16 runs, whole, and stays close


@pytest.mark.parametrize("option, message", [
    (["--precision", "fp16"], "swinir-x2 does not run in fp16 (it runs in fp32, bf16)"),
    (["--scale", "4"], "--scale 4 does not match the model's scale x2"),
])
def test_options_the_file_cannot_meet_are_refused(tmp_path, capsys, option, message):
    _, path = save(tmp_path, "swinir-x2.pth")
    Image.fromarray(photo()).save(tmp_path / "in.png")
    code, _, err = run(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "out.png", "--model", path, *option)
    assert code == 2 and err == f"superres: error: {message}\n"


def test_inspect_says_what_a_file_is(tmp_path, capsys):
    _, path = save(tmp_path, "realesr-compact.pth")
    code, out, _ = run(capsys, "models", "--inspect", path)
    assert code == 0
    assert "format:             spandrel" in out and "architecture:       RealESRGAN Compact" in out
    assert "scale:              4" in out and "precisions:         fp32, bf16, fp16" in out
    code, out, _ = run(capsys, "models", "--inspect", path, "--json")
    row = json.loads(out)
    assert code == 0 and row["arch"] == "Compact" and row["params"] == sum(p.numel() for p in compact().parameters())
    code, out, _ = run(capsys, "models", "--inspect", "rescnn", "--json")
    assert code == 0 and json.loads(out)["format"] == "superres"  # our own files keep our own path


class Payload:
    """A pickle that runs a command when unpickled the unsafe way."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("content, expected", [
    ("malicious", "not a loadable .pth file (Weights only load failed"),
    ("unknown tensors", "not a superres weights file (a dict with 'arch', 'args' and 'state_dict'), and spandrel "
                        "recognises no architecture in it"),
    ("not a dict", "not a superres weights file (a dict with 'arch', 'args' and 'state_dict'), nor a state dict"),
])
def test_unusable_files_are_one_line_and_exit_2(tmp_path, capsys, content, expected):
    path = tmp_path / "model.pth"
    if content == "malicious":
        torch.save({"params": Payload(tmp_path / "pwned")}, path)
    elif content == "unknown tensors":
        torch.save({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, path)
    else:
        torch.save([torch.zeros(3)], path)
    Image.fromarray(photo()).save(tmp_path / "in.png")
    code, out, err = run(capsys, "upscale", tmp_path / "in.png", "-o", tmp_path / "out.png", "--model", path)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"superres: error: {path}: {expected}")
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "pwned").exists()


def test_without_spandrel_a_foreign_file_names_the_extra(tmp_path, monkeypatch):
    _, path = save(tmp_path, "realesr-compact.pth")
    monkeypatch.setitem(sys.modules, "spandrel", None)  # as if not installed
    with pytest.raises(WeightsError, match=r'need spandrel: pip install "superres\[spandrel\]"'):
        load_model(path)


def test_api_takes_a_community_model_file(tmp_path, one_thread):
    _, path = save(tmp_path, "swinir-x2.pth")
    result = superres.upscale(photo(), model=path, tile=None, device="cpu")
    assert result.shape == (40, 48, 3) and result.dtype == np.uint8
