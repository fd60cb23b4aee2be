"""Training-run configuration: frozen dataclasses are the schema, TOML files fill them.

    config = load_config("configs/rescnn_x4_bicubic.toml", ["train.steps=1000", "model.args.num_blocks=8"])
    print(to_toml(config))

A TOML file has the top-level keys `name` and `mode` and the tables `[model]`, `[data]`, `[train]` and `[gan]`;
every key is optional except `model.arch` (supervised mode), `data.train_roots` and `data.degradation`. An override
is `section.key=value` (or `name=...`, `mode=...`, or `model.args.channels=32` into a free-form table), the value
parsed as a TOML value (`train.lr=2e-4`, `data.train_roots=["a", "b"]`); a value that is not valid TOML is taken
as a bare string (`name=my-run`). Unknown keys and wrongly typed values raise ValueError naming the key.

Relative paths in a config are relative to the working directory (the project root), not to the TOML file.
Nothing mutates a config after loading: derive a changed one with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superres.data.conditions import CONDITIONS
from superres.data.degrade import DEGRADATIONS, make_params
from superres.losses import ADVERSARIAL_LOSSES, CONTENT_LOSSES, PIXEL_LOSSES
from superres.models import DISCRIMINATORS
from superres.runtime import PRECISIONS

MODES = ("supervised", "gan")


@dataclass(frozen=True)
class ModelConfig:
    """The generator: a registered architecture and its keyword arguments (see superres.models.build_model).
    In GAN mode the generator comes from `gan.generator_weights` and this section may be left out."""

    arch: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    init_weights: str = ""  # supervised mode: start from these weights (a shipped name or a path) instead of random


@dataclass(frozen=True)
class DataConfig:
    """Where training patches come from and how LQ patches are made from them."""

    train_roots: tuple[str, ...] = ()  # HR image folders (only ../shared/data/train/*)
    degradation: str = "bicubic"  # a name from superres.data.DEGRADATIONS, also used for validation
    scale: int = 4
    patch_size: int = 96  # HR patch side; the LQ patch is patch_size // scale
    batch_size: int = 16
    degradation_params: dict[str, Any] = field(default_factory=dict)  # passed to superres.data.degrade
    paired_lq_root: str | None = None  # LQ folder matching the single HR root: train on fixed pairs instead
    div2k_root: str | None = None  # a DIV2K-layout folder (HR/, LR_*/X4/): train on its pairs instead
    device_resident: bool = True  # keep the decoded training images on the training device (fast GPU sampling)
    prefetch: int = 2  # batches drawn ahead in a background thread while the model trains; 0 = in the loop


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation, its schedule, and how often to log, validate and checkpoint (all counted in steps)."""

    steps: int = 1000
    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = ()  # piecewise constant: lr * lr_gamma**(number of milestones <= step)
    lr_gamma: float = 0.5
    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off (supervised mode)
    loss: str = "l1"  # "l1" | "mse" | "psnr" (minus the mean PSNR of the batch's images; supervised mode)
    device: str = "auto"  # "auto" = cuda if available, else cpu; or any torch device string
    precision: str = "auto"  # "auto" = bf16 on CUDA (fp16 where bf16 is missing) and on CPUs with bf16 units
    channels_last: bool = False
    compile: bool = False  # torch.compile the training forward (CUDA runs); saved weights stay unwrapped
    sync_batchnorm: bool = False  # torchrun on GPUs: batch-norm statistics over all ranks' patches (SyncBatchNorm)
    seed: int = 0
    log_every: int = 100
    val_every: int = 1000  # 0 = no validation
    val_roots: tuple[str, ...] = ("../shared/data/val/kodak24",)
    val_max_images: int = 24  # first N images by name, 0 = all
    val_crop: int = 0  # centre crop of each validation HR image to this side (px), 0 = whole image
    val_conditions: tuple[str, ...] = ()  # named test conditions (superres.data.conditions) for the validation
    # LR instead of the training degradation: val/psnr is their mean, val/psnr/NAME each one
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 0.0  # > 0: also checkpoint at the first log step this long after the last one
    max_minutes: float = 0.0  # wall-clock budget of one train() call; 0 = none. Stops cleanly (checkpoint, weights)
    ema_decay: float = 0.0  # > 0: validate and export an exponential moving average of G's weights (superres.ema)


