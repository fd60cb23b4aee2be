import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from superres.inference import _windows, upscale
from superres.metrics import psnr
from superres.models import build_model
from superres.optimize import (
    FastModel,
    PreparedModel,
    SelfEnsemble,
    copy_folded,
    fold_batchnorm,
    load_for_inference,
    optimize_for_inference,
)
from superres.weights import WeightsInfo, load_model, read_info, save_weights

_PATH = Path(__file__).resolve().parents[1] / "tools" / "fold_bn.py"
_SPEC = importlib.util.spec_from_file_location("fold_bn_tool", _PATH)
fold_bn_tool = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fold_bn_tool)

CPU = torch.device("cpu")


def smooth(shape, generator, passes=2):
    """A photo-like image: seeded noise, box-blurred."""
    image = torch.rand(1, *shape, generator=generator)
    for _ in range(passes):
        image = nn.functional.avg_pool2d(image, 3, 1, 1, count_include_pad=False)
    return image[0]


@pytest.fixture
def tiny_rescnn(generator):
    """A tiny ResCNN whose batch norms hold non-trivial statistics and affine parameters, as after training."""
    torch.manual_seed(0)
    model = build_model("rescnn", channels=8, num_blocks=2)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.uniform_(-0.2, 0.2, generator=generator)
    return model.eval()


def test_fold_batchnorm_keeps_the_output_and_leaves_the_original_alone(tiny_rescnn, generator):
    folded = fold_batchnorm(tiny_rescnn)
    x = torch.rand(2, 3, 12, 14, generator=generator)
    with torch.no_grad():
        assert torch.allclose(folded(x), tiny_rescnn(x), atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in tiny_rescnn.modules()) == 5  # 2 blocks x 2, plus body_tail


def test_copy_folded_gives_the_model_without_batch_norm_the_same_output(tiny_rescnn, generator):
    plain = copy_folded(tiny_rescnn, build_model("rescnn", channels=8, num_blocks=2, batch_norm=False)).eval()
    x = torch.rand(2, 3, 12, 14, generator=generator)
    with torch.no_grad():
        assert torch.allclose(plain(x), tiny_rescnn(x), atol=1e-5)
    with pytest.raises(ValueError, match="does not have the parameters"):
        copy_folded(tiny_rescnn, build_model("rescnn", channels=8, num_blocks=3, batch_norm=False))


