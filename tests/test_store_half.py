"""tools/store_half.py: a file is rewritten in float16, metadata unchanged, only within the PSNR tolerance."""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from superres.models import build_model
from superres.weights import save_weights

_PATH = Path(__file__).resolve().parents[1] / "tools" / "store_half.py"
_SPEC = importlib.util.spec_from_file_location("store_half", _PATH)
store_half = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(store_half)


def float_dtypes(path: Path) -> set[torch.dtype]:
    return {v.dtype for v in load_file(str(path)).values() if v.is_floating_point()}


def run(monkeypatch, capsys, *argv: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["store_half", *argv])
    store_half.main()
    return json.loads(capsys.readouterr().out)


def test_a_file_is_halved_with_its_metadata_or_left_alone(tmp_path, monkeypatch, capsys):
    rng = torch.Generator().manual_seed(0)
    (tmp_path / "val").mkdir()
    for i in range(2):
        pixels = (torch.rand(32, 32, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / "val" / f"{i}.png")
    torch.manual_seed(0)
    args = {"channels": 8, "num_blocks": 1}
    path = save_weights(tmp_path / "m.safetensors", build_model("rescnn", **args), arch="rescnn", args=args, scale=4,
                        degradation="realistic", metrics={"set5/psnr_y": 20.0}, recipe={"loss": "l1"})
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    data = ["--data", str(tmp_path / "val"), "--images", "2"]

    line = run(monkeypatch, capsys, *data, "--tolerance", "-1", str(path))  # nothing is within a negative tolerance
    assert not line["stored_fp16"] and float_dtypes(path) == {torch.float32}
    assert set(line["psnr_y_fp32"]) == {"bicubic", "camera"}

    line = run(monkeypatch, capsys, *data, str(path))
    assert line["stored_fp16"] and line["largest_psnr_change"] <= 0.01
    assert float_dtypes(path) == {torch.float16}
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == metadata
