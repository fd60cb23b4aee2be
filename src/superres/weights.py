"""Weights files: `.safetensors` whose metadata names the architecture and its arguments, and the catalogue.

A weights file is enough to rebuild its model: metadata holds `arch`, JSON `args`, `scale`, `degradation`,
the package `version`, the training `recipe` and the measured `metrics` (both JSON). Shipped files live in
`superres/pretrained/`, named `{arch}-x{scale}-{data}-v{N}.safetensors`; a name without `-vN` means the newest.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from superres import __version__
from superres.files import atomic_write
from superres.models import BASELINES, GENERATORS, build_model, count_parameters

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# What a bare architecture name resolves to: the model of that architecture for any photo.
DEFAULTS = {"rescnn": "rescnn-x4-general", "cnn": "cnn-x4-general", "gan": "gan-x4-general",
            "repattn": "repattn-x4-general"}
DEFAULT_MODEL = "rescnn"
_VERSIONED = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")


class WeightsError(Exception):
    """A weights file or name that cannot be used; the message is one line."""


@dataclass(frozen=True)
class WeightsInfo:
    name: str
    path: Path | None
    arch: str
    args: dict
    scale: int
    degradation: str
    version: str = ""
    metrics: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)


def stored(state: dict[str, torch.Tensor], storage: torch.dtype) -> dict[str, torch.Tensor]:
    """`state` as a weights file holds it: floating-point tensors in `storage`, the others (counters) as they are."""
    return {k: v.to(storage) if v.is_floating_point() else v for k, v in state.items()}


def save_weights(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    args: dict,
    scale: int,
    degradation: str,
    metrics: dict | None = None,
    recipe: dict | None = None,
    storage: torch.dtype = torch.float32,
) -> Path:
    """Write inference weights with their metadata, atomically (temporary file, then rename). Floating-point
    tensors are stored as `storage` (float16 halves a shipped file); loading casts them to the model's dtype."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in stored(model.state_dict(), storage).items()}
    metadata = {
        "format": "superres",
        "arch": arch,
        "args": json.dumps(args, sort_keys=True),
        "scale": str(scale),
        "degradation": degradation,
        "version": __version__,
        "metrics": json.dumps(metrics or {}, sort_keys=True),
        "recipe": json.dumps(recipe or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = save(tensors, metadata=metadata)
    atomic_write(path, lambda file: file.write(payload))
    return path


def _json_field(metadata: dict, key: str, path: Path) -> dict:
    try:
        value = json.loads(metadata.get(key, "{}"))
    except json.JSONDecodeError as error:
        raise WeightsError(f"{path}: metadata field {key!r} is not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise WeightsError(f"{path}: metadata field {key!r} must be a JSON object")
    return value


def _read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a `.safetensors` file (reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a readable .safetensors file ({str(error).splitlines()[0]})") from None


def read_info(path: str | os.PathLike) -> WeightsInfo:
    """The metadata of a superres `.safetensors` weights file (reads the header only)."""
    path = Path(path)
    return _info(_read_metadata(path), path)


def _info(metadata: dict[str, str], path: Path) -> WeightsInfo:
    if "arch" not in metadata:
        raise WeightsError(f"{path}: metadata has no 'arch': not a superres weights file")
    arch = metadata["arch"]
    if arch not in GENERATORS:
        raise WeightsError(f"{path}: metadata names unknown architecture {arch!r}")
    args = _json_field(metadata, "args", path)
    try:
        scale = int(metadata.get("scale", args.get("scale", 4)))
    except ValueError:
        raise WeightsError(f"{path}: metadata field 'scale' is not an integer") from None
    return WeightsInfo(
        name=path.stem,
        path=path,
        arch=arch,
        args=args,
        scale=scale,
        degradation=metadata.get("degradation", "unknown"),
        version=metadata.get("version", ""),
        metrics=_json_field(metadata, "metrics", path),
        recipe=_json_field(metadata, "recipe", path),
    )


def catalogue() -> list[WeightsInfo]:
    """Every shipped weights file, sorted by name."""
    return [read_info(p) for p in sorted(PRETRAINED_DIR.glob("*.safetensors"))]


def _newest(base: str) -> Path | None:
    versions = []
    for p in PRETRAINED_DIR.glob(f"{base}-v*.safetensors"):
        match = _VERSIONED.match(p.stem)
        if match and match["base"] == base:
            versions.append((int(match["version"]), p))
    return max(versions)[1] if versions else None


def resolve(name_or_path: str) -> Path | None:
    """The weights file a name or path means; None for the baselines without weights (`BASELINES`)."""
    if name_or_path in BASELINES:
        return None
    candidate = Path(name_or_path)
    if candidate.suffix in (".safetensors", ".pth", ".pt", ".ckpt") or os.sep in name_or_path:
        if not candidate.is_file():
            raise WeightsError(f"{name_or_path}: no such weights file")
        return candidate
    name = DEFAULTS.get(name_or_path, name_or_path)
    exact = PRETRAINED_DIR / f"{name}.safetensors"
    found = exact if exact.is_file() else _newest(name)
    if found is None:
        known = ", ".join([*BASELINES, *sorted(DEFAULTS), *(i.name for i in catalogue())])
        raise WeightsError(f"unknown model {name_or_path!r}; known: {known}")
    return found


_NOT_OURS = {
    ".safetensors": "not a superres weights file (its metadata has no 'arch')",
    ".pth": "not a superres weights file (a dict with 'arch', 'args' and 'state_dict')",
}


def _load_state(path: Path) -> tuple[WeightsInfo | None, object]:
    """(info, state dict) of a superres weights file; (None, the file's contents) for any other safely loadable
    file, which may be another project's model (`superres.community`)."""
    if path.suffix == ".safetensors":
        metadata = _read_metadata(path)
        info = _info(metadata, path) if "arch" in metadata else None
        try:
            return info, load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise WeightsError(f"{path}: cannot read tensors ({str(error).splitlines()[0]})") from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad or unsafe pickle
        raise WeightsError(f"{path}: not a loadable .pth file ({str(error).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict) or not {"arch", "args", "state_dict"} <= payload.keys():
        return None, payload
    arch, args, state = payload["arch"], payload["args"], payload["state_dict"]
    if not isinstance(arch, str) or arch not in GENERATORS:
        raise WeightsError(f"{path}: unknown architecture {arch!r}")
    if not isinstance(args, dict):
        raise WeightsError(f"{path}: 'args' must be a dict of the model's arguments, not {type(args).__name__}")
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise WeightsError(f"{path}: 'state_dict' must map parameter names to tensors")
    try:
        scale = int(args.get("scale", 4))
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: 'args' has a scale that is not an integer ({args['scale']!r})") from None
    info = WeightsInfo(path.stem, path, arch, dict(args), scale, str(payload.get("degradation", "unknown")))
    return info, state


def load_model(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a shipped name, a `.safetensors`/`.pth` path, or a baseline's name (`bicubic`, and the
    classical x1 restorers of `superres.models.classical`); eval mode, on `device`. A file in another project's
    format goes to spandrel (`superres.community`).

    The returned module carries its `WeightsInfo` as `model.info`.
    """
    path = resolve(str(name_or_path))
    if path is None:
        name = str(name_or_path)
        model = build_model(name, **BASELINES[name])
        model.info = WeightsInfo(name, None, name, dict(BASELINES[name]), model.scale, "any")
        return model.eval().to(device)
    info, state = _load_state(path)
    if info is None:
        from superres.community import load_community  # a floor up: it builds on this module

        return load_community(state, path, _NOT_OURS.get(path.suffix, _NOT_OURS[".pth"])).to(device)
    try:
        model = build_model(info.arch, **info.args)
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. a missing, unknown or negative argument
        raise WeightsError(f"{path}: arguments {info.args} do not fit {info.arch!r} ({error})") from None
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shapes (first: {k} {tuple(state[k].shape)}, expected {tuple(expected[k].shape)})")
        raise WeightsError(f"{path}: weights do not match {info.arch} {info.args}: " + "; ".join(parts))
    model.load_state_dict(state)
    model.info = info
    return model.eval().to(device)


def inspect_weights(name_or_path: str | os.PathLike) -> dict:
    """What a weights file (or name) holds, as `superres models --inspect` prints it: ours or another project's."""
    from superres.community import CommunityModel, describe_community

    model = load_model(name_or_path)
    if isinstance(model, CommunityModel):
        return describe_community(model)
    return {**describe(model.info), "format": "superres" if model.info.path else "built in"}


def describe(info: WeightsInfo) -> dict:
    """A JSON-ready summary, as `superres models --json` prints it."""
    params = count_parameters(build_model(info.arch, **info.args))
    return {
        "name": info.name,
        "arch": info.arch,
        "scale": info.scale,
        "degradation": info.degradation,
        "params": params,
        "metrics": info.metrics,
        "recipe": info.recipe,
        "file": str(info.path) if info.path else None,
    }


def interpolate(sharp: str | os.PathLike, smooth: str | os.PathLike, alpha: float) -> nn.Module:
    """Network interpolation (as ESRGAN does between its GAN and its PSNR model): every tensor alpha * sharp +
    (1 - alpha) * smooth, for two of our weights files of one architecture, e.g. a GAN and the PSNR-trained model it
    started from. alpha 1 is `sharp`, 0 is `smooth`; between, texture and artefacts trade against fidelity smoothly
    (the two must share a training lineage for the blend to work). The result carries `sharp`'s info."""
    if not 0.0 <= alpha <= 1.0:
        raise WeightsError(f"alpha must lie in [0, 1], got {alpha}")
    a, b = load_model(sharp), load_model(smooth)
    if any(m.info.path is None or m.info.arch not in GENERATORS for m in (a, b)):  # a baseline, another project's
        raise WeightsError("interpolation takes two superres weights files of a generator")
    if (a.info.arch, a.info.args) != (b.info.arch, b.info.args):
        raise WeightsError(f"cannot interpolate {a.info.arch} {a.info.args} with {b.info.arch} {b.info.args}")
    smooth_state = b.state_dict()
    blended = {k: v.lerp(smooth_state[k], 1.0 - alpha) if v.is_floating_point() else v
               for k, v in a.state_dict().items()}
    a.load_state_dict(blended)
    return a
