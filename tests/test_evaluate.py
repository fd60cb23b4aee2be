"""Evaluation reproduces the published bicubic figures on the shared benchmark sets."""

import pytest

from superres.evaluate import evaluate
from superres.weights import load_model

# Published x4 bicubic (Y PSNR, SSIM); the tolerance of the spec: 0.05 dB and 0.003.
PUBLISHED = {"set5": (28.42, 0.8104), "set14": (26.00, 0.7027)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_bicubic_reproduces_the_published_table(shared_data, name):
    result = evaluate(load_model("bicubic"), shared_data / "benchmarks" / name, model_name="bicubic")
    psnr, ssim = PUBLISHED[name]
    assert result.psnr_y == pytest.approx(psnr, abs=0.05)
    assert result.ssim_y == pytest.approx(ssim, abs=0.003)
    assert result.images == {"set5": 5, "set14": 14}[name]


def test_unknown_track_scores_only_complete_pairs(shared_data):
    result = evaluate(load_model("bicubic"), shared_data / "div2k_unknown_x4", model_name="bicubic", degradation="div2k-unknown")
    assert result.images == 4  # 12 LR files, 4 with HR
    assert result.psnr_rgb == pytest.approx(22.98, abs=0.05)


def test_missing_lr_is_made_from_hr(shared_data, tmp_path):
    (tmp_path / "HR").mkdir()
    source = shared_data / "benchmarks" / "set5" / "HR" / "img_002.png"
    (tmp_path / "HR" / "img_002.png").write_bytes(source.read_bytes())
    made = evaluate(load_model("bicubic"), tmp_path, model_name="bicubic")
    official = evaluate(load_model("bicubic"), shared_data / "benchmarks" / "set5", model_name="bicubic")
    assert made.images == 1
    assert made.psnr_y == pytest.approx(official.per_image[1].psnr_y, abs=0.1)


def test_a_flat_folder_scores_as_its_hr_layout(shared_data, tmp_path):
    source = shared_data / "benchmarks" / "set5" / "HR" / "img_002.png"
    (tmp_path / "flat").mkdir()
    (tmp_path / "layout" / "HR").mkdir(parents=True)
    for folder in (tmp_path / "flat", tmp_path / "layout" / "HR"):  # Kodak24's layout, and the benchmarks'
        (folder / "img_002.png").write_bytes(source.read_bytes())
    flat = evaluate(load_model("bicubic"), tmp_path / "flat", model_name="bicubic", degradation="camera")
    layout = evaluate(load_model("bicubic"), tmp_path / "layout", model_name="bicubic", degradation="camera")
    assert flat.images == 1 and flat.psnr_y == layout.psnr_y
