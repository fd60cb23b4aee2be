"""tools/ship_weights.py: which measurements a model's card gets, by scale, and reading them from benchmark rows."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "tools" / "ship_weights.py"
_SPEC = importlib.util.spec_from_file_location("ship_weights", _PATH)
ship = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ship)


def conditions(scale: int, degradation: str = "realistic") -> set[tuple[str, str]]:
    return {(key, condition) for key, _, condition in ship.measurements(scale, degradation)}


def test_x1_models_are_measured_under_the_damaging_conditions_only():
    found = conditions(1)
    assert {c for _, c in found} == {"blur", "noise", "jpeg", "camera", "jpeg90"}
    assert {k for k, _ in found} == {"set5", "set14", "b100"}


def test_x2_has_bicubic_but_neither_the_div2k_kernel_nor_the_x4_pairs():
    found = conditions(2)
    assert ("set14", "bicubic") in found
    assert not any(c == "div2k-unknown" for _, c in found)


def test_x4_general_models_get_every_condition_and_the_real_pairs():
    assert ("div2k_unknown", "div2k-unknown") in conditions(4)
    assert conditions(4, "bicubic") == {("set5", "bicubic"), ("set14", "bicubic"), ("b100", "bicubic"),
                                        ("div2k_unknown", "div2k-unknown")}


def row(data: str, degradation: str, psnr: float) -> dict:
    return {"model": "m.safetensors", "data": data, "degradation": degradation, "psnr_y": psnr, "ssim_y": 0.9,
            "psnr_rgb": psnr - 1, "ssim_rgb": 0.8, "sharpness": 1.0, "checkerboard": 1.1}


def test_metrics_come_from_the_matching_benchmark_rows():
    rows = [row(data, c, 30.0 + i) for i, (data, c) in enumerate(sorted(conditions(1)))]
    rows.append(row("set5", "blur", 99.0) | {"model": "other"})
    metrics = ship.metrics_from(rows, "m.safetensors", 1, "realistic")
    assert len(metrics) == 15 * len(ship.METRICS)  # 3 sets, 5 conditions
    assert metrics["b100_blur/psnr_y"] == 30.0  # sorted first
    assert "set5_blur/psnr_y" in metrics and metrics["set5_blur/psnr_y"] != 99.0


def test_a_missing_measurement_is_named():
    rows = [row("set5", "blur", 30.0)]
    with pytest.raises(SystemExit, match="set5 under noise"):
        ship.metrics_from(rows, "m.safetensors", 1, "realistic")
