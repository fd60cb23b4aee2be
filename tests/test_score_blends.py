"""tools/score_blends.py: candidates by name or as SHARP@ALPHA blends, scored on a flat validation folder."""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from PIL import Image

from superres.models import build_model
from superres.weights import save_weights

_PATH = Path(__file__).resolve().parents[1] / "tools" / "score_blends.py"
_SPEC = importlib.util.spec_from_file_location("score_blends", _PATH)
score_blends = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(score_blends)


def tiny(path: Path, seed: int) -> str:
    torch.manual_seed(seed)
    args = {"channels": 8, "num_blocks": 1}
    save_weights(path, build_model("rescnn", **args), arch="rescnn", args=args, scale=4, degradation="realistic",
                 recipe={"loss": "l1"})
    return str(path)


def test_blends_at_the_ends_score_as_their_models(tmp_path, monkeypatch, capsys):
    rng = torch.Generator().manual_seed(0)
    (tmp_path / "val").mkdir()
    for i in range(2):  # a flat folder, as Kodak24 is
        pixels = (torch.rand(32, 32, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / "val" / f"{i}.png")
    sharp, smooth = tiny(tmp_path / "sharp.safetensors", 1), tiny(tmp_path / "smooth.safetensors", 2)
    monkeypatch.setattr(sys, "argv", ["score_blends", "--data", str(tmp_path / "val"), "--smooth", smooth,
                                      "--conditions", "bicubic", smooth, f"{sharp}@0.0", f"{sharp}@1.0", sharp])
    score_blends.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["model"] for line in lines] == [smooth, f"{sharp}@0.0", f"{sharp}@1.0", sharp]
    plain_smooth, at_0, at_1, plain_sharp = (line["bicubic"] for line in lines)
    assert at_0 == plain_smooth and at_1 == plain_sharp
    assert plain_smooth != plain_sharp
    assert set(plain_smooth) == {"psnr_y", "sharpness", "checkerboard", "checkerboard_median"}
