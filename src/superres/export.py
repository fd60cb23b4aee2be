"""Export a generator to ONNX for other runtimes (ONNX Runtime, OpenCV dnn, TensorRT).

The graph takes float32 NCHW RGB in [0, 1] named `lq`, of any batch, height and width, and returns `sr`, s times
larger and clamped to [0, 1]. Batch norm is folded first, so the graph holds only convolutions and activations.
The file is written atomically and carries the model's name, architecture and scale as ONNX metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from superres import __version__
from superres.files import atomic_write
from superres.optimize import fold_batchnorm


class _Clamped(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, lq: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H*s, W*s)
        return self.model(lq).clamp(0, 1)


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int | None = None) -> Path:
    """Write `model` (a loaded generator, with `.scale` and optionally `.info`) to `path` as one ONNX file with
    dynamic batch, height and width. Needs the `onnx` and `onnxscript` packages (`pip install "superres[onnx]"`)."""
    graph = _Clamped(fold_batchnorm(model).float().cpu()).eval()
    example = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=2), 3: torch.export.Dim("width", min=2)}
    program = torch.onnx.export(
        graph, (example,), dynamo=True, verbose=False, input_names=["lq"], output_names=["sr"],
        dynamic_shapes={"lq": dims}, opset_version=opset, optimize=True,
    )
    info = getattr(model, "info", None)
    metadata = {
        "superres_version": __version__,
        "name": info.name if info else type(model).__name__,
        "arch": info.arch if info else type(model).__name__,
        "args": json.dumps(info.args if info else {}),
        "scale": str(model.scale),
        "contract": "lq: float32 NCHW RGB in [0, 1]; sr: float32 NCHW RGB in [0, 1], scale times larger",
    }
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda file: file.write(proto.SerializeToString()))


def check_onnx(model: nn.Module, path: str | os.PathLike, *, size: tuple[int, int] = (24, 40)) -> float:
    """Run the exported file in ONNX Runtime and PyTorch on one seeded input of `size`; the largest difference."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lq = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    (sr,) = session.run(None, {"lq": lq.numpy()})
    with torch.no_grad():
        expected = model.float().cpu().eval()(lq).clamp(0, 1)
    return float((torch.from_numpy(sr) - expected).abs().max())