@dataclass(frozen=True)
class GanConfig:
    """Adversarial fine-tuning of a trained generator (mode = "gan"); the generator's lr is train.lr.

    Collapse rule: a log window (train.log_every steps) counts as collapsed when D's mean loss
    d/real + d/fake is below `collapse_d_loss` (D separates everything with certainty), or when D rejects every
    fake (d/acc_fake == 1) while the unweighted generator adversarial loss g/adv exceeds `collapse_g_adv` (G is
    pushed nowhere useful). `collapse_patience` consecutive collapsed windows stop the run with TrainingError;
    0 turns the check off.

    G's loss: content + adv_weight * adversarial + pixel_weight * L1 + fft_weight * FFT amplitude L1 + gram_weight *
    L1 of Gram matrices of D's features + periodic_weight * FFT amplitude L1 at the scale-periodic frequencies
    (superres.losses). Only "vgg54" needs a pretrained network."""

    generator_weights: str = ""  # a shipped weights name or a .safetensors path
    # "auto" = "vgg54" when a VGG19 file is given (vgg_weights or $SUPERRES_VGG19_WEIGHTS), else "disc-features"
    content_loss: str = "auto"  # "auto" | "vgg54" | "pixel-l1" | "disc-features"
    vgg_weights: str | None = None  # path to VGG19 weights for "vgg54" (no downloads at train time)
    adv_loss: str = "vanilla"  # "vanilla" (SRGAN) | "relativistic" (ESRGAN's relativistic average GAN)
    adv_weight: float = 1e-3
    pixel_weight: float = 0.0
    fft_weight: float = 0.0  # texture: L1 between the amplitude spectra of sr and gt
    gram_weight: float = 0.0  # texture: L1 between Gram matrices of D's features of sr and gt
    periodic_weight: float = 0.0  # no checkerboard: amplitude L1 at the data.scale-periodic frequencies only
    discriminator: str = "srgan"  # "srgan" (10 blocks, one logit per image) | "unet" (spectral norm, one per pixel)
    d_lr: float = 1e-4  # follows the same milestones as train.lr
    d_betas: tuple[float, float] = (0.9, 0.999)
    d_args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the discriminator's architecture
    collapse_patience: int = 10
    collapse_d_loss: float = 1e-3
    collapse_g_adv: float = 10.0


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    mode: str = "supervised"  # "supervised" | "gan"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gan: GanConfig = field(default_factory=GanConfig)

    def __post_init__(self) -> None:
        check_values(self)


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "gan": GanConfig}


