import csv
import math
import torch
import torch.nn.functional as F

from superres.models import ResCNN
from superres.tune import BASE, SWEEP, format_markdown, moving_average, run_sweep, write_csv


def sampler(generator):
    gt = torch.rand(2, 3, 32, 32, generator=generator)
    return F.avg_pool2d(gt, 4), gt


def tiny_generator():
    torch.manual_seed(0)
    return ResCNN(channels=8, num_blocks=1)


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


def test_sweep_runs_tiny_models_and_writes_six_rows(tmp_path):
    calls = []
    rows = run_sweep(
        sampler, tiny_generator, SWEEP,
        steps=3, content_loss_kind="pixel-l1", seed=0, window=2,
        progress=lambda setting, step, logs: calls.append((setting, step)),
        discriminator_kwargs={"channels": 4},
    )  # fmt: skip
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


def test_sweep_with_discriminator_features_content_loss():
    rows = run_sweep(
        sampler, tiny_generator, SWEEP[2:4],
        steps=2, content_loss_kind="disc-features", seed=1, window=250, discriminator_kwargs={"channels": 4},
    )  # fmt: skip
    assert len(rows) == 2 and all(math.isfinite(r.g_total) and r.window == 2 for r in rows)
