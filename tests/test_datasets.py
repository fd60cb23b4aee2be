from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from superres.data.datasets import ImageCache, Pair, PatchDataset, PatchSampler, find_pairs
from superres.data.degrade import degrade


def write_png(path: Path, u8: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(u8).save(path)
    return path


def random_u8(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def as_tensor(u8: np.ndarray) -> torch.Tensor:  # (H, W, 3) uint8 -> (1, 3, H, W) float
    return torch.from_numpy(np.array(u8.transpose(2, 0, 1)))[None].float() / 255


@pytest.fixture
def paired_folder(tmp_path):
    """Benchmark layout whose LR is exact: HR is the LR with every pixel repeated 4x4, so LR = box average of HR."""
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (10, 12), "b": (8, 8), "tiny": (4, 5)}.items():
        lr = random_u8(rng, h, w)
        write_png(tmp_path / "HR" / f"{name}.png", lr.repeat(4, axis=0).repeat(4, axis=1))
        write_png(tmp_path / "LR_bicubic/X4" / f"{name}.png", lr)
    write_png(tmp_path / "HR" / "hr_only.png", random_u8(rng, 32, 32))
    write_png(tmp_path / "LR_bicubic/X4" / "lr_only.png", random_u8(rng, 8, 8))
    write_png(tmp_path / "LR_unknown/X4" / "ax4.png", random_u8(rng, 10, 12))
    return tmp_path


# ---------------------------------------------------------------- find_pairs


def test_find_pairs_benchmark_layout(paired_folder):
    pairs = {p.name: p for p in find_pairs(paired_folder, "bicubic", 4)}
    assert sorted(pairs) == ["a", "b", "hr_only", "lr_only", "tiny"]
    assert pairs["a"].lq_path.parent.name == "X4" and pairs["a"].gt_path.parent.name == "HR"
    assert pairs["hr_only"].lq_path is None and pairs["lr_only"].gt_path is None
    unknown = {p.name: p for p in find_pairs(paired_folder, "div2k-unknown")}
    assert unknown["a"].lq_path.name == "ax4.png" and unknown["b"].lq_path is None
    assert all(p.lq_path is None for p in find_pairs(paired_folder, "blur+noise+jpeg"))


def test_find_pairs_div2k_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        write_png(tmp_path / f"DIV2K_{split}_HR" / "0001.png", random_u8(rng, 32, 32))
        write_png(tmp_path / f"DIV2K_{split}_LR_unknown/X4" / "0001x4.png", random_u8(rng, 8, 8))
    write_png(tmp_path / "DIV2K_valid_LR_unknown/X4" / "0002x4.png", random_u8(rng, 8, 8))
    assert find_pairs(tmp_path, "div2k-unknown", split="train") == [
        Pair("0001", tmp_path / "DIV2K_train_LR_unknown/X4/0001x4.png", tmp_path / "DIV2K_train_HR/0001.png")
    ]
    valid = find_pairs(tmp_path, "div2k-unknown", split="valid")
    assert [(p.name, p.gt_path is None) for p in valid] == [("0001", False), ("0002", True)]
    assert all(p.lq_path is None for p in find_pairs(tmp_path, "bicubic", split="train"))
    with pytest.raises(ValueError, match="choose one with split"):
        find_pairs(tmp_path, "div2k-unknown")
    with pytest.raises(ValueError, match="neither"):
        find_pairs(tmp_path / "DIV2K_train_LR_unknown")  # no images of its own: X4/ holds them
    with pytest.raises(ValueError, match="unknown degradation"):
        find_pairs(tmp_path, "nearest", split="train")


def test_find_pairs_reads_a_flat_folder_as_hr_images(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("kodim02", "kodim01"):
        write_png(tmp_path / f"{name}.png", random_u8(rng, 16, 16))
    assert find_pairs(tmp_path, "camera") == [Pair(n, None, tmp_path / f"{n}.png") for n in ("kodim01", "kodim02")]
    assert find_pairs(tmp_path, "bicubic", 2) == find_pairs(tmp_path, "camera")  # no LR files at any scale


# ---------------------------------------------------------------- the cache


def test_image_cache_decodes_once_and_memory_maps(tmp_path):
    u8 = random_u8(np.random.default_rng(1), 12, 20)
    path = write_png(tmp_path / "img.png", u8)
    cache = ImageCache()
    first = cache(path)
    assert first.dtype == torch.uint8 and first.shape == (3, 12, 20)
    assert cache(path) is first and len(cache) == 1
    assert np.array_equal(first.permute(1, 2, 0).numpy(), u8)
    disk = ImageCache(tmp_path / "cache")
    assert torch.equal(disk(path), first)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = ImageCache(tmp_path / "cache")(path)  # a new run reads the .npy back, memory-mapped
    assert torch.equal(again, first)
    again[0, 0, 0] = 255 - again[0, 0, 0]  # copy-on-write: the cache file stays as it was
    assert torch.equal(ImageCache(tmp_path / "cache")(path), first)


# ---------------------------------------------------------------- PatchSampler


def test_paired_sampler_keeps_lq_and_gt_aligned(paired_folder, capsys):
    sampler = PatchSampler.from_pairs(find_pairs(paired_folder), scale=4, patch_size=24)
    assert sampler.paired and sampler.num_images == 2
    assert dict(sampler.skipped).keys() == {"tiny", "hr_only", "lr_only"}
    lq, gt = sampler.sample(8, torch.Generator().manual_seed(0))
    assert lq.shape == (8, 3, 6, 6) and gt.shape == (8, 3, 24, 24)
    assert lq.dtype == gt.dtype == torch.float32 and 0 <= lq.min() and gt.max() <= 1
    assert torch.allclose(lq, F.avg_pool2d(gt, 4), atol=1e-6)  # aligned, even after flips and rotations
    assert capsys.readouterr() == ("", "")  # nothing printed


def test_sampler_is_seeded(paired_folder):
    sampler = PatchSampler.from_hr_folder(paired_folder / "HR", "blur+noise+jpeg", patch_size=16)
    a = sampler.sample(4, torch.Generator().manual_seed(3))
    b = sampler.sample(4, torch.Generator().manual_seed(3))
    c = sampler.sample(4, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def assert_crops_of_the_degraded_image(lq, gt, u8, kind, patch):
    whole_gt = as_tensor(u8)
    whole_lq = degrade(whole_gt, kind, 4)
    rows, cols = (u8.shape[0] - patch) // 4 + 1, (u8.shape[1] - patch) // 4 + 1
    seen = set()
    for lq_i, gt_i in zip(lq, gt):
        (i, j), = [(i, j) for i in range(rows) for j in range(cols)
                   if torch.equal(gt_i, whole_gt[0, :, 4 * i : 4 * i + patch, 4 * j : 4 * j + patch])]
        seen.add((i, j))
        expected = whole_lq[0, :, i : i + patch // 4, j : j + patch // 4]
        assert (lq_i - expected).abs().max() <= 1 / 255 + 1e-6  # equal up to a rare rounding flip
        assert (lq_i == expected).float().mean() > 0.98
    return seen


@pytest.mark.parametrize("kind", ["bicubic", "div2k-unknown"])
def test_hr_mode_patches_are_crops_of_the_degraded_image(kind, tmp_path):
    u8 = random_u8(np.random.default_rng(2), 44, 52)  # small: most patches touch the border
    write_png(tmp_path / "photo.png", u8)
    sampler = PatchSampler.from_hr_folder(tmp_path, kind, patch_size=32, augment=False)
    lq, gt = sampler.sample(12, torch.Generator().manual_seed(0))
    assert len(assert_crops_of_the_degraded_image(lq, gt, u8, kind, 32)) > 4
    data = PatchDataset([Pair("photo", None, tmp_path / "photo.png")], kind, patch_size=32, augment=False, repeat=12)
    lq, gt = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    assert len(assert_crops_of_the_degraded_image(lq, gt, u8, kind, 32)) > 4


def test_small_images_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(3)
    write_png(tmp_path / "big.png", random_u8(rng, 40, 40))
    write_png(tmp_path / "small.png", random_u8(rng, 20, 60))
    sampler = PatchSampler.from_hr_folder(tmp_path, "bicubic", patch_size=32)
    assert sampler.num_images == 1 and sampler.num_skipped == 1 and "small" in sampler.skipped[0][0]
    with pytest.raises(ValueError, match="large enough"):
        PatchSampler.from_hr_folder(tmp_path, "bicubic", patch_size=64)


def test_from_div2k_uses_real_lr_or_synthesises(tmp_path):
    rng = np.random.default_rng(4)
    lr = random_u8(rng, 8, 8)
    write_png(tmp_path / "DIV2K_train_HR" / "0001.png", lr.repeat(4, axis=0).repeat(4, axis=1))
    write_png(tmp_path / "DIV2K_train_LR_bicubic/X4" / "0001x4.png", lr)
    real = PatchSampler.from_div2k(tmp_path, "train", "bicubic", patch_size=16)
    assert real.paired
    lq, gt = real.sample(2, torch.Generator().manual_seed(0))
    assert torch.allclose(lq, F.avg_pool2d(gt, 4), atol=1e-6)
    synthetic = PatchSampler.from_div2k(tmp_path, "train", "div2k-unknown", patch_size=16)
    assert not synthetic.paired and synthetic.sample(2, torch.Generator().manual_seed(0))[0].shape == (2, 3, 4, 4)


# ---------------------------------------------------------------- PatchDataset


def test_patch_dataset_with_a_dataloader(paired_folder):
    pairs = [p for p in find_pairs(paired_folder) if p.lq_path is not None and p.gt_path is not None]
    data = PatchDataset(pairs, "bicubic", patch_size=24, repeat=3, seed=1)
    assert data.paired and len(data) == 3 * 2 and data.num_skipped == 1  # "tiny" is 4x5 LR
    lq, gt = next(iter(torch.utils.data.DataLoader(data, batch_size=6)))
    assert lq.shape == (6, 3, 6, 6) and gt.shape == (6, 3, 24, 24)
    assert torch.allclose(lq, F.avg_pool2d(gt, 4), atol=1e-6)
    assert torch.equal(data[2][1], data[2][1])
    first = data[2][1]
    data.set_epoch(1)
    assert not torch.equal(data[2][1], first)


def test_patch_dataset_synthesises_from_hr(paired_folder):
    pairs = find_pairs(paired_folder, "bicubic")
    data = PatchDataset(pairs, "div2k-unknown", patch_size=24, augment=False, synthesize=True)
    assert not data.paired and data.num_skipped == 2  # lr_only has no HR, tiny is too small
    lq, gt = data[0]
    assert lq.shape == (3, 6, 6) and gt.shape == (3, 24, 24)
    hr_only = PatchDataset(find_pairs(paired_folder, "blur+noise+jpeg"), "blur+noise+jpeg", patch_size=24)
    assert not hr_only.paired and hr_only[1][0].shape == (3, 6, 6)
    with pytest.raises(ValueError, match="large enough"):
        PatchDataset(pairs, "bicubic", patch_size=400)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["bicubic", "div2k-unknown", "blur+noise+jpeg"])
def test_sampler_on_cuda(kind, paired_folder):
    sampler = PatchSampler.from_hr_folder(paired_folder / "HR", kind, patch_size=16, device="cuda")
    for g in (torch.Generator().manual_seed(0), torch.Generator("cuda").manual_seed(0)):
        lq, gt = sampler.sample(4, g)
        assert lq.device.type == gt.device.type == "cuda" and lq.shape == (4, 3, 4, 4)
