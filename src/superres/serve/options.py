"""What the browser UI offers and the limits it enforces: settings (explicit, frozen) and the model menu."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from superres.weights import DEFAULT_MODEL, DEFAULTS, WeightsError, catalogue, inspect_weights

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
TILE_CHOICES = (128, 256, 512, 1024)  # input pixels; 0 in the API means the whole image at once
OUTSCALE_CHOICES = (1, 1.5, 2, 3, 4, 6, 8)  # output size / input size; 0 in the API means the model's own scale
MODEL_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")

# One line each on what the model is good for; the numbers behind them are in the README and the model cards.
_ALIAS_NOTES = {
    "bicubic": "plain bicubic resize: the reference, no network",
    "cnn": "the smallest network, for any photo (clean, blurred, noisy or JPEG)",
    "rescnn": "for any photo: clean, blurred, noisy or JPEG (the default)",
    "gan": "sharper texture (GAN) for any photo; partly invented detail, a little lower PSNR",
    "repattn": "for any photo, about 4x faster than the default at much the same quality",
}
_DEGRADATION_NOTES = {
    "bicubic": "for clean, bicubic-downscaled images (not blurred)",
    "div2k-unknown": "for photos blurred like the DIV2K unknown track",
    "realistic": "for any photo",
}


@dataclass(frozen=True)
class ModelChoice:
    name: str
    note: str
    source: str | None = None  # what `superres.weights.load_model` is given; None: the name


@dataclass(frozen=True)
class ServeSettings:
    """Limits and runtime of one app; `allowed_hosts` None accepts any Host header (for a non-loopback --host)."""

    max_upload_bytes: int = 25_000_000
    max_pixels: int = 4_000_000  # of the input: a 4 MP photo becomes 64 MP
    ttl_seconds: float = 1800.0  # finished jobs not looked at for this long are deleted
    max_jobs: int = 64  # jobs kept at once (queued, running or finished)
    device: str = "auto"
    precision: str = "auto"
    overlap: int = 32
    default_tile: int = 512
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS
    model_files: tuple[ModelChoice, ...] = ()  # offered after the shipped models (`--models-dir`)


def model_choices() -> list[ModelChoice]:
    """bicubic, the shipped aliases (rescnn first: the default), then the other shipped weights by name."""
    aliases = [DEFAULT_MODEL, *sorted(set(DEFAULTS) - {DEFAULT_MODEL})]
    choices = [ModelChoice(name, _ALIAS_NOTES.get(name, f"shipped as {DEFAULTS[name]}")) for name in aliases]
    aliased = set(DEFAULTS.values())
    for info in catalogue():
        if re.sub(r"-v\d+$", "", info.name) in aliased:
            continue
        note = f"{info.arch}, " + _DEGRADATION_NOTES.get(info.degradation, f"trained for {info.degradation} input")
        if info.scale == 1:
            note = (f"{info.arch}, x1: deblurs, denoises and removes JPEG blocks at the same size; for damaged photos "
                    "only (it over-sharpens good ones)")
        choices.append(ModelChoice(info.name, note))
    choices.append(ModelChoice("bicubic", _ALIAS_NOTES["bicubic"]))
    return choices


def model_file_choices(folder: Path) -> tuple[list[ModelChoice], list[str]]:
    """The weights files in `folder` (ours, or other projects' that spandrel recognises) as menu entries named by
    file name, and one line for each file that cannot be used."""
    choices, problems = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in MODEL_FILE_SUFFIXES and p.is_file()):
        try:
            found = inspect_weights(path)
        except WeightsError as error:
            problems.append(str(error).splitlines()[0])
            continue
        kind = found.get("architecture") or found["arch"]
        choices.append(ModelChoice(path.name, f"{kind} x{found['scale']}, a model file from {folder}", str(path)))
    return choices, problems
