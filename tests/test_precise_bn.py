"""Batch-norm statistics recomputed over many batches (superres.precise_bn) and tools/precise_bn.py."""

import importlib.util
import json
import sys
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from torch import nn

from superres.models import build_model
from superres.precise_bn import recalibrate
from superres.weights import read_info, save_weights

_PATH = Path(__file__).resolve().parents[1] / "tools" / "precise_bn.py"
_SPEC = importlib.util.spec_from_file_location("precise_bn_tool", _PATH)
precise_bn_tool = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(precise_bn_tool)


def conv_bn(generator: torch.Generator) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    model[1].running_mean.uniform_(5, 6, generator=generator)  # far from anything the batches give
    model[1].running_var.uniform_(50, 60, generator=generator)
    return model


def test_statistics_become_the_equal_weight_average_over_the_batches(generator):
    model = conv_bn(generator)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    batches = [torch.randn(2, 3, 8, 8, generator=generator) * (1 + i) + i for i in range(5)]
    with torch.no_grad():
        features = [model[0](x).transpose(0, 1).flatten(1) for x in batches]  # (channels, values)
    assert recalibrate(model, iter(batches)) == 5
    bn = model[1]
    torch.testing.assert_close(bn.running_mean, torch.stack([f.mean(1) for f in features]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([f.var(1) for f in features]).mean(0))
    assert bn.momentum == 0.1 and not model.training and int(bn.num_batches_tracked) == 5
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_no_batches_or_no_batch_norm_change_nothing(generator):
    model = conv_bn(generator)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recalibrate(model, iter([])) == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items()) and model[1].momentum == 0.1
    assert recalibrate(nn.Conv2d(3, 3, 1), iter([torch.zeros(1, 3, 4, 4)])) == 0


def test_the_tool_rewrites_statistics_keeps_metadata_and_reports_validation(tmp_path, monkeypatch, capsys):
    rng = torch.Generator().manual_seed(1)
    for folder in ("train", "val"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            pixels = (torch.rand(40, 40, 3, generator=rng) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / folder / f"{i}.png")
    (tmp_path / "x1.toml").write_text(f"""name = "x1"
[model]
arch = "rescnn"
args = {{ scale = 1, channels = 4, num_blocks = 1 }}
[data]
train_roots = ["{tmp_path / 'train'}"]
degradation = "realistic"
scale = 1
patch_size = 16
batch_size = 2
[train]
steps = 1
device = "cpu"
precision = "fp32"
val_every = 1
val_roots = ["{tmp_path / 'val'}"]
val_conditions = ["blur", "noise"]
""")
    torch.manual_seed(0)
    args = {"scale": 1, "channels": 4, "num_blocks": 1}
    source = save_weights(tmp_path / "m.safetensors", build_model("rescnn", **args), arch="rescnn", args=args,
                          scale=1, degradation="realistic", recipe={"steps": 1})
    monkeypatch.setattr(sys, "argv", ["precise_bn", str(source), "--config", str(tmp_path / "x1.toml"),
                                      "--batches", "3", "-o", str(tmp_path / "out.safetensors")])
    precise_bn_tool.main()
    line = json.loads(capsys.readouterr().out)
    assert line["batches"] == 3 and {"val/psnr/blur", "val/psnr/noise"} <= line["val_after"].keys()
    info = read_info(tmp_path / "out.safetensors")
    assert info.recipe == {"steps": 1, "precise_bn_batches": 3} and info.args == args and info.scale == 1
    with safe_open(str(tmp_path / "out.safetensors"), framework="pt") as handle:
        assert int(handle.get_tensor("body.0.body.1.num_batches_tracked")) == 3
