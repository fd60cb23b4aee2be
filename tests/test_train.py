from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from superres.checkpoint import load_checkpoint
from superres.config import RunConfig, load_config, loads_config, to_toml
from superres.models import build_model
from superres.loop import lr_at
from superres.runfolder import run_config
from superres.steps import is_collapsed, supervised_step
from superres.train import TrainingError, Validation, load_val_set, train
from superres.weights import load_model, read_info, save_weights


def smooth(seed: int, size: int, detail: int = 6) -> torch.Tensor:
    """A photo-like (3, size, size) test image: random detail x detail colours upscaled bicubically."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, detail, detail, generator=g)
    return F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def smooth_image(seed: int, size: int) -> Image.Image:
    return Image.fromarray((smooth(seed, size).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("images")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for i in range(4):
        smooth_image(i, 40).save(root / "train" / f"img{i}.png")
    for i in range(2):
        smooth_image(10 + i, 32).save(root / "val" / f"val{i}.png")
    return root / "train", root / "val"


def tiny_config(folders, **train) -> RunConfig:
    """A 4-channel, 1-block ResCNN on 16 px patches, validated on two 24 px crops, on the CPU in fp32."""
    train_root, val_root = folders
    config = loads_config(
        f"""name = "tiny-test"
[model]
arch = "rescnn"
args = {{ channels = 4, num_blocks = 1 }}
[data]
train_roots = ["{train_root}"]
patch_size = 16
batch_size = 2
[train]
steps = 6
lr = 1e-3
log_every = 1
val_every = 3
checkpoint_every = 2
device = "cpu"
precision = "fp32"
val_roots = ["{val_root}"]
val_max_images = 2
val_crop = 24
"""
    )
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))


def log_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_lr_schedule_is_piecewise_constant(folders):
    cfg = dataclasses.replace(tiny_config(folders).train, lr=1.0, lr_milestones=(10, 20), lr_gamma=0.5)
    assert [lr_at(s, cfg) for s in (0, 9, 10, 19, 20, 1000)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert lr_at(15, cfg, base_lr=2.0) == 1.0


def test_tiny_run_writes_the_run_folder(folders, tmp_path):
    config = tiny_config(folders)
    seen = []
    result = train(config, tmp_path, progress=lambda step, total, numbers: seen.append((step, total, numbers)))
    assert (result.step, result.stopped, result.resumed_from) == (6, "completed", None)
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5, 6] and seen[-1][1] == 6 and "train/loss" in seen[-1][2]
    for name in ("config.toml", "log.csv", "checkpoints/last.pt", "best.safetensors", "last.safetensors", "curves.png"):
        assert (tmp_path / name).is_file(), name
    assert run_config(tmp_path) == config
    rows = log_rows(tmp_path)
    assert list(rows[0]) == ["step", "seconds", "key", "value"]
    keys = {r["key"] for r in rows}
    assert {"train/loss", "lr", "speed/steps_per_s", "val/psnr", "val/ssim"} <= keys
    assert sorted({int(r["step"]) for r in rows if r["key"] == "val/psnr"}) == [3, 6]
    speed = {r["key"]: float(r["value"]) for r in rows if r["step"] == "6" and r["key"].startswith("speed/")}
    assert speed["speed/hr_mpx_per_s"] == pytest.approx(speed["speed/steps_per_s"] * 2 * 16 * 16 / 1e6, rel=1e-5)
    with FlopCounterMode(display=False) as counter:  # forward and backward of the same model on a batch of 2
        build_model("rescnn", channels=4, num_blocks=1)(torch.rand(2, 3, 4, 4)).sum().backward()
    flops = speed["speed/tflop_per_s"] * 1e12 / speed["speed/steps_per_s"]
    assert flops == pytest.approx(counter.get_total_flops(), rel=1e-4)
    info = read_info(tmp_path / "last.safetensors")
    assert (info.arch, info.args) == ("rescnn", {"channels": 4, "num_blocks": 1})
    assert (info.scale, info.degradation) == (4, "bicubic")
    assert info.recipe["steps"] == 6 and info.recipe["precision"] == "fp32" and info.recipe["device"] == "cpu"
    assert info.metrics["val/psnr"] == pytest.approx(result.metrics["val/psnr"])
    model = load_model(str(tmp_path / "last.safetensors"))
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt").state
    assert state["step"] == 6 and set(state["rng"]) >= {"torch", "data"}
    with pytest.raises(TrainingError, match="already holds a checkpoint"):
        train(config, tmp_path)


@pytest.mark.parametrize(("ema_decay", "prefetch"), [(0.0, 2), (0.9, 0)])
def test_interrupted_then_resumed_equals_uninterrupted(folders, tmp_path, ema_decay, prefetch):
    config = tiny_config(folders, steps=8, checkpoint_every=2, val_every=4, ema_decay=ema_decay)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, prefetch=prefetch))
    train(config, tmp_path / "straight")

    def interrupt(step, total, numbers):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=interrupt)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt").state["step"] == 4
    result = train(config, tmp_path / "resumed", resume=True)
    assert (result.resumed_from, result.step) == (4, 8)

    straight = load_file(tmp_path / "straight" / "last.safetensors")
    resumed = load_file(tmp_path / "resumed" / "last.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:  # includes BatchNorm running statistics
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    def losses(run: str) -> list[tuple[str, str]]:
        return [(r["step"], r["value"]) for r in log_rows(tmp_path / run) if r["key"] == "train/loss"]

    assert losses("resumed") == losses("straight")  # step 5's row from before the interrupt was dropped, then written again


def test_resume_after_a_run_of_half_the_steps(folders, tmp_path):
    config = tiny_config(folders, steps=6, checkpoint_every=3, val_every=0)
    train(config, tmp_path / "straight")
    train(dataclasses.replace(config, train=dataclasses.replace(config.train, steps=3)), tmp_path / "halves")
    train(config, tmp_path / "halves", resume=True)
    a, b = load_file(tmp_path / "straight" / "last.safetensors"), load_file(tmp_path / "halves" / "last.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_resume_falls_back_to_the_previous_checkpoint_and_refuses_another_model(folders, tmp_path):
    config = tiny_config(folders, steps=4, checkpoint_every=2, val_every=0)
    train(config, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # a crash cut it short
    result = train(config, tmp_path, resume=True)
    assert result.resumed_from == 2 and result.step == 4
    assert any("truncated or corrupt" in note for note in result.notes)
    other = loads_config(to_toml(config).replace("num_blocks = 1", "num_blocks = 2"))
    with pytest.raises(TrainingError, match="model"):
        train(other, tmp_path, resume=True)


def test_overfit_one_batch():
    torch.manual_seed(0)
    gt = torch.stack([smooth(i, 16, detail=3) for i in range(2)])  # (2, 3, 16, 16)
    lq = F.avg_pool2d(gt, 4)  # (2, 3, 4, 4)
    model = build_model("cnn", channels=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = [float(supervised_step(model, optimizer, scaler, lq, gt, loss_fn=F.l1_loss)) for _ in range(150)]
    assert max(losses[-10:]) < losses[0] / 10, (losses[0], losses[-10:])


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(folders, tmp_path):
    # From step 4 on the learning rate is 1e30: the weights blow up and the loss turns inf/NaN.
    config = tiny_config(folders, steps=10, checkpoint_every=2, val_every=0, lr_milestones=(4,), lr_gamma=1e33)
    with pytest.raises(TrainingError, match="non-finite train/loss"):
        train(config, tmp_path)
    loaded = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert loaded.skipped == () and loaded.state["step"] == 4
    assert all(torch.isfinite(v).all() for v in loaded.state["models"]["generator"].values() if v.is_floating_point())
    assert {int(r["step"]) for r in log_rows(tmp_path)} <= {1, 2, 3, 4, 5}


def test_time_limit_stops_cleanly_and_resumes(folders, tmp_path):
    config = tiny_config(folders, steps=50, max_minutes=1e-9, val_every=0)
    result = train(config, tmp_path)
    assert (result.stopped, result.step) == ("time_limit", 1)
    assert (tmp_path / "last.safetensors").is_file()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").state["step"] == 1
    longer = dataclasses.replace(config, train=dataclasses.replace(config.train, max_minutes=0.0, steps=3))
    result = train(longer, tmp_path, resume=True)
    assert (result.stopped, result.step, result.resumed_from) == ("completed", 3, 1)


def test_checkpoint_minutes_checkpoints_at_log_steps_between_the_step_counts(folders, tmp_path):
    config = tiny_config(folders, steps=50, checkpoint_every=1000, log_every=2, val_every=0, checkpoint_minutes=1e-9)

    def interrupt(step, total, numbers):  # a job cut off from outside
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, progress=interrupt)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt").state["step"] == 4
    assert read_info(tmp_path / "last.safetensors").recipe["steps"] == 4


def gan_config(folders, weights: Path, **gan) -> RunConfig:
    base = tiny_config(folders, steps=4, checkpoint_every=2, val_every=2)
    gan_settings = dict(generator_weights=str(weights), content_loss="pixel-l1",
                        d_args={"channels": 4, "hidden_features": 8}) | gan  # fmt: skip
    return dataclasses.replace(base, mode="gan", gan=dataclasses.replace(base.gan, **gan_settings))


@pytest.fixture
def generator_weights(tmp_path) -> Path:
    torch.manual_seed(0)
    model = build_model("cnn", channels=4)
    path = tmp_path / "g.safetensors"
    return save_weights(path, model, arch="cnn", args={"channels": 4}, scale=4, degradation="bicubic")


def test_gan_run_logs_both_networks_and_checkpoints_them(folders, tmp_path, generator_weights):
    result = train(gan_config(folders, generator_weights), tmp_path / "run")
    assert result.step == 4
    keys = {r["key"] for r in log_rows(tmp_path / "run")}
    assert {"g/content", "g/adv", "g/pixel", "g/total", "d/real", "d/fake", "d/acc_real", "d/acc_fake"} <= keys
    assert "val/psnr" in keys
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").state
    assert set(state["models"]) == set(state["optimizers"]) == {"generator", "discriminator"}
    assert read_info(tmp_path / "run" / "best.safetensors").arch == "cnn"


def test_gan_run_with_the_unet_discriminator_relativistic_and_texture_losses(folders, tmp_path, generator_weights):
    config = gan_config(folders, generator_weights, discriminator="unet", d_args={"channels": 4},
                        adv_loss="relativistic", content_loss="disc-features", fft_weight=0.5, gram_weight=2.0,
                        periodic_weight=3.0, d_betas=(0.5, 0.9))  # fmt: skip
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, ema_decay=0.5))
    result = train(config, tmp_path / "run")
    assert result.step == 4 and math.isfinite(result.metrics["val/psnr"])
    rows = log_rows(tmp_path / "run")
    assert {"g/fft", "g/gram", "g/periodic", "g/adv", "d/acc_real"} <= {r["key"] for r in rows}
    total = {k: float(r["value"]) for r in rows if r["step"] == "1" for k in [r["key"]]}
    expected = (total["g/content"] + 1e-3 * total["g/adv"] + 0.5 * total["g/fft"] + 2.0 * total["g/gram"]
                + 3.0 * total["g/periodic"])
    assert total["g/total"] == pytest.approx(expected, rel=1e-4)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").state
    assert any("parametrizations" in key for key in state["models"]["discriminator"])
    assert state["optimizers"]["discriminator"]["param_groups"][0]["betas"] == (0.5, 0.9)
    recipe = read_info(tmp_path / "run" / "last.safetensors").recipe
    assert (recipe["loss"], recipe["adv_loss"], recipe["discriminator"], recipe["ema_decay"],
            recipe["periodic_weight"]) == ("disc-features", "relativistic", "unet", 0.5, 3.0)
    srgan = dataclasses.replace(config, gan=dataclasses.replace(config.gan, discriminator="srgan"))
    with pytest.raises(TrainingError, match="gan.discriminator"):
        train(srgan, tmp_path / "run", resume=True)
    with pytest.raises(TrainingError, match="do not fit the unet discriminator"):
        bad = dataclasses.replace(config.gan, d_args={"channels": 4, "hidden_layers": 1})
        train(dataclasses.replace(config, gan=bad), tmp_path / "bad")


def test_exported_weights_are_the_ema_and_validation_scores_them(folders, tmp_path):
    config = tiny_config(folders, steps=4, checkpoint_every=4, val_every=4, lr=1e-2, ema_decay=0.5)
    result = train(config, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt").state
    exported = load_file(tmp_path / "last.safetensors")
    assert state["ema"]["updates"] == 4
    for key, value in state["ema"]["module"].items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)
    trained = state["models"]["generator"]
    assert not torch.equal(exported["tail.weight"], trained["tail.weight"])  # averaged, not the last weights
    statistics = [k for k in trained if "running" in k]
    assert statistics and not any(torch.equal(exported[k], trained[k]) for k in statistics)  # averaged as well
    pairs = load_val_set(config)
    model = load_model(str(tmp_path / "last.safetensors"))
    assert Validation(pairs, scale=4)(model)[0]["val/psnr"] == pytest.approx(result.metrics["val/psnr"], abs=1e-6)


def test_ema_warms_up_then_keeps_its_decay():
    from superres.ema import ModelEma

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.99)
    assert [round(ema.current_decay(), 4) for _ in range(1)] == [0.1]  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(3.0)
    before = ema.module[0].weight.clone()
    ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, 0.1 * before + 0.9 * torch.ones(2, 2))
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), 0.9 * 3.0))  # averaged from zero
    assert ema.module[1].num_batches_tracked == model[1].num_batches_tracked  # a count: copied
    ema.updates = 10_000
    assert ema.current_decay() == 0.99
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_gan_collapse_stops_the_run(folders, tmp_path, generator_weights):
    # A threshold no D loss can stay above: every window counts as collapsed.
    config = gan_config(folders, generator_weights, collapse_patience=3, collapse_d_loss=1e9)
    with pytest.raises(TrainingError, match="collapsed"):
        train(config, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").state["step"] == 2


def test_collapse_rule():
    config = loads_config('mode = "gan"\n[gan]\ngenerator_weights = "x"\n')
    healthy = {"d/real": 0.5, "d/fake": 0.6, "d/acc_fake": 0.7, "g/adv": 1.2}
    assert not is_collapsed(healthy, config.gan)
    assert is_collapsed(healthy | {"d/real": 1e-4, "d/fake": 1e-4}, config.gan)
    assert is_collapsed(healthy | {"d/acc_fake": 1.0, "g/adv": 15.0}, config.gan)
    assert not is_collapsed(healthy | {"d/acc_fake": 1.0, "g/adv": 5.0}, config.gan)


def test_training_on_validation_or_benchmark_data_is_refused(folders, tmp_path):
    config = tiny_config(folders)
    leak = dataclasses.replace(config, data=dataclasses.replace(config.data, train_roots=(str(folders[1]),)))
    with pytest.raises(TrainingError, match="overlaps the validation data"):
        train(leak, tmp_path / "leak")
    bench = dataclasses.replace(config, data=dataclasses.replace(config.data, train_roots=("x/data/benchmarks/set5",)))
    with pytest.raises(TrainingError, match="benchmark data"):
        train(bench, tmp_path / "bench")


def test_shipped_tiny_config_runs_on_the_shared_data(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # config paths are relative to the project root
    config = load_config("configs/tiny.toml", ["train.steps=4", "train.val_every=4", "train.log_every=2"])
    result = train(config, tmp_path)
    assert result.step == 4 and 10 < result.metrics["val/psnr"] < 40
    assert (tmp_path / "curves.png").is_file()


def test_tensorboard_events_beside_the_log(folders, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(folders, steps=4, val_every=2), tmp_path)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "lr", "batch/global", "speed/steps_per_s", "val/psnr", "val/ssim"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("val/psnr")] == pytest.approx(
        [float(r["value"]) for r in log_rows(tmp_path) if r["key"] == "val/psnr"], rel=1e-6)
    assert set(tags["images"]) == {"val/images/0", "val/images/1"}  # the output beside its ground truth
    image = events.Images("val/images/0")[-1]
    assert (image.step, image.width, image.height) == (4, 48, 24)


def test_without_tensorboard_only_the_csv_log(folders, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    train(tiny_config(folders, steps=2, val_every=0), tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*")) == [] and log_rows(tmp_path)


def test_batches_drawn_ahead_in_a_thread_are_the_batches_drawn_in_the_loop(folders):
    from superres.data import PatchSampler
    from superres.loop import Batches

    sampler = PatchSampler.from_hr_folder(folders[0], "bicubic", patch_size=16)
    inline = Batches(sampler, 2, seed=3)
    with Batches(sampler, 2, seed=3, prefetch=2) as ahead:
        for _ in range(4):
            (a_lq, a_gt), (b_lq, b_gt) = inline.next(), ahead.next()
            assert torch.equal(a_lq, b_lq) and torch.equal(a_gt, b_gt)
            assert all(torch.equal(a, b) for a, b in zip(inline.state(), ahead.state()))  # of the batches handed out
        with pytest.raises(RuntimeError, match="before the first next"):
            ahead.load_state(inline.state())
    assert ahead._thread is None  # closed; the batches it drew ahead are drawn again
    (a_lq, _), (b_lq, _) = inline.next(), ahead.next()
    assert torch.equal(a_lq, b_lq)
    ahead.close()


def test_an_error_in_the_batch_thread_reaches_the_loop(folders):
    from superres.data import PatchSampler
    from superres.loop import Batches

    class Broken(PatchSampler):
        def sample(self, batch_size, generator):
            raise ValueError("no patches today")

    sampler = PatchSampler.from_hr_folder(folders[0], "bicubic", patch_size=16)
    sampler.__class__ = Broken
    with Batches(sampler, 2, seed=0, prefetch=1) as batches, pytest.raises(ValueError, match="no patches today"):
        batches.next()


def test_the_loop_runs_without_a_run_folder_and_returns_the_logged_numbers(folders, generator_weights):
    """What a sweep needs: N GAN steps with given settings, every step's numbers back, no files."""
    from superres.config import GanConfig, TrainConfig
    from superres.data import PatchSampler
    from superres.distributed import World
    from superres.losses import build_content_loss
    from superres.loop import Batches, Loop
    from superres.steps import GanStep

    torch.manual_seed(0)
    generator = load_model(str(generator_weights))
    discriminator = build_model("discriminator", channels=4, hidden_features=8)
    t = TrainConfig(steps=3, lr=1e-3, log_every=1, val_every=0, checkpoint_every=3)
    step = GanStep(generator, discriminator, build_content_loss("pixel-l1"), t, GanConfig(collapse_patience=0),
                   device=torch.device("cpu"), precision="fp32", world=World())  # fmt: skip
    batches = Batches(PatchSampler.from_hr_folder(folders[0], "bicubic", patch_size=16), 2, seed=0)
    result = Loop(step, batches, t).run()
    assert result.step == 3 and [s for s, _ in result.history["g/total"]] == [1, 2, 3]
    assert {"g/content", "g/adv", "d/real", "d/fake", "lr"} <= set(result.history)