def check_values(config: RunConfig) -> None:
    """Raise ValueError for values that no run could use."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"config: {message}")

    d, t, g = config.data, config.train, config.gan
    check(config.mode in MODES, f"mode must be one of {MODES}, got {config.mode!r}")
    check(config.mode == "gan" or bool(config.model.arch), "model.arch is required in supervised mode")
    check(config.mode == "supervised" or bool(g.generator_weights), "gan.generator_weights is required in gan mode")
    check(g.content_loss in CONTENT_LOSSES, f"gan.content_loss must be one of {CONTENT_LOSSES}, got {g.content_loss!r}")
    check(g.adv_loss in ADVERSARIAL_LOSSES, f"gan.adv_loss must be one of {ADVERSARIAL_LOSSES}, got {g.adv_loss!r}")
    check(g.discriminator in DISCRIMINATORS,
          f"gan.discriminator must be one of {tuple(DISCRIMINATORS)}, got {g.discriminator!r}")  # fmt: skip
    for key in ("adv_weight", "pixel_weight", "fft_weight", "gram_weight", "periodic_weight"):
        check(getattr(g, key) >= 0, f"gan.{key} must be >= 0")
    check(0 <= t.ema_decay < 1, f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    check(t.loss in PIXEL_LOSSES, f"train.loss must be one of {tuple(PIXEL_LOSSES)}, got {t.loss!r}")
    check(t.precision in PRECISIONS, f"train.precision must be one of {PRECISIONS}, got {t.precision!r}")
    unknown = [c for c in t.val_conditions if c not in CONDITIONS]
    check(not unknown, f"train.val_conditions: unknown {unknown}; expected some of {tuple(CONDITIONS)}")
    check(d.degradation in DEGRADATIONS, f"data.degradation must be one of {DEGRADATIONS}, got {d.degradation!r}")
    try:
        make_params(d.degradation, d.degradation_params)
    except ValueError as error:
        check(False, f"data.degradation_params: {error}")
    check(d.scale >= 1 and d.patch_size % d.scale == 0, f"data.patch_size {d.patch_size} is no multiple of {d.scale}")
    check(d.batch_size >= 1, "data.batch_size must be at least 1")
    check(t.steps >= 1, "train.steps must be at least 1")
    check(t.lr > 0 and g.d_lr > 0, "learning rates must be positive")
    check(list(t.lr_milestones) == sorted(t.lr_milestones), "train.lr_milestones must be increasing")
    for key in ("log_every", "checkpoint_every"):
        check(getattr(t, key) >= 1, f"train.{key} must be at least 1")
    for key in ("val_every", "val_max_images", "val_crop", "collapse_patience"):
        value = getattr(g if key == "collapse_patience" else t, key)
        check(value >= 0, f"{key} must be >= 0")
    check(t.max_minutes >= 0, "train.max_minutes must be >= 0")


# --- loading -----------------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML run config and apply `section.key=value` overrides."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read config {path}: {error}") from error
    return loads_config(text, overrides, source=str(path))


def loads_config(text: str, overrides: list[str] | tuple[str, ...] = (), *, source: str = "<string>") -> RunConfig:
    """Parse TOML text (a file's, or one stored in a checkpoint) into a RunConfig."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: invalid TOML: {error}") from error
    for override in overrides:
        apply_override(raw, override)
    return from_dict(raw, source=source)


def parse_override(override: str) -> tuple[list[str], Any]:
    """"train.lr=2e-4" -> (["train", "lr"], 0.0002); a value that is not TOML stays a string."""
    key, sep, text = override.partition("=")
    try:  # TOML parses the dotted key too, so quoted parts ("a key") work as in a file
        tree = tomllib.loads(f"{key.strip()} = 0") if sep else None
    except tomllib.TOMLDecodeError:
        tree = None
    if not tree:
        raise ValueError(f"override {override!r} is not of the form section.key=value")
    keys = []
    while isinstance(tree, dict):
        (name, tree), *_ = tree.items()
        keys.append(name)
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return keys, value


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set one dotted key in the raw (not yet typed) TOML dict; from_dict checks the key and type afterwards."""
    keys, value = parse_override(override)
    table = raw
    for key in keys[:-1]:
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise ValueError(f"override {override!r}: {key!r} is not a table")
    table[keys[-1]] = value


def from_dict(raw: dict[str, Any], *, source: str = "<dict>") -> RunConfig:
    """Build a RunConfig from a plain dict (parsed TOML), checking every key and value type."""
    known = {"name", "mode", *SECTIONS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {unknown}; known: {sorted(known)}")
    top: dict[str, Any] = {}
    for key in ("name", "mode"):
        if key in raw:
            top[key] = coerce(raw[key], str, key)
    for section, cls in SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [{section}] must be a table, got {table!r}")
        top[section] = build_section(cls, table, section, source)
    return RunConfig(**top)


def build_section(cls: type, table: dict[str, Any], section: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - fields)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {[f'{section}.{k}' for k in unknown]}; known: {sorted(fields)}")
    return cls(**{key: coerce(value, hints[key], f"{section}.{key}") for key, value in table.items()})


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a field's annotation; ints become floats and lists become tuples where declared."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except ValueError:
                pass
        raise ValueError(f"config: {key} = {value!r} has the wrong type; expected {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config: {key} = {value!r} must be an array")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"config: {key} = {value!r} must have {len(args)} items")
        return tuple(coerce(v, a, key) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config: {key} = {value!r} must be a table")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise ValueError(f"config: {key} = {value!r} must be of type {hint.__name__}")
    return value


# --- writing -----------------------------------------------------------------------------------------------


def to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain TOML-ready dict: tuples become lists, None values are left out (TOML has no null)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def to_toml(config: RunConfig) -> str:
    """The fully resolved config as TOML; loads_config(to_toml(c)) == c.

    Written here rather than with tomli_w so that a run needs no package beyond the standard library to record
    its config (the GPU machines have tomllib but not tomli_w). Free-form tables (`args`, `d_args`) are inline."""
    raw = to_dict(config)
    lines = [f"{key} = {toml_value(value)}" for key, value in raw.items() if key not in SECTIONS]
    for section in SECTIONS:
        lines += ["", f"[{section}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in raw[section].items()]
    return "\n".join(lines) + "\n"


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "nan" if math.isnan(value) else "+inf" if value > 0 else "-inf"
    if isinstance(value, str):  # JSON escapes quotes, backslashes and control characters as TOML does; DEL too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
