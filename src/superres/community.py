"""Model files of other projects (ESRGAN, Real-ESRGAN, SwinIR and the many others chaiNNer and upscayl run), made
into superres models by spandrel, so tiling, precision, image I/O and the browser UI treat them as our own weights.

`superres.weights` reads the file safely (`torch.load(weights_only=True)` or safetensors) and hands its tensors here;
spandrel recognises the architecture and its hyperparameters from their names and shapes. spandrel is optional:
`pip install "superres[spandrel]"`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from superres.weights import WeightsError, WeightsInfo

INSTALL_HINT = 'pip install "superres[spandrel]"'
# SwinIR and its kin call torch.meshgrid without `indexing` on every forward: a notice for spandrel, not for users
warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning)
_PURPOSES = ("SR", "Restoration")  # face models want aligned face crops; inpainting wants a mask


class CommunityModel(nn.Module):
    """A spandrel model with superres's contract: (B, 3, H, W) float RGB in [0, 1] -> (B, 3, H*s, W*s), `.scale`,
    `.info`, and `.precisions`, the ones spandrel says it runs in.

    The input is padded to the architecture's size requirements (e.g. SwinIR's minimum size) and the output
    cropped back; grayscale models see the mean of R, G and B. `casts_input`: the model converts its input to its
    own dtype, so `superres.optimize` converts it whole (no fp32 first convolution: its layers are unknown here).
    """

    casts_input = True

    def __init__(self, descriptor, info: WeightsInfo) -> None:
        super().__init__()
        self.net = descriptor.model  # registered, so .to(), deepcopy and batch-norm folding reach its weights
        self.descriptor = descriptor  # its call pads, runs the architecture's own forward and crops
        self.scale, self.info = descriptor.scale, info
        self.precisions = ("fp32", *(("bf16",) if descriptor.supports_bfloat16 else ()),
                           *(("fp16",) if descriptor.supports_half else ()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H*s, W*s)
        if self.descriptor.input_channels == 1:
            x = x.mean(1, keepdim=True)  # (B, 1, H, W)
        dtype = next(self.net.parameters()).dtype
        # autocast as well: some architectures build float32 tensors (e.g. SwinIR's attention mask) on the fly
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            sr = self.descriptor(x.to(dtype)).clone()  # clone: a normal tensor, not an inference-mode one
        return sr.expand(-1, 3, -1, -1) if sr.shape[1] == 1 else sr


def load_community(state: object, path: Path, not_ours: str) -> CommunityModel:
    """The model spandrel recognises in `state` (a file's contents); `not_ours` says why superres's own format did
    not apply. WeightsError (one line) when spandrel is missing, recognises nothing, or finds a model that is not
    an RGB or grayscale image-to-image model."""
    try:
        import spandrel
    except ImportError:
        raise WeightsError(f"{path}: {not_ours}; models of other projects (ESRGAN, SwinIR, ...) need spandrel: "
                           f"{INSTALL_HINT}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: {not_ours}, nor a state dict (it holds a {type(state).__name__})")
    state = spandrel.canonicalize_state_dict(state)
    if not state or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise WeightsError(f"{path}: {not_ours}, nor a state dict of named tensors")
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise WeightsError(f"{path}: {not_ours}, and spandrel recognises no architecture in it") from None
    except Exception as error:  # an architecture's loader fails in its own ways on odd tensors
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise WeightsError(f"{path}: spandrel could not build the model ({first})") from None
    _check_usable(descriptor, path)
    info = WeightsInfo(path.stem, path, descriptor.architecture.id, {}, descriptor.scale, "unknown")
    return CommunityModel(descriptor, info).eval()


def _check_usable(descriptor, path: Path) -> None:
    name = descriptor.architecture.name
    purpose = getattr(descriptor, "purpose", None)
    if purpose not in _PURPOSES:
        raise WeightsError(f"{path}: a {name} model for {purpose or 'another task'}; superres runs super-resolution "
                           f"and restoration models only")
    channels = (descriptor.input_channels, descriptor.output_channels)
    if not all(c in (1, 3) for c in channels):
        raise WeightsError(f"{path}: a {name} model with {channels[0]} input and {channels[1]} output channels; "
                           f"superres runs RGB and grayscale models only")


def describe_community(model: CommunityModel) -> dict:
    """A JSON-ready summary of what spandrel found, as `superres models --inspect` prints it."""
    descriptor = model.descriptor
    needs = descriptor.size_requirements
    return {
        "name": model.info.name,
        "format": "spandrel",
        "arch": descriptor.architecture.id,
        "architecture": descriptor.architecture.name,
        "purpose": descriptor.purpose,
        "scale": descriptor.scale,
        "channels": f"{descriptor.input_channels} in, {descriptor.output_channels} out",
        "params": sum(p.numel() for p in model.net.parameters()),
        "tags": list(descriptor.tags),
        "size_requirements": {"minimum": needs.minimum, "multiple_of": needs.multiple_of, "square": needs.square},
        "precisions": list(model.precisions),
        "tiling": descriptor.tiling.name.lower(),
        "file": str(model.info.path),
    }
