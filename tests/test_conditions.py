"""Named test conditions: deterministic LR per image and condition, real JPEG, real LR files where they exist."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from superres.data.conditions import CONDITIONS, condition_lq, conditions_at
from superres.data.degrade import bicubic, blur, degrade, gaussian_kernels, quantize
from superres.evaluate import evaluate
from superres.evaluate import test_images as load_test_images
from superres.weights import load_model


def image(seed: int, size=(64, 48)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size[1] // 8, size[0] // 8, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=size[::-1], mode="bicubic", align_corners=False)
    return quantize(x.clamp(0, 1))[0]


def test_each_condition_depends_only_on_the_image_and_its_name():
    a, b = image(0), image(1)
    for name in conditions_at(4):
        lq = condition_lq(a, name)
        assert lq.shape == (3, 12, 16) and torch.equal(lq, quantize(lq))
        assert torch.equal(lq, condition_lq(a.clone(), name))
    noise_a, noise_b = (condition_lq(x, "noise") - condition_lq(x, "bicubic") for x in (a, b))
    assert not torch.allclose(noise_a, noise_b)  # another image, other noise
    assert noise_a.std() * 255 == pytest.approx(10, rel=0.15)


def test_conditions_are_made_as_documented():
    gt = image(2)
    sigma = torch.tensor([1.6])
    blurred = blur(gt[None], gaussian_kernels(sigma, sigma, torch.zeros(1), 21))
    assert torch.equal(condition_lq(gt, "blur"), quantize(bicubic(blurred, 4))[0])
    assert torch.equal(condition_lq(gt, "div2k-unknown"), degrade(gt[None], "div2k-unknown")[0])
    lq = condition_lq(gt, "bicubic")
    u8 = (lq * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(u8).save(buffer, format="JPEG", quality=40)  # Pillow's own encoder, its defaults
    pil = torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).copy()).permute(2, 0, 1) / 255.0
    assert torch.equal(condition_lq(gt, "jpeg"), pil)
    assert not torch.equal(condition_lq(gt, "camera"), condition_lq(gt, "jpeg"))
    with pytest.raises(ValueError, match="unknown test condition"):
        condition_lq(gt, "fog")


def test_real_lr_files_serve_their_condition_and_the_others_are_made(shared_data):
    set5 = shared_data / "benchmarks" / "set5"
    official = load_test_images(set5, degradation="bicubic", scale=4)
    made = condition_lq(official[0][2], "bicubic")
    assert (official[0][1] - made).abs().mean() < 1 / 255  # the official file, close to ours but its own
    for name in ("blur", "noise", "jpeg", "camera"):
        name_, lq, gt = load_test_images(set5, degradation=name, scale=4)[0]
        assert torch.equal(lq, condition_lq(gt.expand(3, -1, -1), name))


def test_bicubic_loses_under_every_damage(shared_data):
    scores = {name: evaluate(load_model("bicubic"), shared_data / "benchmarks" / "set5", model_name="bicubic",
                             degradation=name).psnr_y for name in conditions_at(4)}
    assert scores["bicubic"] == pytest.approx(28.43, abs=0.01)
    assert all(scores[name] < scores["bicubic"] - 0.5 for name in scores if name != "bicubic")
