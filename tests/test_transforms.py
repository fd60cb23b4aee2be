import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from superres.data.transforms import paired_augment, paired_random_crop


def box_average(gt: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(gt, 4)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 4),
    h=st.integers(6, 12),
    w=st.integers(6, 12),
    lq_size=st.integers(1, 6),
)
def test_crop_and_augment_keep_lq_the_box_average_of_gt(seed, batch, h, w, lq_size):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 3, 4 * h, 4 * w, generator=g)
    lq = box_average(gt)
    lq_c, gt_c = paired_random_crop(lq, gt, lq_size, 4, g)
    assert lq_c.shape == (batch, 3, lq_size, lq_size) and gt_c.shape == (batch, 3, 4 * lq_size, 4 * lq_size)
    assert torch.allclose(lq_c, box_average(gt_c), atol=1e-6)
    lq_a, gt_a = paired_augment(lq_c, gt_c, g)
    assert torch.allclose(lq_a, box_average(gt_a), atol=1e-6)
    one_lq, one_gt = paired_augment(*paired_random_crop(lq[0], gt[0], lq_size, 4, g), g)  # unbatched (C, H, W)
    assert torch.allclose(one_lq, box_average(one_gt[None])[0], atol=1e-6)


def test_unbatched_augment_accepts_non_square_pairs(generator):
    gt = torch.rand(3, 16, 24, generator=generator)
    lq, out = paired_augment(box_average(gt[None])[0], gt, generator)
    assert torch.allclose(lq, box_average(out[None])[0], atol=1e-6)


def test_same_seed_same_result_and_per_sample_draws():
    gt = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lq = box_average(gt)
    def draw(crop_seed: int, augment_seed: int):
        crops = paired_random_crop(lq, gt, 4, 4, torch.Generator().manual_seed(crop_seed))
        return paired_augment(*crops, torch.Generator().manual_seed(augment_seed))

    a, b, c = draw(5, 6), draw(5, 6), draw(5, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_every_flip_and_rotation_occurs():
    base = torch.arange(16.0).view(1, 1, 4, 4)
    gt = base.expand(200, 1, 4, 4)
    _, out = paired_augment(box_average(gt), gt, torch.Generator().manual_seed(0))
    variants = {tuple(o.flatten().tolist()) for o in out}
    assert len(variants) == 8  # the dihedral group of the square


def test_crop_offsets_cover_the_lr_grid():
    lq = torch.arange(10.0).view(1, 1, 1, 10).expand(500, 1, 1, 10)
    gt = torch.zeros(500, 1, 4, 40)
    lq_c, _ = paired_random_crop(lq, gt, 1, 4, torch.Generator().manual_seed(0))
    assert set(lq_c.flatten().tolist()) == set(range(10))


def test_errors():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="smaller than the crop"):
        paired_random_crop(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 16, 16), 5, 4, g)
    with pytest.raises(ValueError, match="times scale"):
        paired_random_crop(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 16), 2, 4, g)
    with pytest.raises(ValueError, match="square"):
        paired_augment(torch.rand(2, 3, 4, 6), torch.rand(2, 3, 16, 24), g)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_with_a_cpu_generator():
    gt = torch.rand(4, 3, 32, 32, device="cuda")
    lq, out = paired_augment(*paired_random_crop(box_average(gt), gt, 4, 4, torch.Generator().manual_seed(0)),
                             torch.Generator().manual_seed(1))
    assert lq.device.type == "cuda" and torch.allclose(lq, box_average(out), atol=1e-6)
