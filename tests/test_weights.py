import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from superres.models import build_model
from superres.weights import DEFAULTS, WeightsError, catalogue, interpolate, load_model, read_info, resolve, save_weights

ARGS = {"scale": 4, "channels": 8, "num_blocks": 1}


@pytest.fixture
def saved(tmp_path):
    model = build_model("rescnn", **ARGS).eval()
    path = save_weights(
        tmp_path / "rescnn-x4-test-v1.safetensors",
        model,
        arch="rescnn",
        args=ARGS,
        scale=4,
        degradation="bicubic",
        metrics={"set5_psnr_y": 30.0},
        recipe={"steps": 10},
    )
    return model, path


def test_round_trip_rebuilds_the_model_from_the_file_alone(saved, generator):
    model, path = saved
    loaded = load_model(str(path))
    lq = torch.rand(1, 3, 8, 8, generator=generator)
    assert torch.equal(model(lq), loaded(lq))
    info = read_info(path)
    assert (info.arch, info.args, info.scale, info.degradation) == ("rescnn", ARGS, 4, "bicubic")
    assert info.metrics == {"set5_psnr_y": 30.0} and info.recipe == {"steps": 10}
    assert not list(path.parent.glob("*.partial"))


def test_float16_storage_halves_the_file_and_loads_as_float32(saved, tmp_path, generator):
    model, full = saved
    half = save_weights(tmp_path / "half.safetensors", model, arch="rescnn", args=ARGS, scale=4,
                        degradation="bicubic", storage=torch.float16)
    assert {v.dtype for v in load_file(str(half)).values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    lq = torch.rand(1, 3, 8, 8, generator=generator)
    with torch.no_grad():
        rounded = build_model("rescnn", **ARGS).eval()
        rounded.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
        assert torch.equal(loaded(lq), rounded(lq))  # exactly the weights rounded once to float16


def test_bicubic_needs_no_file():
    model = load_model("bicubic")
    assert model.scale == 4 and resolve("bicubic") is None


def _rewrite(path, tensors=None, metadata_update=None):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata())
    metadata.update(metadata_update or {})
    save_file(tensors if tensors is not None else load_file(str(path)), str(path), metadata=metadata)


def test_missing_tensor_is_named(saved):
    _, path = saved
    tensors = load_file(str(path))
    del tensors["tail.weight"]
    _rewrite(path, tensors)
    with pytest.raises(WeightsError, match="missing 1 tensors.*tail.weight"):
        load_model(str(path))


def test_wrong_shape_is_named(saved):
    _, path = saved
    tensors = load_file(str(path))
    tensors["tail.bias"] = torch.zeros(5)
    _rewrite(path, tensors)
    with pytest.raises(WeightsError, match=r"wrong shapes.*tail.bias \(5,\)"):
        load_model(str(path))


@pytest.mark.parametrize(
    "update, message",
    [({"arch": "edsr"}, "unknown architecture"), ({"args": "{not json"}, "not valid JSON"), ({"args": json.dumps({"channels": 16, "scale": 4, "num_blocks": 1})}, "do not match")],
)
def test_bad_metadata_is_a_clear_error(saved, update, message):
    _, path = saved
    _rewrite(path, metadata_update=update)
    with pytest.raises(WeightsError, match=message):
        load_model(str(path))


def test_garbage_and_missing_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(WeightsError, match="not a readable"):
        load_model(str(bad))
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(str(tmp_path / "none.safetensors"))
    with pytest.raises(WeightsError, match="unknown model"):
        load_model("no-such-model")


def test_pth_files_load_with_weights_only(tmp_path, generator):
    model = build_model("cnn", channels=8).eval()
    path = tmp_path / "cnn.pth"
    torch.save({"arch": "cnn", "args": {"channels": 8, "scale": 4}, "state_dict": model.state_dict()}, path)
    lq = torch.rand(1, 3, 6, 6, generator=generator)
    assert torch.equal(load_model(str(path))(lq), model(lq))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"arch": "cnn", "args": {}, "state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="not a loadable .pth"):
        load_model(str(tmp_path / "evil.pth"))


def test_every_shipped_file_loads_and_names_its_recipe():
    for info in catalogue():
        model = load_model(info.name)
        assert model.scale == info.scale
        assert info.recipe and info.degradation in ("bicubic", "div2k-unknown", "realistic")


def test_the_aliases_name_models_for_any_photo():
    """rescnn, cnn, gan and repattn are what people try first: each must be trained for the realistic mix, not one
    blur."""
    assert set(DEFAULTS) == {"rescnn", "cnn", "gan", "repattn"}
    for alias in DEFAULTS:
        assert load_model(alias).info.degradation == "realistic", alias


def tiny_rescnn(tmp_path, seed: int, name: str, **args):
    torch.manual_seed(seed)
    args = {"channels": 8, "num_blocks": 1} | args
    model = build_model("rescnn", **args)
    for module in model.modules():  # batch norm statistics that differ between the two files
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
    return save_weights(tmp_path / name, model, arch="rescnn", args=args, scale=4, degradation="realistic",
                        recipe={"loss": "l1"})


def test_interpolation_blends_every_tensor_between_the_two_files(tmp_path):
    sharp, smooth = tiny_rescnn(tmp_path, 0, "sharp.safetensors"), tiny_rescnn(tmp_path, 1, "smooth.safetensors")
    a, b = load_model(sharp).state_dict(), load_model(smooth).state_dict()
    for alpha, expected in ((1.0, a), (0.0, b)):
        blended = interpolate(sharp, smooth, alpha).state_dict()
        assert all(torch.allclose(blended[k].float(), expected[k].float()) for k in a)
    half = interpolate(sharp, smooth, 0.25)
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(half.state_dict()[k], 0.25 * a[k] + 0.75 * b[k], atol=1e-6), k
    assert half.info.recipe == {"loss": "l1"}


def test_interpolation_refuses_other_architectures_and_alphas_outside_0_1(tmp_path):
    sharp, other = tiny_rescnn(tmp_path, 0, "a.safetensors"), tiny_rescnn(tmp_path, 1, "b.safetensors", num_blocks=2)
    with pytest.raises(WeightsError, match="cannot interpolate"):
        interpolate(sharp, other, 0.5)
    with pytest.raises(WeightsError, match=r"alpha must lie in \[0, 1\]"):
        interpolate(sharp, sharp, 1.5)
    with pytest.raises(WeightsError, match="two superres weights files"):
        interpolate(sharp, "bicubic", 0.5)