def test_fold_bn_tool_writes_the_same_network_without_batch_norm(tiny_rescnn, tmp_path, monkeypatch, capsys):
    args = {"channels": 8, "num_blocks": 2}
    source = save_weights(tmp_path / "bn.safetensors", tiny_rescnn, arch="rescnn", args=args, scale=4,
                          degradation="realistic", recipe={"steps": 5})
    monkeypatch.setattr(sys, "argv", ["fold_bn", str(source), "-o", str(tmp_path / "plain.safetensors")])
    fold_bn_tool.main()
    assert json.loads(capsys.readouterr().out)["max_difference"] < 1e-5
    info = read_info(tmp_path / "plain.safetensors")
    assert info.args == {**args, "batch_norm": False} and info.recipe["batch_norm_folded_from"] == str(source)
    plain = load_model(tmp_path / "plain.safetensors")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    monkeypatch.setattr(sys, "argv", ["fold_bn", str(tmp_path / "plain.safetensors"), "-o", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="not a ResCNN with batch norm"):
        fold_bn_tool.main()


def test_self_ensemble_averages_the_eight_orientations_each_undone(tiny_rescnn, generator):
    ensemble = SelfEnsemble(tiny_rescnn)
    x = torch.rand(1, 3, 6, 9, generator=generator)  # not square: rotations swap the sides
    with torch.no_grad():
        out = ensemble(x)
        by_hand = []
        for turns in range(4):  # the transposes among the eight written apart from the flips
            by_hand.append(tiny_rescnn(x.rot90(turns, (2, 3))).rot90(-turns, (2, 3)))
            by_hand.append(tiny_rescnn(x.rot90(turns, (2, 3)).flip(2)).flip(2).rot90(-turns, (2, 3)))
        assert out.shape == (1, 3, 24, 36)
        torch.testing.assert_close(out, torch.stack(by_hand).mean(0), atol=1e-5, rtol=0)
        assert not torch.allclose(out, tiny_rescnn(x), atol=1e-3)  # the tiny model is not equivariant


def test_prepared_model_with_ensemble_runs_every_precision_through_it(tiny_rescnn):
    args = {"channels": 8, "num_blocks": 2}
    tiny_rescnn.info = WeightsInfo("tiny", None, "rescnn", args, 4, "bicubic")
    prepared = PreparedModel(tiny_rescnn, device=CPU, precision="fp32", ensemble=True)
    assert prepared.info.name == "tiny+x8" and tiny_rescnn.info.name == "tiny"
    assert isinstance(prepared.at(), SelfEnsemble) and isinstance(prepared.at("bf16").model, FastModel)
    assert prepared.at().info.name == "tiny+x8"


def test_fp32_fast_model_matches_the_trained_model(tiny_rescnn, generator):
    fast = optimize_for_inference(tiny_rescnn, device=CPU, precision="fp32")
    x = torch.rand(1, 3, 9, 11, generator=generator)
    with torch.no_grad():
        out = fast(x)
        assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == (1, 3, 36, 44)
        assert torch.allclose(out, tiny_rescnn(x), atol=1e-5)
    assert fast.scale == 4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_paths_stay_within_the_quality_tolerance(tiny_rescnn, precision, generator):
    """The issue's bar: PSNR-Y within 0.02 dB of fp32 and 99.9% of pixels within 2/255 (here on a tiny model)."""
    lq = smooth((3, 40, 48), generator)
    gt = nn.functional.interpolate(lq[None], scale_factor=4, mode="bicubic")[0].clamp(0, 1)
    reference = upscale(tiny_rescnn, lq)
    fast = upscale(optimize_for_inference(tiny_rescnn, device=CPU, precision=precision), lq)
    reference_u8, fast_u8 = (reference * 255).round(), (fast * 255).round()
    assert ((fast_u8 - reference_u8).abs() > 2).float().mean() <= 0.001
    gap = psnr(fast_u8 / 255, gt, crop_border=4, y_channel=True) - psnr(reference_u8 / 255, gt, crop_border=4, y_channel=True)
    assert abs(gap) <= 0.02


@pytest.mark.parametrize("name", ["cnn", "rescnn", "gan", "rescnn-x1-general"])
def test_shipped_models_in_bf16_stay_within_the_quality_tolerance(name, shared_data):
    """The same bar on a real photo (a corner of Set5 'baby' LR) with the shipped weights."""
    from superres.imageio import read_rgb

    lq = read_rgb(shared_data / "benchmarks" / "set5" / "LR_bicubic" / "X4" / "img_001.png")[:, :48, :48]
    reference = upscale(load_for_inference(name, device="cpu", precision="fp32"), lq)
    fast = upscale(load_for_inference(name, device="cpu", precision="bf16"), lq)
    differs = ((fast * 255).round() - (reference * 255).round()).abs() > 2
    assert differs.float().mean() <= 0.001


def test_bicubic_is_left_as_it_is():
    model = load_for_inference("bicubic", device="cpu", precision="bf16")
    assert not isinstance(model, FastModel)
    x = torch.rand(1, 3, 8, 8)
    assert model(x).dtype == torch.float32 and model.info.name == "bicubic"


def test_unknown_precision_is_refused(tiny_rescnn):
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(tiny_rescnn, device=CPU, precision="int8")


@pytest.mark.parametrize("length, tile, overlap", [(37, 16, 12), (100, 24, 8), (20, 7, 12), (64, 64, 0), (65, 32, 4)])
def test_tile_windows_cover_every_pixel_with_context(length, tile, overlap):
    window, windows = _windows(length, tile, overlap)
    assert window == min(tile + 2 * overlap, length)
    covered = []
    for start, core, window_start in windows:
        covered += range(start, start + core)
        assert 0 <= window_start and window_start + window <= length
        assert start - window_start >= min(overlap, start)  # context before, or the border
        assert window_start + window - (start + core) >= min(overlap, length - start - core)  # context after
    assert sorted(set(covered)) == list(range(length))  # the last core may overlap the one before


def test_batched_tiles_equal_one_tile_at_a_time(tiny_rescnn, generator):
    image = torch.rand(3, 45, 61, generator=generator)
    single = upscale(tiny_rescnn, image, tile=16, overlap=8)
    batched = upscale(tiny_rescnn, image, tile=16, overlap=8, batch=5)
    assert torch.allclose(single, batched, atol=1e-5)


class OutOfMemoryWhen(nn.Module):
    """`model`, but raising CUDA's out-of-memory error on inputs where `too_big(x)`; records every input's shape."""

    def __init__(self, model, too_big):
        super().__init__()
        self.model, self.too_big, self.shapes, self.scale = model, too_big, [], model.scale

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        if self.too_big(x):
            raise torch.OutOfMemoryError("simulated")
        return self.model(x)


def test_out_of_memory_halves_the_batch_then_goes_on(tiny_rescnn, generator):
    flaky = OutOfMemoryWhen(tiny_rescnn, lambda x: x.shape[0] > 2)
    image = torch.rand(3, 40, 40, generator=generator)
    out = upscale(flaky, image, tile=16, overlap=8, batch=8)
    batches = [shape[0] for shape in flaky.shapes]
    assert batches[:3] == [8, 4, 2] and max(batches[3:]) <= 2
    assert torch.allclose(out, upscale(tiny_rescnn, image, tile=16, overlap=8), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_half_precision_batched_tiles_match_cpu_fp32(tiny_rescnn, precision, generator):
    image = smooth((3, 40, 52), generator)
    reference = upscale(tiny_rescnn, image)
    fast = optimize_for_inference(tiny_rescnn, device=torch.device("cuda"), precision=precision)
    out = upscale(fast, image, tile=16, overlap=8, batch=4)
    assert ((out * 255).round() - (reference * 255).round()).abs().gt(2).float().mean() <= 0.001


def test_out_of_memory_on_the_whole_image_falls_back_to_tiles(tiny_rescnn, generator):
    small = OutOfMemoryWhen(tiny_rescnn, lambda x: x.shape[-2] * x.shape[-1] > 64 * 64)
    image = smooth((3, 60, 70), generator)
    out = upscale(small, image, overlap=12)  # more than the tiny model's receptive radius
    assert small.shapes[0] == (1, 3, 60, 70) and len(small.shapes) > 2
    assert torch.allclose(out, upscale(tiny_rescnn, image), atol=1e-5)


def test_auto_keeps_16_bit_pictures_in_fp32(tiny_rescnn, monkeypatch):
    import superres.runtime

    monkeypatch.setattr(superres.runtime, "cpu_supports_bf16", lambda: True)
    prepared = PreparedModel(tiny_rescnn, device=CPU, precision="auto")
    assert prepared.for_picture(8).dtype == torch.bfloat16
    assert prepared.for_picture(16).dtype == torch.float32
    assert prepared.for_picture(8) is prepared.for_picture(8)  # each version made once
    explicit = PreparedModel(tiny_rescnn, device=CPU, precision="bf16")
    assert explicit.for_picture(16).dtype == torch.bfloat16  # an explicit choice holds for every picture


def test_bf16_would_cut_a_16_bit_output_to_a_few_hundred_levels(tiny_rescnn, generator):
    """Why `auto` runs 16-bit pictures in fp32: distinct output values of a smooth ramp."""
    ramp = torch.linspace(0.2, 0.8, 48).view(1, 1, 48).expand(3, 48, 48).contiguous()
    levels = {p: len(torch.unique((upscale(optimize_for_inference(tiny_rescnn, device=CPU, precision=p), ramp)
                                   * 65535).round())) for p in ("fp32", "bf16")}
    assert levels["fp32"] > 4 * levels["bf16"]


@pytest.mark.parametrize("arch", ["cnn", "rescnn"])
def test_16_bit_versions_never_round_the_input(arch):
    from superres.optimize import Float32Entry

    torch.manual_seed(0)
    model = build_model(arch, channels=8, **({"num_blocks": 1} if arch == "rescnn" else {})).eval()
    fast = optimize_for_inference(model, device=CPU, precision="bf16")
    entry = fast.model.head[0]
    assert isinstance(entry, Float32Entry) and entry.conv.weight.dtype == torch.float32
    assert all(b.dtype == torch.float32 for b in fast.model.buffers())  # the cnn's mean colour
    assert fast.model.tail.weight.dtype == torch.bfloat16
