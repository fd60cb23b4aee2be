import pytest
import torch

from superres.inference import upscale
from superres.models import build_model


@pytest.fixture(params=["cnn", "rescnn"])
def tiny_model(request):
    torch.manual_seed(0)
    kwargs = {"channels": 8} if request.param == "cnn" else {"channels": 8, "num_blocks": 1}
    return build_model(request.param, **kwargs).eval()


@pytest.mark.parametrize("tile, size", [(16, (37, 53)), (24, (48, 48)), (7, (20, 31))])
def test_tiled_equals_untiled_within_one_level(tiny_model, tile, size, generator):
    image = torch.rand(3, *size, generator=generator)
    whole = upscale(tiny_model, image)
    tiled = upscale(tiny_model, image, tile=tile, overlap=12)
    assert tiled.shape == whole.shape == (3, size[0] * 4, size[1] * 4)
    assert (tiled - whole).abs().max() <= 1 / 255


def test_output_is_clamped_and_on_cpu(tiny_model, generator):
    out = upscale(tiny_model, torch.rand(1, 3, 10, 10, generator=generator))
    assert out.device.type == "cpu" and out.min() >= 0 and out.max() <= 1


def test_progress_reports_every_tile(tiny_model, generator):
    calls = []
    upscale(tiny_model, torch.rand(3, 40, 40, generator=generator), tile=16, on_tile=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (9, 9) and len(calls) == 9


def test_rejects_non_rgb_input(tiny_model):
    with pytest.raises(ValueError, match="RGB"):
        upscale(tiny_model, torch.rand(1, 10, 10))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_matches_cpu(tiny_model, generator):
    image = torch.rand(3, 24, 24, generator=generator)
    on_cpu = upscale(tiny_model, image)
    on_gpu = upscale(tiny_model.cuda(), image, tile=16)
    assert (on_cpu - on_gpu).abs().max() <= 1 / 255


def test_shipped_rescnn_tiles_seamlessly_with_the_default_overlap(generator):
    from superres.weights import load_model

    model = load_model("rescnn")
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 92, 108, generator=generator), 3, 1, 1)[0]
    whole = upscale(model, image)
    tiled = upscale(model, image, tile=40)
    assert (tiled - whole).abs().max() <= 1 / 255
