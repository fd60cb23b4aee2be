from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from superres.config import RunConfig, load_config, loads_config, parse_override, to_toml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
MINIMAL = '[model]\narch = "cnn"\n[data]\ntrain_roots = ["a"]\n'


def test_every_shipped_config_loads_and_round_trips():
    assert {p.name for p in CONFIGS} >= {
        "cnn_x4_bicubic.toml", "cnn_x4_div2k_unknown.toml", "rescnn_x4_bicubic.toml",
        "rescnn_x4_div2k_unknown.toml", "gan_x4_div2k_unknown.toml", "tiny.toml",
    }  # fmt: skip
    for path in CONFIGS:
        config = load_config(path)
        assert loads_config(to_toml(config)) == config, path.name
        named = re.search(r"_x(\d)_", path.name)
        assert config.data.scale == (int(named[1]) if named else 4), path.name  # the name says the scale
        if config.model.arch:
            assert config.model.args["scale"] == config.data.scale, path.name
        # the data split: train only on train/, validate only on val/
        assert all(root.startswith("../shared/data/train/") for root in config.data.train_roots), path.name
        assert all(root.startswith("../shared/data/val/") for root in config.train.val_roots), path.name


def test_seed_recipes():
    cnn = load_config(CONFIGS[0].parent / "cnn_x4_bicubic.toml")
    rescnn = load_config(CONFIGS[0].parent / "rescnn_x4_div2k_unknown.toml")
    assert (cnn.model.arch, cnn.train.loss, cnn.data.batch_size) == ("cnn", "l1", 16)
    assert (rescnn.model.arch, rescnn.train.loss, rescnn.train.lr) == ("rescnn", "mse", 1e-4)
    assert rescnn.data.degradation == "div2k-unknown"
    assert len(cnn.data.train_roots) == 4


def test_overrides_are_toml_values_with_string_fallback():
    config = loads_config(
        MINIMAL,
        ["train.lr=2e-4", "train.steps=50", "train.lr_milestones=[10, 20]", "model.args.channels=8",
         "name=my-run", "data.train_roots=['x', 'y']", "train.channels_last=true", "train.max_minutes=1"],
    )  # fmt: skip
    assert config.train.lr == 2e-4 and config.train.steps == 50
    assert config.train.lr_milestones == (10, 20)
    assert config.model.args == {"channels": 8}
    assert config.name == "my-run"
    assert config.data.train_roots == ("x", "y")
    assert config.train.channels_last is True
    assert config.train.max_minutes == 1.0 and isinstance(config.train.max_minutes, float)
    assert parse_override("gan.generator_weights=runs/a/best.safetensors") == (
        ["gan", "generator_weights"], "runs/a/best.safetensors"
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "train.lrr"),
        ("trian.lr=1", "trian"),
        ("bogus=1", "bogus"),
        ("train.steps=1.5", "train.steps"),
        ("train.steps='10'", "train.steps"),
        ("train.channels_last=1", "train.channels_last"),
        ("train.betas=[0.9]", "train.betas"),
        ("train.loss='l3'", "train.loss"),
        ("mode='adversarial'", "mode"),
        ("train.lr_milestones=[20, 10]", "lr_milestones"),
        ("train.lr", "section.key=value"),
        ("data.patch_size=90", "patch_size"),
        ("gan.adv_loss='ragan'", "gan.adv_loss"),
        ("gan.discriminator='patch'", "gan.discriminator"),
        ("gan.fft_weight=-1", "gan.fft_weight"),
        ("gan.content_loss='vgg22'", "gan.content_loss"),
        ("train.ema_decay=1.0", "train.ema_decay"),
    ],
)
def test_bad_keys_and_values_are_clear_errors(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        loads_config(MINIMAL, [override])


def test_required_fields_and_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="model.arch"):
        loads_config("")
    with pytest.raises(ValueError, match="generator_weights"):
        loads_config('mode = "gan"')
    with pytest.raises(ValueError, match="invalid TOML"):
        loads_config("[train\n")
    with pytest.raises(ValueError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_config_is_frozen():
    config = loads_config(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0  # type: ignore[misc]
    changed = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=1.0))
    assert changed.train.lr == 1.0 and config.train.lr != 1.0
    assert isinstance(changed, RunConfig)


def test_to_toml_escapes_strings_and_keys():
    odd = 'quote " backslash \\ tab \t newline \n del \x7f accent é'
    config = loads_config(MINIMAL, [f"name={to_toml_string(odd)}", 'model.args."a key"=1', "train.lr=1e-300"])
    assert config.name == odd and config.model.args == {"a key": 1}
    assert loads_config(to_toml(config)) == config


def to_toml_string(text: str) -> str:
    from superres.config import toml_value

    return toml_value(text)
