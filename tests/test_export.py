import pytest
import torch
from torch import nn

from superres.export import export_onnx
from superres.inference import upscale
from superres.models import build_model

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra; install it to test the export")
pytest.importorskip("onnxscript", reason="onnxscript is needed by torch's ONNX exporter")


TINY = {
    "cnn": ("cnn", {"channels": 8}),
    "rescnn": ("rescnn", {"channels": 8, "num_blocks": 1}),
    "rescnn-nearest-conv": ("rescnn", {"channels": 8, "num_blocks": 1, "upsampler": "nearest-conv"}),
}


@pytest.fixture(params=list(TINY))
def trained_tiny(request, generator):
    torch.manual_seed(0)
    arch, kwargs = TINY[request.param]
    model = build_model(arch, **kwargs)
    for module in model.modules():  # batch-norm statistics as after training, so folding is exercised
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def test_onnx_runtime_matches_pytorch_at_several_sizes(trained_tiny, tmp_path, generator):
    path = export_onnx(trained_tiny, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["lq"]
    for shape in [(1, 3, 17, 29), (2, 3, 40, 24)]:  # sizes other than the export example's, and a batch of 2
        lq = torch.rand(*shape, generator=generator)
        (sr,) = session.run(None, {"lq": lq.numpy()})
        expected = torch.stack([upscale(trained_tiny, one) for one in lq])
        assert sr.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        assert torch.allclose(torch.from_numpy(sr), expected, atol=1e-5)


def test_onnx_file_says_what_it_holds(trained_tiny, tmp_path):
    import onnx

    proto = onnx.load(str(export_onnx(trained_tiny, tmp_path / "sub" / "model.onnx")))
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["scale"] == "4" and metadata["arch"] in {"SubPixelCNN", "ResCNN"}
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["model.onnx"]  # one file, no temporary left
