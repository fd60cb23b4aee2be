import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from superres.cli import main
from superres.config import RunConfig, loads_config
from superres.models import build_model
from superres.train import TrainingError, train
from superres.tune import BASE, SWEEP, SweepSetting, format_markdown, moving_average, run_sweep, sweep_config, write_csv
from superres.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> RunConfig:
    """A GAN config: a 4-channel ResCNN from a weights file, a 4-channel D, 2 patches of 16 px from 3 images."""
    root = tmp_path_factory.mktemp("tune")
    (root / "hr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "hr" / f"t{i}.png")
    torch.manual_seed(0)
    args = {"channels": 4, "num_blocks": 1}
    weights = save_weights(root / "g.safetensors", build_model("rescnn", **args), arch="rescnn", args=args, scale=4,
                           degradation="bicubic")  # fmt: skip
    return loads_config(f"""mode = "gan"
[data]
train_roots = [{json.dumps(str(root / "hr"))}]
patch_size = 16
batch_size = 2
[train]
device = "cpu"
precision = "fp32"
val_roots = [{json.dumps(str(root / "val"))}]
[gan]
generator_weights = {json.dumps(str(weights))}
content_loss = "pixel-l1"
d_args = {{ channels = 4, hidden_features = 16 }}
""")


def test_sweep_is_three_pairs_varying_one_factor_from_the_base():
    assert BASE.lr == 1e-4 and BASE.hidden_layers == 1 and BASE.activation == "leaky_relu"
    assert [(s.factor, s.lr, s.hidden_layers, s.activation) for s in SWEEP] == [
        ("lr", 1e-3, 1, "leaky_relu"),
        ("lr", 1e-4, 1, "leaky_relu"),
        ("hidden_layers", 1e-4, 0, "leaky_relu"),
        ("hidden_layers", 1e-4, 1, "leaky_relu"),
        ("activation", 1e-4, 1, "relu"),
        ("activation", 1e-4, 1, "leaky_relu"),
    ]
    assert len({s.key for s in SWEEP}) == 4


def test_moving_average_uses_the_last_window():
    assert moving_average([10.0, 1.0, 2.0, 3.0], 3) == 2.0
    assert moving_average([4.0], 250) == 4.0
    assert math.isnan(moving_average([], 3))


def test_a_setting_is_the_config_with_its_lr_and_d_head_and_every_other_option_kept(tiny_run):
    config = dataclasses.replace(tiny_run, gan=dataclasses.replace(
        tiny_run.gan, d_betas=(0.5, 0.9), pixel_weight=0.1, fft_weight=0.2, adv_loss="relativistic"))  # fmt: skip
    run = sweep_config(config, SWEEP[4], steps=7)
    t = run.train
    assert (t.steps, t.lr, run.gan.d_lr, t.log_every, t.val_every) == (7, 1e-4, 1e-4, 1, 0)
    assert run.gan.d_args == {"channels": 4, "hidden_features": 16, "hidden_layers": 1, "activation": "relu"}
    assert run.gan.collapse_patience == 0  # a sweep scores a setting whose D wins; it does not stop it
    kept = ("d_betas", "pixel_weight", "fft_weight", "adv_loss", "content_loss", "generator_weights")
    assert all(getattr(run.gan, key) == getattr(config.gan, key) for key in kept)
    assert (run.data, run.train.betas, run.train.seed) == (config.data, config.train.betas, config.train.seed)


def test_sweep_runs_tiny_models_and_writes_six_rows(tiny_run, tmp_path):
    calls = []
    rows = run_sweep(tiny_run, SWEEP, steps=3, window=2,
                     progress=lambda setting, step, logs: calls.append((setting, step)))  # fmt: skip
    assert len(rows) == 6 and [r.setting for r in rows] == list(SWEEP)
    assert len(calls) == 4 * 3  # the base runs once, its result is shared by the three pairs
    assert [r.shared for r in rows] == [False, False, False, True, False, True]
    assert rows[3].curves is rows[1].curves and rows[5].curves is rows[1].curves
    assert rows[3].g_total == rows[5].g_total == rows[1].g_total
    for row in rows:
        assert row.steps == 3 and row.window == 2 and row.diverged_at is None
        assert all(math.isfinite(v) for v in (row.g_total, row.g_content, row.d_loss, row.d_acc_real, row.d_acc_fake))
        assert row.g_total == moving_average(row.curves["g/total"], 2)
        assert row.d_loss == moving_average([r + f for r, f in zip(row.curves["d/real"], row.curves["d/fake"])], 2)
    # every run starts from the same generator and batches, so the first step's content loss is the same for all
    assert len({row.curves["g/content"][0] for row in rows}) == 1

    write_csv(rows, tmp_path / "sweep" / "table1.csv")
    with open(tmp_path / "sweep" / "table1.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 6
    assert [r["factor"] for r in records] == ["lr", "lr", "hidden_layers", "hidden_layers", "activation", "activation"]
    assert float(records[0]["lr"]) == 1e-3 and float(records[0]["g_total"]) == rows[0].g_total

    table = format_markdown(rows).splitlines()
    assert len(table) == 2 + 6
    assert table[0].startswith("| varied | lr |") and "g/total" in table[0]
    assert "| relu |" in table[6]


def test_a_sweep_run_is_the_training_run_of_its_setting(tiny_run, tmp_path):
    """The sweep and `superres train` run the same code: the same numbers, step by step."""
    config = dataclasses.replace(tiny_run, gan=dataclasses.replace(tiny_run.gan, content_loss="disc-features",
                                 adv_loss="relativistic", fft_weight=0.1, pixel_weight=0.1))  # fmt: skip
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, ema_decay=0.9))
    [row] = run_sweep(config, [BASE], steps=3, window=3)
    train(sweep_config(config, BASE, 3), tmp_path)
    with (tmp_path / "log.csv").open(newline="") as f:
        logged = [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f) if r["key"] == "g/total"]
    assert [step for step, _ in logged] == [1, 2, 3]
    assert row.curves["g/total"] == pytest.approx([value for _, value in logged], rel=1e-6)


def test_a_diverging_setting_is_scored_nan(tiny_run):
    [row] = run_sweep(tiny_run, [SweepSetting(factor="lr", lr=1e30)], steps=6, window=2)
    assert row.diverged_at is not None and row.steps == row.diverged_at <= 6
    assert math.isnan(row.g_total) and math.isnan(row.d_loss)


def test_the_sweep_refuses_benchmark_data_and_other_discriminators(tiny_run):
    bench = dataclasses.replace(tiny_run.data, train_roots=("../shared/data/benchmarks/set5/HR",))
    with pytest.raises(TrainingError, match="benchmark data"):
        run_sweep(dataclasses.replace(tiny_run, data=bench), steps=1)
    unet = dataclasses.replace(tiny_run.gan, discriminator="unet", d_args={"channels": 4})
    with pytest.raises(ValueError, match="srgan"):
        run_sweep(dataclasses.replace(tiny_run, gan=unet), steps=1)


def test_tune_refuses_a_benchmark_folder_as_training_data(capsys, tiny_run):
    weights = tiny_run.gan.generator_weights
    code = main(["tune", "--steps", "2", "--out", "unused", "--set", f"gan.generator_weights={json.dumps(weights)}",
                 "--set", 'data.train_roots=["../shared/data/benchmarks/set5/HR"]'])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "benchmark data" in err, err
    assert not Path("unused").exists()
