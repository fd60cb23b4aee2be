"""Restoration at the same size: x1 models, the classical baselines, and `superres restore`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from superres.cli import main
from superres.data.conditions import CONDITIONS, applies, condition_lq
from superres.imageio import encode_decode
from superres.metrics import psnr
from superres.models import build_model
from superres.models.classical import for_condition, noise_sigma
from superres.train import TrainingError, init_from
from superres.weights import load_model, save_weights


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def smooth_photo(size=64, seed=0) -> torch.Tensor:
    """(3, size, size) in [0, 1]: a few soft shapes with edges, something a blur visibly damages."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.5 + 0.3 * np.sin(6 * x + c) * np.cos(5 * y - c) for c in range(3)])
    for _ in range(4):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        image[:, (y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 1, (3, 1))
    return torch.from_numpy(image.clip(0, 1)).float()


@pytest.fixture
def x1_weights(tmp_path):
    """A tiny x1 rescnn with a non-zero tail (so it is not the identity), saved as a weights file."""
    torch.manual_seed(0)
    args = {"scale": 1, "channels": 8, "num_blocks": 1}
    model = build_model("rescnn", **args).eval()
    with torch.no_grad():
        model.tail.weight.normal_(0, 0.01)
    path = tmp_path / "rescnn-x1-tiny-v1.safetensors"
    save_weights(path, model, arch="rescnn", args=args, scale=1, degradation="realistic")
    return path


@pytest.mark.parametrize("arch", ["cnn", "rescnn"])
def test_an_untrained_x1_model_is_the_identity_and_keeps_the_size(arch):
    torch.manual_seed(0)
    model = build_model(arch, scale=1).eval()
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.equal(y, x)
    assert not any(name.startswith("upsample.") for name, _ in model.named_parameters())


def test_an_x1_model_starts_from_the_features_of_an_x4_one():
    torch.manual_seed(0)
    args4, args1 = {"scale": 4, "channels": 8, "num_blocks": 2}, {"scale": 1, "channels": 8, "num_blocks": 2}
    x4 = build_model("rescnn", **args4)
    x4.info = type("Info", (), {"arch": "rescnn", "args": args4})()
    x1 = build_model("rescnn", **args1)
    init_from(x1, x4, "rescnn", args1)
    for name, tensor in x1.state_dict().items():
        if name.startswith(("head.", "body")):
            assert torch.equal(tensor, x4.state_dict()[name]), name
    assert not x1.tail.weight.any()  # the tail stays at zero: still the identity
    with pytest.raises(TrainingError, match="init_weights holds"):
        init_from(build_model("rescnn", scale=1, channels=8, num_blocks=1), x4, "rescnn",
                  {"scale": 1, "channels": 8, "num_blocks": 1})


def test_a_nearest_conv_model_starts_from_the_features_of_a_pixel_shuffle_one():
    torch.manual_seed(0)
    args, nearest = {"scale": 4, "channels": 8, "num_blocks": 2}, {"scale": 4, "channels": 8, "num_blocks": 2,
                                                                   "upsampler": "nearest-conv"}
    start = build_model("rescnn", **args)
    start.info = type("Info", (), {"arch": "rescnn", "args": args})()  # a file from before the option
    model = build_model("rescnn", **nearest)
    fresh = model.upsample[0][1].weight.clone()
    init_from(model, start, "rescnn", nearest)
    for name, tensor in model.state_dict().items():
        if name.startswith(("head.", "body")):
            assert torch.equal(tensor, start.state_dict()[name]), name
    assert torch.equal(model.upsample[0][1].weight, fresh)  # the upsampler is left to training


def test_at_x1_only_the_damaging_conditions_exist():
    assert [n for n in CONDITIONS if applies(n, 1)] == ["blur", "noise", "jpeg", "camera", "jpeg90"]
    assert [n for n in CONDITIONS if not applies(n, 4)] == ["jpeg90"] and not applies("div2k-unknown", 2)
    gt = smooth_photo(32)
    lq = condition_lq(gt, "blur", 1)
    assert lq.shape == gt.shape and 20 < psnr(lq, gt) < 45
    with pytest.raises(ValueError, match="does not exist at x1"):
        condition_lq(gt, "bicubic", 1)
    with pytest.raises(ValueError, match="does not exist at x4"):
        condition_lq(gt, "jpeg90")
    assert torch.equal(condition_lq(gt, "jpeg90", 1), encode_decode(gt, "JPEG", 90)[0])  # Pillow, quality 90 only


def test_the_noise_estimate_finds_the_sigma_of_white_noise():
    image = smooth_photo(128).permute(1, 2, 0).double().numpy()
    noisy = image + np.random.default_rng(0).normal(0, 10 / 255, image.shape)
    assert noise_sigma(image) < 2 / 255
    assert noise_sigma(noisy) == pytest.approx(10 / 255, rel=0.15)


def test_the_oracle_baselines_undo_the_damage_they_are_told_of():
    gt = smooth_photo(64)
    for name, baseline in (("blur", "richardson-lucy"), ("noise", "nl-means")):
        lq = condition_lq(gt, name, 1)
        restored = for_condition(load_model(baseline), name)(lq[None])[0]
        assert restored.shape == gt.shape
        assert psnr(restored, gt, crop_border=1) > psnr(lq, gt, crop_border=1) + 1.0, (name, baseline)
    lq = condition_lq(gt, "noise", 1)  # Richardson-Lucy with no blur in the condition: the input, unchanged
    assert torch.equal(for_condition(load_model("richardson-lucy"), "noise")(lq[None])[0], lq)
    with pytest.raises(ValueError, match="needs a test condition"):
        load_model("nl-means")(lq[None])


def test_restore_keeps_the_size_and_upscale_refuses_an_x1_model(tmp_path, capsys, x1_weights):
    image = (smooth_photo(40).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    code, out, err = run(capsys, "restore", tmp_path / "a.png", "-o", tmp_path / "r.png", "--model", x1_weights)
    assert code == 0, err
    assert "x1 (same size)" in out
    with Image.open(tmp_path / "r.png") as restored:
        assert restored.size == (40, 40)
    code, _, err = run(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "u.png", "--model", x1_weights)
    assert code == 2 and err.count("\n") == 1 and "superres restore" in err and not (tmp_path / "u.png").exists()
    code, _, err = run(capsys, "restore", tmp_path / "a.png", "-o", tmp_path / "v.png", "--model", "bicubic")
    assert code == 2 and err.count("\n") == 1 and "superres upscale" in err and not (tmp_path / "v.png").exists()


def test_benchmark_at_x1_has_the_four_conditions_and_the_baselines(tmp_path, capsys, x1_weights):
    hr = tmp_path / "set" / "HR"
    hr.mkdir(parents=True)
    for i in range(2):
        array = (smooth_photo(32, seed=i).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(hr / f"im{i}.png")
    code, out, err = run(capsys, "benchmark", "--models", f"input,richardson-lucy,nl-means,{x1_weights}",
                         "--data", tmp_path / "set", "--degradations", "all", "--out", tmp_path / "b")
    assert code == 0, err
    rows = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert {r["degradation"] for r in rows} == {"blur", "noise", "jpeg", "camera", "jpeg90"} and len(rows) == 20
    score = {(r["model"], r["degradation"]): r["psnr_y"] for r in rows}
    assert score["richardson-lucy", "blur"] > score["input", "blur"]
    assert score["nl-means", "noise"] > score["input", "noise"]
    assert score["richardson-lucy", "noise"] == score["input", "noise"]
    code, _, err = run(capsys, "evaluate", "--model", "input", "--data", tmp_path / "set")
    assert code == 2 and "--degradation" in err


def test_restore_defaults_to_the_shipped_model_which_deblurs_a_real_photo(tmp_path, capsys, shared_data):
    """`superres restore` without --model runs rescnn-x1-general; on a 96 px crop of a Kodak24 photo under the
    `camera` condition (blur, noise, JPEG) its output is over 1 dB closer to the photo than the input is."""
    from superres.imageio import read_rgb

    gt = read_rgb(shared_data / "val" / "kodak24" / "kodim03.png")[:, 200:296, 300:396].contiguous()
    lq = condition_lq(gt, "camera", 1)
    Image.fromarray((lq.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "lq.png")
    code, out, err = run(capsys, "restore", tmp_path / "lq.png", "-o", tmp_path / "r.png", "--precision", "fp32")
    assert code == 0, err
    assert "rescnn-x1-general" in out
    restored = read_rgb(tmp_path / "r.png")
    assert restored.shape == gt.shape
    assert psnr(restored, gt, crop_border=1, y_channel=True) > psnr(lq, gt, crop_border=1, y_channel=True) + 1.0
