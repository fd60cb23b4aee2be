"""The `superres` command: the only module that parses arguments, prints for people, or exits.

Exit codes: 0 success; 1 some files of a folder run failed; 2 bad input or usage; 130 interrupted; 141 the reader
of the output stopped early (a closed pipe, as `| head` does).

Under torchrun (`torchrun --nproc_per_node N -m superres train|upscale ...`) every rank runs the command: `train`
trains one model with DistributedDataParallel, `upscale` does the rank's share of the files. Rank 0 prints the
summary, and its exit code covers the failures of every rank.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from superres.files import atomic_write_text

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
UPSCALE_WAIT = timedelta(days=7)  # under torchrun, ranks done with their share of a folder wait this long for the rest
CONTENT_LOSSES = ("auto", "vgg54", "pixel-l1", "disc-features")  # superres.losses.CONTENT_LOSSES (without torch)


class CliError(Exception):
    """A one-line message for the user; exit code 2."""


def _error(message: str) -> None:
    print(f"superres: error: {message}", file=sys.stderr)


def _comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _progress(total: int, desc: str, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled or not sys.stderr.isatty(), leave=False)


def _prepare(model_name: str, args: argparse.Namespace, world=None):
    """A `PreparedModel` for the command's --device and --precision, with its --threads set; in a torchrun job
    (`world`), on the rank's own GPU."""
    from superres.optimize import PreparedModel
    from superres.runtime import resolve_device, set_threads
    from superres.weights import load_model

    set_threads(args.threads)
    device = resolve_device(args.device)
    device = world.device(device) if world is not None else device
    return PreparedModel(load_model(model_name), device=device, precision=args.precision, ensemble=args.ensemble)


def _load(model_name: str, args: argparse.Namespace):
    """A model ready for inference in the command's --precision on its --device."""
    return _prepare(model_name, args).at()


def _label(model_name: str, args: argparse.Namespace) -> str:
    """The model's name in a table: with --ensemble NAME+x8, told apart from the model alone."""
    from superres.optimize import ensemble_name

    return ensemble_name(model_name) if args.ensemble else model_name


# ---------------------------------------------------------------------------------------------------- upscale
def _plan_outputs(inputs: list[Path], output: Path) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs: a folder maps to a folder with the same relative names (its images: videos
    are done when named as inputs)."""
    from superres.imageio import is_image_path, list_images
    from superres.video import is_video_path

    single_file = len(inputs) == 1 and inputs[0].is_file()
    if single_file and (is_image_path(output) or is_video_path(output)):
        return [(inputs[0], output)]
    if output.suffix and not output.is_dir():
        raise CliError(f"{output}: unsupported output format {output.suffix!r} (use .png, .jpg, .webp, .tif or .bmp, "
                       f".mp4, .mkv, .mov, .webm or .avi, or a folder)")
    if output.exists() and not output.is_dir():
        raise CliError(f"{output}: exists and is not a folder (several inputs need an output folder)")
    plan = []
    for item in inputs:
        if item.is_dir():
            plan += [(f, output / f.relative_to(item)) for f in list_images(item)]
        elif item.exists():
            plan.append((item, output / item.name))
        else:
            raise CliError(f"{item}: no such file or folder")
    return plan


class _TileBar:
    """A progress bar over the tiles of one big image, shown only when it has several tiles and a terminal."""

    def __init__(self, name: str) -> None:
        self.name, self.bar = name, None

    def __enter__(self):
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None and total > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.name, unit="tile", leave=False, disable=not sys.stderr.isatty())
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_output_folders(plan: list[tuple[Path, Path]]) -> None:
    """Refuse, before any work, output folders that cannot be made or written."""
    first_in = {}
    for _, target in plan:
        first_in.setdefault(target.parent, target)
    for folder, target in first_in.items():
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise CliError(f"{target}: cannot write, {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise CliError(f"{target}: cannot write to folder {existing} (permission denied)")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (kill, a stopping container) ends the run as Ctrl-C does: the atomic writer removes the file it was
    writing and finished outputs stay, instead of the process dying with a temporary file left behind."""
    import signal

    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread: its signals are not ours to change
        previous = _raise_interrupt
    try:
        yield
    finally:
        if previous is not _raise_interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _check_kinds(plan: list[tuple[Path, Path]]) -> None:
    """Refuse, before any work, an image written as a video or the reverse, and an output over its input."""
    from superres.video import VIDEO_SUFFIXES, is_video_path

    for source, target in plan:
        if source.resolve() == target.resolve():
            raise CliError(f"{target}: output would overwrite its input")
        if is_video_path(source) and not is_video_path(target):
            raise CliError(f"{target}: {source} is a video: write it as {', '.join(sorted(VIDEO_SUFFIXES))}")
        if is_video_path(target) and not is_video_path(source):
            raise CliError(f"{target}: a video output needs a video input, and {source} is not one")


def _upscale_image(source: Path, target: Path, model, args: argparse.Namespace, batch: int) -> str:
    """Upscale one image file into `target`; what was done, for the summary line."""
    from superres.imageio import read_picture, write_picture
    from superres.inference import upscale_picture

    picture = read_picture(source, max_pixels=args.max_pixels)
    with _TileBar(source.name) as on_tile:
        sr = upscale_picture(model.for_picture(picture.bit_depth), picture, tile=args.tile, overlap=args.overlap,
                             batch=batch, on_tile=on_tile, outscale=args.outscale)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_picture(target, sr)
    return f"{target}: {_scaled(model, args.outscale)}"


def _upscale_video(source: Path, target: Path, model, args: argparse.Namespace, batch: int) -> str:
    """Upscale one video file into `target`, frame by frame, with a progress bar of frames and frames per second."""
    from tqdm import tqdm

    from superres.inference import upscale_picture
    from superres.video import probe, transcode

    info = probe(source, max_pixels=args.max_pixels)
    frame_model = model.for_picture(8)  # frames are decoded to 8-bit RGB

    def upscale_frame(picture):
        return upscale_picture(frame_model, picture, tile=args.tile, overlap=args.overlap, batch=batch,
                               outscale=args.outscale)

    target.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=info.frames, desc=source.name, unit="frame", leave=False, disable=not sys.stderr.isatty()) as bar:
        result = transcode(source, target, upscale_frame, on_frame=lambda done: bar.update(done - bar.n))
    width, height = result.size
    return (f"{target}: {_scaled(model, args.outscale)}, {result.frames} frames of {width}x{height}, "
            f"audio {result.audio}")


def _scaled(model, outscale: float | None) -> str:
    what = f"x{model.scale}{' (same size)' if model.scale == 1 else ''} with {model.info.name}"
    return what if outscale is None or outscale == model.scale else f"{what}, resized to x{outscale:g}"


def cmd_upscale(args: argparse.Namespace) -> int:
    from superres.distributed import env_world, session
    from superres.inference import check_outscale
    from superres.runtime import tile_batch

    inputs = [Path(p) for p in args.inputs]
    for item in inputs:
        if not item.exists():
            raise CliError(f"{item}: no such file or folder")
    if args.outscale is not None:
        check_outscale(args.outscale)
    plan = _plan_outputs(inputs, Path(args.output))
    if not plan:
        raise CliError("no images found in the given inputs")
    _check_kinds(plan)
    _check_output_folders(plan)
    world = env_world()  # under torchrun: this rank's share of the files, on its own GPU
    model = _prepare(args.model, args, world)  # its versions per picture: 16-bit ones get fp32 under auto
    batch = args.batch or tile_batch(model.device)
    if args.scale is not None and args.scale != model.scale:
        raise CliError(f"--scale {args.scale} does not match the model's scale x{model.scale}")
    name = model.info.name if model.info else args.model
    if args.command == "restore" and model.scale != 1:
        raise CliError(f"{name} is an x{model.scale} model: restore takes x1 models (use superres upscale)")
    if args.command == "upscale" and model.scale == 1:
        raise CliError(f"{name} is an x1 model, it keeps the size: use superres restore")
    with session("gloo", timeout=UPSCALE_WAIT) as world:  # only the failures travel between the ranks
        share = world.shard(plan)
        try:
            failures, done = _upscale_files(share, model, args, batch, single=len(plan) == 1, bar=world.is_main)
        except KeyboardInterrupt as interrupt:
            rank = f"rank {world.rank}: " if world.rank else ""
            _error(f"{rank}interrupted after {interrupt.args[0]} of {len(share)} images; finished outputs are "
                   "complete, none is half-written"
                   + (" (rerun with --skip-existing to do the rest)" if len(plan) > 1 else ""))
            return EXIT_INTERRUPTED
        failures = _gather_failures(world, failures)
    if not world.is_main:
        return EXIT_OK  # rank 0 reports this rank's failures and exits with the code for all of them
    ranks = f" on {world.size} ranks" if world.size > 1 else ""
    if len(plan) > 1 or failures:
        print(f"{args.command}d {len(plan) - len(failures)} of {len(plan)} images {_scaled(model, args.outscale)} "
              f"into {args.output}{ranks}")
    else:
        print(done or f"{plan[0][1]}: {_scaled(model, args.outscale)}")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return EXIT_PARTIAL if failures else EXIT_OK


def _upscale_files(plan: list[tuple[Path, Path]], model, args: argparse.Namespace, batch: int, *, single: bool,
                   bar: bool) -> tuple[list[str], str]:
    """Upscale each (source, target) pair (images and videos), written atomically: the one-line failures of a
    folder run, and what the last file's run did. A failure of a single-file run raises CliError. Ctrl-C or
    SIGTERM raise KeyboardInterrupt(files seen)."""
    from superres.imageio import ImageFileError
    from superres.video import VideoFileError, is_video_path

    failures: list[str] = []
    progress = _progress(len(plan), "upscaling", enabled=bar and len(plan) > 1)
    seen, done = 0, ""
    try:
        with _sigterm_as_ctrl_c():
            for source, target in plan:
                if not (args.skip_existing and target.exists()):
                    upscale_one = _upscale_video if is_video_path(source) else _upscale_image
                    try:
                        done = upscale_one(source, target, model, args, batch)
                    except (ImageFileError, VideoFileError, OSError) as error:
                        if single:
                            raise CliError(str(error).splitlines()[0]) from None
                        failures.append(str(error).splitlines()[0])
                seen += 1
                progress.update(1)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(seen) from None
    finally:
        progress.close()
    return failures, done


def _gather_failures(world, failures: list[str]) -> list[str]:
    """Every rank's failures, in rank order (one all-gather under torchrun)."""
    from superres.distributed import gather

    return [failure for rank_failures in gather(world, failures) for failure in rank_failures]


# ---------------------------------------------------------------------------------------------------- evaluate
def _format_evaluation(result) -> str:
    lines = [f"{result.model} on {result.data} (x{result.scale}, {result.degradation} LR)", ""]
    lines.append(f"{'image':<24} {'PSNR-Y':>8} {'SSIM-Y':>8} {'PSNR-RGB':>9} {'SSIM-RGB':>9} {'sharp':>6} "
                 f"{'checker':>7}")  # fmt: skip
    for name, s in [*((s.name, s) for s in result.per_image), (f"mean of {result.images}", result)]:
        lines.append(f"{name:<24} {s.psnr_y:8.2f} {s.ssim_y:8.4f} {s.psnr_rgb:9.2f} {s.ssim_rgb:9.4f} "
                     f"{s.sharpness:6.3f} {s.checkerboard:7.2f}")  # fmt: skip
    lines += ["", f"sharp, checker: gradient energy, and spectral energy at the {result.scale}-periodic frequencies "
                  "(superres.metrics.periodic_energy), SR over HR (1.0 = as HR)"]
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from superres.data.conditions import conditions_at
    from superres.evaluate import evaluate

    if not Path(args.data).is_dir():
        raise CliError(f"{args.data}: no such folder")
    model = _load(args.model, args)
    degradation = args.degradation or "bicubic"
    if args.degradation is None and model.scale == 1:
        raise CliError(f"{model.info.name} restores at the same size: give --degradation (one of "
                       f"{', '.join(conditions_at(1))})")
    try:
        result = evaluate(model, args.data, model_name=model.info.name, degradation=degradation, tile=args.tile)
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    print(_format_evaluation(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result.to_json(), indent=2) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- models
def _headline(metrics: dict) -> list[str]:
    """The few numbers a person compares: PSNR on the standard sets and on the real DIV2K unknown-track pairs."""
    shown = []
    for key, label in (("set5/psnr_y", "Set5"), ("set14/psnr_y", "Set14"), ("b100/psnr_y", "B100")):
        if key in metrics:
            shown.append(f"{label} {metrics[key]:.2f} dB Y")
    if "div2k_unknown/psnr_rgb" in metrics:
        shown.append(f"DIV2K-unknown {metrics['div2k_unknown/psnr_rgb']:.2f} dB RGB")
    return shown


def _inspect(args: argparse.Namespace) -> int:
    from superres.weights import inspect_weights

    row = inspect_weights(args.inspect)
    if args.json:
        print(json.dumps(row, indent=2))
        return EXIT_OK
    for key, value in row.items():
        if key == "recipe":
            continue  # long: --json has it
        if key == "metrics":
            value = ", ".join(_headline(value)) or "-"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        print(f"{key + ':':<19} {value}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from superres.models import build_model, count_macs, count_parameters
    from superres.weights import DEFAULTS, catalogue, describe

    if args.inspect:
        return _inspect(args)
    rows = [
        {"name": "bicubic", "arch": "bicubic", "scale": 4, "degradation": "any", "params": 0, "metrics": {}, "file": None},
        *(describe(info) for info in catalogue()),
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(f"{'name':<28} {'arch':<8} {'scale':>5} {'degradation':<14} {'params':>10}  measured (model cards: superres/pretrained/*.md)")
    for row in rows:
        metrics = ", ".join(_headline(row["metrics"]))
        print(f"{row['name']:<28} {row['arch']:<8} {row['scale']:>5} {row['degradation']:<14} {row['params']:>10,}  {metrics}")
    print("\naliases: " + ", ".join(f"{k} -> {v}" for k, v in DEFAULTS.items()))
    print("architectures (x4, multiply-adds for a 256x256 input): " + ", ".join(
        f"{a} ({count_parameters(build_model(a)):,} params, {count_macs(build_model(a)) / 1e9:.1f} GMAC)"
        for a in ("cnn", "rescnn", "repattn")) + f", discriminator ({count_parameters(build_model('discriminator')):,} params)")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- benchmark
def _conditions(data_dir: Path, requested: str, scale: int) -> list[str]:
    """The test conditions of `--degradations` for a model of `scale`: a comma-separated list, `all` (those that
    exist at the scale), or `auto` (for upscalers div2k-unknown where the folder has LR_unknown/, else bicubic; for
    x1 models all)."""
    from superres.data.conditions import CONDITIONS, conditions_at

    if requested == "all" or (requested == "auto" and scale == 1):
        return conditions_at(scale)
    if requested == "auto":
        return ["div2k-unknown" if (data_dir / "LR_unknown").is_dir() else "bicubic"]
    names = _comma_list(requested)
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise CliError(f"--degradations: unknown condition {', '.join(unknown) or repr(requested)}; "
                       f"expected all, auto or some of {', '.join(CONDITIONS)}")
    return names


def cmd_benchmark(args: argparse.Namespace) -> int:
    from superres.evaluate import evaluate
    from superres.inference import model_device
    from superres.models import count_parameters
    from superres.report import condition_matrix, write_table

    datasets = [Path(d) for d in args.data]
    for folder in datasets:
        if not folder.is_dir():
            raise CliError(f"{folder}: no such folder")
    names = _comma_list(args.models)
    loaded = [_load(name, args) for name in names]  # fail before any work on a bad name
    plans = {model.scale: [(folder, _conditions(folder, args.degradations, model.scale)) for folder in datasets]
             for model in loaded}
    rows = []
    for name, model in zip([_label(name, args) for name in names], loaded):
        for folder, conditions in plans[model.scale]:
            for condition in conditions:
                result = evaluate(model, folder, model_name=model.info.name, degradation=condition, tile=args.tile)
                row = {
                    "model": name,
                    "weights": model.info.name,
                    "data": folder.name,
                    "degradation": condition,
                    "images": result.images,
                    "psnr_y": result.psnr_y,
                    "ssim_y": result.ssim_y,
                    "psnr_rgb": result.psnr_rgb,
                    "ssim_rgb": result.ssim_rgb,
                    "sharpness": result.sharpness,
                    "checkerboard": result.checkerboard,
                    "params": count_parameters(model),
                    "device": model_device(model).type,
                    "s_per_image": result.seconds_per_image,
                }
                rows.append(row)
                print(
                    f"{name:<24} {folder.name:<18} {condition:<14} PSNR-Y {row['psnr_y']:6.2f}  "
                    f"SSIM-Y {row['ssim_y']:.4f}  PSNR-RGB {row['psnr_rgb']:6.2f}  sharp {row['sharpness']:.3f}  "
                    f"checker {row['checkerboard']:.2f}  {row['s_per_image']:.3f} s/img", flush=True
                )
    out = Path(args.out)
    write_table(rows, out / "benchmark.md", out / "benchmark.csv")
    atomic_write_text(out / "benchmark.json", json.dumps(rows, indent=2) + "\n")
    if len({row["degradation"] for row in rows}) > 1:
        matrix = condition_matrix(rows)
        atomic_write_text(out / "matrix.md", matrix)
        atomic_write_text(out / "matrix_artifacts.md", condition_matrix(rows, ("sharpness", "checkerboard")))
        print("\n" + matrix)
        print(f"wrote {out / 'matrix.md'} (Y PSNR / SSIM), {out / 'matrix_artifacts.md'} (sharpness / checkerboard), "
              f"{out / 'benchmark.md'}, {out / 'benchmark.csv'} and {out / 'benchmark.json'}")
    else:
        print(f"wrote {out / 'benchmark.md'}, {out / 'benchmark.csv'} and {out / 'benchmark.json'}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- rd
def _rd_overrides(specs: list[str] | None) -> dict[tuple[str, int | None], list[int | None]]:
    """`--qualities CODEC[:SCALE]=Q,Q,...` (Q 0 to 100, or lossless) as rd.quality_grid's overrides."""
    overrides: dict[tuple[str, int | None], list[int | None]] = {}
    for spec in specs or []:
        key, _, values = spec.partition("=")
        codec, _, scale = key.partition(":")
        try:
            qualities = [None if q.lower() == "lossless" else int(q) for q in _comma_list(values)]
            overrides[codec.strip().lower(), int(scale) if scale else None] = qualities
        except ValueError:
            qualities = []
        if not qualities:
            raise CliError(f"--qualities {spec!r}: expected CODEC[:SCALE]=Q,Q,... with Q 0 to 100 or lossless")
    return overrides


def _rd_grid(args: argparse.Namespace):
    """The (codec, scale) -> qualities to measure, less the codecs this Pillow cannot encode (a note each)."""
    from superres.imageio import CODEC_FORMATS, codec_available
    from superres.rd import quality_grid

    codecs = [c.lower() for c in _comma_list(args.codecs)]
    try:
        scales = [int(s) for s in _comma_list(args.scales)]
    except ValueError:
        raise CliError(f"--scales: expected comma-separated numbers, got {args.scales!r}") from None
    if not codecs or not scales:
        raise CliError("--codecs and --scales need at least one value each")
    grid = quality_grid(codecs, scales, _rd_overrides(args.qualities))
    missing = [c for c in codecs if not codec_available(CODEC_FORMATS[c])]
    for codec in missing:
        _note(f"this Pillow cannot encode {codec}: skipped")
    grid = {key: qualities for key, qualities in grid.items() if key[0] not in missing}
    if not grid:
        raise CliError("no codec left to measure")
    return grid


def _note(message: str) -> None:
    print(f"superres: note: {message}", file=sys.stderr, flush=True)


def _rd_line(row: dict) -> str:
    """One BD row for people: each delta with the range it was averaged over, n/a where there is none."""
    def number(key: str, form: str, unit: str = "") -> str:
        value = row.get(key, math.nan)
        return "n/a" if math.isnan(value) else format(value, form) + unit

    line = f"{row['data']:<10} {row['codec']:<5} x{row['scale']} {row['model']:<20} BD-rate "
    line += number("bd_rate", "+.1f", "%")
    if "bd_psnr" in row:
        line += (f" ({number('psnr_from', '.1f')}-{number('psnr_to', '.1f')} dB; cubic "
                 f"{number('bd_rate_cubic', '+.1f', '%')})  BD-PSNR {number('bd_psnr', '+.2f', ' dB')} ("
                 f"{number('bpp_from', '.3g')}-{number('bpp_to', '.3g')} bpp)  above the codec alone at "
                 f"{row['better_bpp']} bpp  decode {row['decode_s']:.3f} s/img (codec alone "
                 f"{row['codec_decode_s']:.3f})")
    return line + (f"  [{row['reason']}]" if row.get("reason") else "")


def cmd_rd(args: argparse.Namespace) -> int:
    from superres import rd
    from superres.report import plot_rate_distortion, write_table
    from superres.runtime import resolve_device

    folders = [Path(d) for d in args.data]
    for folder in folders:
        if not folder.is_dir():
            raise CliError(f"{folder}: no such folder")
    if len({f.name for f in folders}) < len(folders):
        raise CliError("--data folders must have different names (each gets its own folder under --out)")
    grid = _rd_grid(args)
    plans = [(folder, rd.hr_paths(folder)[: args.max_images]) for folder in folders]
    for folder, paths in plans:
        if not paths:
            raise CliError(f"{folder}: no images in it or in {folder / 'HR'}")
    scales = sorted({scale for _, scale in grid})
    models = {_label(name, args): _load(name, args) for name in _comma_list(args.models) if name != rd.BICUBIC}
    notes = rd.model_notes(scales, models)
    for note in notes:
        _note(note)
    out = Path(args.out)
    for folder, paths in plans:
        def progress(done: int, total: int, name: str, seconds: float) -> None:
            print(f"rd {folder.name}: {done}/{total} {name} ({seconds:.1f} s)", file=sys.stderr, flush=True)

        rows = rd.measure(paths, grid, models, data=folder.name, tile=args.tile, on_image=progress)
        mean = rd.mean_curves(rows)
        bd = rd.bd_table(mean)
        target = out / folder.name
        write_table(rows, None, target / "rd.csv")
        write_table(mean, target / "rd_mean.md", target / "rd_mean.csv")
        if bd:
            write_table(bd, target / "bd_rate.md", None)
        else:
            atomic_write_text(target / "bd_rate.md", "No upscaled curve: only scale 1 was measured.\n")
        summary = {
            "data": folder.name, "folder": str(folder), "images": len(paths), "border": max(scales),
            "qualities": {f"{codec} x{scale}": [rd.quality_label(q) for q in qualities]
                          for (codec, scale), qualities in grid.items()},
            "models": {name: getattr(model.info, "name", name) for name, model in models.items()},
            "device": str(resolve_device(args.device)), "precision": args.precision, "notes": notes,
            "rows": rd.json_rows(rows), "mean": rd.json_rows(mean), "bd_rate": rd.json_rows(bd),
        }
        atomic_write_text(target / "rd.json", json.dumps(summary, indent=2) + "\n")
        plot_rate_distortion(mean, target / f"rd_{folder.name}.png",
                             title=f"{folder.name} ({len(paths)} images): store small, upscale later")
        for row in bd:
            print(_rd_line(row), flush=True)
        print(f"wrote rd.csv, rd.json, rd_mean.md, rd_mean.csv, bd_rate.md and rd_{folder.name}.png in {target}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- train
def _config_overrides(args: argparse.Namespace) -> list[str]:
    """--set values, plus the GAN flags as the config keys they stand for."""
    overrides = list(args.set or [])
    if args.vgg_weights:
        overrides.append(f"gan.vgg_weights={json.dumps(args.vgg_weights)}")
    if args.content_loss:
        overrides.append(f"gan.content_loss={json.dumps(args.content_loss)}")
    return overrides


def _load_config(args: argparse.Namespace):
    from superres.config import load_config

    if not Path(args.config).is_file():
        raise CliError(f"{args.config}: no such config file")
    return load_config(args.config, _config_overrides(args))


def cmd_train(args: argparse.Namespace) -> int:
    from superres.distributed import backend_for, session
    from superres.runfolder import run_config
    from superres.runtime import resolve_device

    if args.config is None:
        if not (args.resume and args.run_dir):
            raise CliError("give --config, or --resume with --run-dir to continue a run with its saved config")
        config = run_config(args.run_dir, _config_overrides(args))
    else:
        config = _load_config(args)
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    backend = backend_for(resolve_device(config.train.device))
    with session(backend) as world:  # one process, or torchrun's job of several
        return _train(config, run_dir, args, world, backend)


def _train(config, run_dir: Path, args: argparse.Namespace, world, backend: str) -> int:
    from tqdm import tqdm

    from superres.losses import MissingWeightsError
    from superres.train import TrainingError, train

    batch = config.data.batch_size
    if world.size > 1 and world.is_main:
        print(f"training on {world.size} ranks ({backend}): {batch} patches per rank, global batch "
              f"{batch * world.size}, lr {config.train.lr:g} as configured; rank 0 validates, logs and checkpoints",
              file=sys.stderr)
    bar = tqdm(total=config.train.steps, desc=config.name, unit="step", dynamic_ncols=True,
               disable=args.quiet or not world.is_main)

    def progress(step: int, total: int, numbers: dict[str, float]) -> None:
        bar.n = step
        shown = {k.split("/")[-1] if k == "train/loss" else k: v for k, v in numbers.items()
                 if not k.startswith(("speed", "batch"))}
        bar.set_postfix({k: f"{v:.4g}" for k, v in list(shown.items())[:5]}, refresh=False)
        bar.update(0)

    try:
        result = train(config, run_dir, resume=args.resume, progress=progress, world=world)
    except (TrainingError, MissingWeightsError) as error:
        bar.close()
        raise CliError(str(error).splitlines()[0]) from None
    bar.close()
    if not world.is_main:
        return EXIT_OK
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    if result.resumed_from is not None:
        print(f"resumed from the checkpoint at step {result.resumed_from}")
    print(f"{result.stopped} at step {result.step} after {result.seconds / 60:.1f} min; {metrics}")
    if result.speed:
        units = {"speed/steps_per_s": "steps/s", "speed/hr_mpx_per_s": "HR Mpx/s", "speed/tflop_per_s": "TFLOP/s"}
        print("speed of the last log window: " + ", ".join(f"{result.speed[k]:.3g} {u}" for k, u in units.items()
                                                            if k in result.speed))  # fmt: skip
    print(f"run folder: {run_dir} (best.safetensors, last.safetensors, log.csv, curves.png)")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- curves
def cmd_curves(args: argparse.Namespace) -> int:
    from superres.report import plot_learning_curves

    for run in args.runs:
        if not (Path(run) / "log.csv").is_file():
            raise CliError(f"{run}: no log.csv in this folder (is it a run folder?)")
    keys = args.keys.split(",") if args.keys else None
    out = plot_learning_curves([Path(r) for r in args.runs], args.output, keys=keys, x=args.x)
    print(f"wrote {out}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- tune
def cmd_tune(args: argparse.Namespace) -> int:
    import torch

    from superres.losses import MissingWeightsError, resolve_content_loss
    from superres.runtime import resolve_device
    from superres.train import TrainingError
    from superres.tune import format_markdown, run_sweep, write_csv

    config = _load_config(args)
    if config.mode != "gan":
        raise CliError(f"{args.config}: the sweep needs a GAN config (mode = \"gan\")")
    device = resolve_device(config.train.device)
    batch = config.data.batch_size
    started = time.perf_counter()

    def progress(setting, step: int, logs: dict[str, float]) -> None:
        if step % max(args.steps // 4, 1) == 0:
            print(f"  {setting.factor:<14} lr {setting.lr:g} hidden {setting.hidden_layers} {setting.activation:<10} "
                  f"step {step:>5}/{args.steps}  g/total {logs.get('g/total', float('nan')):.4g}", file=sys.stderr)

    try:
        rows = run_sweep(config, steps=args.steps, window=args.window, progress=progress)
    except (MissingWeightsError, TrainingError) as error:
        raise CliError(str(error).splitlines()[0]) from None
    content_loss = resolve_content_loss(config.gan.content_loss, config.gan.vgg_weights)
    table = format_markdown(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"GAN sweep: {args.steps} steps per setting, batch {batch}, {config.data.patch_size} px, content loss "
        f"{content_loss}, adversarial loss {config.gan.adv_loss}, scores = moving averages over the last "
        f"{args.window} steps; {(time.perf_counter() - started) / 60:.1f} min on {device.type}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "") + "\n\n"
    )
    atomic_write_text(out / "sweep.md", header + table)
    write_csv(rows, out / "sweep.csv")
    print(header + table)
    print(f"wrote {out / 'sweep.md'} and {out / 'sweep.csv'}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- compare
def _parse_crop(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise CliError(f"--crop wants x,y,w,h in output pixels, got {text!r}") from None
    return x, y, w, h


def _matching_hr(lq_path: Path, hr_dir: Path, scale: int) -> Path | None:
    from superres.data import match_pairs
    from superres.imageio import list_images

    pairs = match_pairs([lq_path], list_images(hr_dir, recursive=False), scale)
    return next((pair.gt_path for pair in pairs if pair.lq_path == lq_path), None)


def cmd_compare(args: argparse.Namespace) -> int:
    from superres.evaluate import score_image
    from superres.imageio import is_image_path, list_images, read_picture
    from superres.inference import upscale
    from superres.models.classical import for_condition
    from superres.report import Panel, comparison_figure, save_figure

    source = Path(args.input)
    if source.is_dir():
        inputs, out_dir = list_images(source, recursive=False), Path(args.output)
        if is_image_path(out_dir):
            raise CliError(f"{out_dir}: a folder input needs an output folder, one figure per image")
    elif source.is_file():
        inputs, out_dir = [source], None
    else:
        raise CliError(f"{source}: no such file or folder")
    hr = Path(args.hr) if args.hr else None
    if hr is not None and not hr.exists():
        raise CliError(f"{hr}: no such file or folder")
    if hr is not None and args.degradation:
        raise CliError("--degradation makes the LR from INPUT, which is then the ground truth: leave out --hr")
    names = _comma_list(args.models)
    models = [(name, _load(name, args)) for name in names]
    scales = {model.scale for _, model in models}
    if len(scales) > 1:
        raise CliError(f"--models: one figure compares models of one scale, got x{', x'.join(map(str, sorted(scales)))}")
    scale = scales.pop()
    for lq_path in inputs:
        lq = read_picture(lq_path).pixels
        gt = None
        if args.degradation:
            from superres.data.conditions import condition_lq

            gt = lq
            lq = condition_lq(gt.expand(3, -1, -1), args.degradation, scale)
        hr_path = (_matching_hr(lq_path, hr, scale) if hr.is_dir() else hr) if hr else None
        if hr_path is not None:
            gt = read_picture(hr_path).pixels
        lq = lq.expand(3, -1, -1)
        panels = []
        for name, model in models:
            sr = upscale(for_condition(model, args.degradation) if args.degradation else model, lq, tile=args.tile)
            label = {"bicubic": "bicubic (upscaled input)", "input": "input (degraded)"}.get(name, model.info.name)
            if gt is not None:
                gt = gt[:, : sr.shape[-2], : sr.shape[-1]]
                scores = score_image(sr, gt, scale=model.scale)
                panels.append(Panel(label, sr, psnr=scores["psnr_y"], ssim=scores["ssim_y"]))
            else:
                panels.append(Panel(label, sr))
        crop = _parse_crop(args.crop) if args.crop else None
        if gt is not None:
            if crop is None:  # where the models differ most, chosen before the HR joins the panels
                from superres.report import auto_crop

                size = args.crop_size or max(48, min(96, min(gt.shape[-2:]) // 8))
                crop = auto_crop([p.image for p in panels], size)
            panels.append(Panel("HR (ground truth)", gt.expand(3, -1, -1) if gt.shape[0] == 1 else gt))
        source_name = f"{lq_path.name} ({args.degradation} LR)" if args.degradation else lq_path.name
        title = f"{source_name}: x{scale}" + (" (PSNR / SSIM on Y against the HR)" if gt is not None else "")
        figure = comparison_figure(panels, crop=crop, title=title)
        target = out_dir / f"{lq_path.stem}_compare.png" if out_dir else Path(args.output)
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
        save_figure(figure, target)
        print(f"wrote {target}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise CliError(f"ONNX export needs {' and '.join(missing)}: pip install \"superres[onnx]\"")
    from superres.export import check_onnx, export_onnx
    from superres.weights import load_model

    model = load_model(args.model)
    path = export_onnx(model, args.onnx, opset=args.opset)
    print(f"{path}: {model.info.name} (x{model.scale}); input 'lq' float32 NCHW RGB in [0, 1], any batch and size")
    if importlib.util.find_spec("onnxruntime") is not None:
        print(f"checked with ONNX Runtime: largest difference from PyTorch {check_onnx(model, path):.2e}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- serve
def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int):
    """A bound socket for uvicorn: a port in use is one error line, and --port 0 gets a free port to print."""
    import socket

    bare = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bare, port))
    except OSError as error:
        sock.close()
        raise CliError(f"cannot listen on {host} port {port} ({error.strerror or error})") from None
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # here, not at the top: the other commands need neither
        import uvicorn

        from superres.serve import ServeSettings, create_app
        from superres.serve.options import LOOPBACK_HOSTS, model_file_choices
    except ImportError as error:
        if error.name not in ("fastapi", "uvicorn", "starlette"):
            raise
        raise CliError(f'the browser UI needs fastapi and uvicorn ({error.name} is not installed): '
                       f'pip install "superres[serve]"') from None
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 to 65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0 or args.keep_minutes <= 0:
        raise CliError("--max-upload-mb, --max-pixels and --keep-minutes must be positive")
    model_files = []
    if args.models_dir:
        if not Path(args.models_dir).is_dir():
            raise CliError(f"{args.models_dir}: no such folder")
        model_files, problems = model_file_choices(Path(args.models_dir))
        for problem in problems:
            print(f"superres: warning: left out of the menu: {problem}", file=sys.stderr)
    loopback = _is_loopback(args.host)
    bare = args.host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 1e6), max_pixels=args.max_pixels, ttl_seconds=args.keep_minutes * 60,
        device=args.device, precision=args.precision, allowed_hosts=(*LOOPBACK_HOSTS, shown) if loopback else None,
        model_files=tuple(model_files),
    )
    app = create_app(settings)  # resolves the device: --device cuda without a GPU stops here
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    if not loopback:
        print(f"superres: warning: --host {args.host} is not loopback: anyone who can reach this computer on port "
              f"{port} can upload images and use its processor (there is no login)", file=sys.stderr)
    url_host = "127.0.0.1" if bare in ("0.0.0.0", "::", "") else shown
    print(f"superres serve: open http://{url_host}:{port}/ in a browser (Ctrl-C stops it); limits per image: "
          f"{args.max_upload_mb:g} MB, {args.max_pixels / 1e6:g} MP", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts the app down first, then passes Ctrl-C on
        pass
    finally:
        sock.close()
    print("superres serve: stopped; its temporary files are deleted")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from superres import __version__
    from superres.imageio import DEFAULT_MAX_PIXELS
    from superres.data.conditions import CONDITIONS, conditions_at
    from superres.runtime import PRECISIONS

    conditions = list(CONDITIONS)
    parser = argparse.ArgumentParser(prog="superres", description="x4 super-resolution and deblurring of photos.")
    parser.add_argument("--version", action="version", version=f"superres {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def positive(text: str) -> int:
        value = int(text)
        if value < 8:
            raise argparse.ArgumentTypeError(f"must be at least 8, got {value}")
        return value

    def non_negative(text: str) -> int:
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
        return value

    def at_least_one(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
        return value

    def precision_option(p: argparse.ArgumentParser, default: str = "auto", per_picture: bool = False) -> None:
        p.add_argument("--precision", default=default, choices=PRECISIONS,
                       help="auto: bf16 where the GPU or CPU runs it natively, else fp16 (GPU) or fp32"
                            + ("; 16-bit pictures in fp32" if per_picture else "") + f" (default: {default})")

    def runtime_options(p: argparse.ArgumentParser, tile: int | None = None, precision: str = "auto",
                        per_picture: bool = False) -> None:
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)")
        precision_option(p, precision, per_picture)
        p.add_argument("--threads", type=at_least_one, help="CPU threads (default: PyTorch's choice, one per core)")
        p.add_argument("--tile", type=positive, default=tile,
                       help=f"tile size in input pixels, bounds memory (default: {tile or 'whole image'})")
        p.add_argument("--ensemble", action="store_true", help="average the outputs for the 8 flips and rotations "
                       "of the input (x8 self-ensemble, named MODEL+x8): a little more fidelity for 8 times the time")

    for command, what in (("upscale", "upscale images, folders of images, or videos"),
                          ("restore", "deblur, denoise and remove JPEG blocks of damaged photos at the same size "
                                      "with an x1 model: images, folders of images, or videos")):
        p = commands.add_parser(command, help=what)
        p.add_argument("inputs", nargs="+", help="image or video files, or folders (of images)")
        p.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
        if command == "upscale":
            p.add_argument("--model", default="rescnn", help="shipped model name, weights path (ours, or another "
                           "project's model file that spandrel knows: ESRGAN, Real-ESRGAN, SwinIR, ...), or bicubic "
                           "(default: rescnn)")
        else:
            p.add_argument("--model", default="rescnn-x1-general", help="an x1 model: shipped name or weights "
                           "path (ours, or another project's that spandrel knows) (default: rescnn-x1-general)")
        p.add_argument("--scale", type=int, help="if given, must match the model's scale")
        p.add_argument("--outscale", type=float, metavar="F", help="output size = input size x F: the model's "
                       "scale, then a bicubic resize (default: the model's)")
        p.add_argument("--overlap", type=non_negative, default=32, help="tile overlap in input pixels (default: 32: "
                       "enough for the shipped models to tile seamlessly)")
        p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger inputs")
        p.add_argument("--skip-existing", action="store_true", help="leave outputs that already exist")
        p.add_argument("--batch", type=at_least_one, help="tiles per model call (default: 4 on a GPU, 1 on the CPU)")
        runtime_options(p, tile=512, per_picture=True)
        p.set_defaults(run=cmd_upscale)

    p = commands.add_parser("evaluate", help="PSNR/SSIM of a model on a test folder (HR/ and LR_*/X4/, or HR images)")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="folder with HR/ and optionally LR_bicubic/X4/ or LR_unknown/X4/, "
                   "or a flat folder of HR images (every LR made by --degradation)")
    p.add_argument("--degradation", choices=conditions,
                   help="test condition: the LR files of the folder where it has them, else made from the HR "
                        f"(default: bicubic; x1 models need one of {', '.join(conditions_at(1))})")
    p.add_argument("--json", help="also write the results as JSON to this file")
    runtime_options(p, precision="fp32")  # measurements: the reference precision, the same on every machine
    p.set_defaults(run=cmd_evaluate)

    p = commands.add_parser("models", help="list architectures and shipped weights, or inspect a weights file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--inspect", metavar="FILE", help="what a weights file holds: a superres model, or which "
                   "architecture, scale and precisions spandrel finds in another project's file")
    p.set_defaults(run=cmd_models)

    p = commands.add_parser("benchmark", help="PSNR/SSIM/sharpness table of several models on several test folders")
    p.add_argument("--models", required=True, help="comma-separated names or paths, e.g. bicubic,cnn,rescnn,gan")
    p.add_argument("--data", nargs="+", required=True,
                   help="test folders (HR/ and LR_*/X4/, or flat folders of HR images)")
    p.add_argument("--degradations", "--degradation", default="auto", metavar="LIST",
                   help=f"comma-separated test conditions ({', '.join(conditions)}), all, or auto: div2k-unknown "
                        f"where the folder has LR_unknown/, else bicubic (default: auto)")
    p.add_argument("--out", required=True, help="folder for benchmark.md, benchmark.csv and benchmark.json")
    runtime_options(p, precision="fp32")  # measurements: the reference precision, the same on every machine
    p.set_defaults(run=cmd_benchmark)

    p = commands.add_parser("rd", help="rate-distortion: downscale + codec + upscaling against the codec alone")
    p.add_argument("--data", nargs="+", required=True,
                   help="folders of ground-truth images: flat (Kodak24) or with HR/ (the benchmark layout)")
    p.add_argument("--codecs", default="jpeg,webp,avif",
                   help="comma-separated: jpeg, webp, avif (where Pillow has it), png (default: jpeg,webp,avif)")
    p.add_argument("--scales", default="1,2,4", help="comma-separated, of 1, 2 and 4 (default: 1,2,4)")
    p.add_argument("--models", default="bicubic,rescnn-x4-bicubic",
                   help="comma-separated names or paths; each upscales at its own scale, bicubic at every scale "
                        "(default: bicubic,rescnn-x4-bicubic)")
    p.add_argument("--qualities", action="append", metavar="CODEC[:SCALE]=Q,Q,...",
                   help="replace a codec's quality grid, at all scales or one (Q 0 to 100, or lossless for webp "
                        "and png); repeatable (default: see superres.rd.DEFAULT_QUALITIES)")
    p.add_argument("--max-images", type=at_least_one, help="only the first N images of each folder")
    p.add_argument("--out", required=True, help="folder: one subfolder per data set with rd.csv, rd.json, "
                   "rd_mean.md, bd_rate.md and rd_DATA.png")
    runtime_options(p, precision="fp32")  # measurements: the reference precision, the same on every machine
    p.set_defaults(run=cmd_rd)

    p = commands.add_parser("compare", help="side-by-side figure of models' outputs with zoomed crops")
    p.add_argument("input", help="an LR image, or a folder of them (one figure each)")
    p.add_argument("--models", default="bicubic,cnn,rescnn,gan", help="comma-separated names or paths")
    p.add_argument("--hr", help="the ground-truth image (or folder, matched by name; NAMEx4 matches NAME)")
    p.add_argument("--crop", help="zoomed region x,y,w,h in output pixels (default: where the models differ most)")
    p.add_argument("--crop-size", type=int, help="side of the automatic crop in output pixels")
    p.add_argument("--degradation", choices=conditions,
                   help="treat INPUT as the ground truth: make its LR by this test condition and show it as HR")
    p.add_argument("-o", "--output", required=True, help="output PNG (a folder for folder input)")
    runtime_options(p)
    p.set_defaults(run=cmd_compare)

    p = commands.add_parser("export", help="write a model as ONNX with any input size, for other runtimes")
    p.add_argument("--model", default="rescnn", help="shipped model name or weights path (default: rescnn)")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.set_defaults(run=cmd_export)

    p = commands.add_parser("tune", help="the GAN sweep: lr, discriminator hidden layers, activation")
    p.add_argument("--config", default="configs/gan_x4_div2k_unknown.toml", help="a GAN config (data, generator, D)")
    p.add_argument("--steps", type=int, default=500, help="GAN steps per setting (default: 500)")
    p.add_argument("--window", type=int, default=250, help="moving-average window of the scores (default: 250)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--vgg-weights", help="VGG19 ImageNet weights file for the vgg54 content loss")
    p.add_argument("--content-loss", choices=CONTENT_LOSSES, help="GAN content loss (default: the config's)")
    p.add_argument("--out", required=True, help="folder for sweep.md and sweep.csv")
    p.set_defaults(run=cmd_tune)

    p = commands.add_parser("train", help="train a model from a TOML config (supervised or GAN)")
    p.add_argument("--config", help="a TOML file, e.g. configs/rescnn_x4_div2k_unknown.toml (optional with --resume)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.steps=500")
    p.add_argument("--run-dir", help="run folder (default: runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last good checkpoint")
    p.add_argument("--vgg-weights", help="VGG19 ImageNet weights file for the vgg54 content loss")
    p.add_argument("--content-loss", choices=CONTENT_LOSSES, help="GAN content loss (default: the config's; auto "
                   "= vgg54 with a VGG19 file, else disc-features)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("curves", help="plot learning curves of one or more run folders")
    p.add_argument("runs", nargs="+", help="run folders (each with log.csv)")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--keys", help="comma-separated log keys (default: losses and val/psnr)")
    p.add_argument("--x", choices=["step", "minutes"], default="step",
                   help="the horizontal axis: steps, or minutes of wall time (default: step)")
    p.set_defaults(run=cmd_curves)

    p = commands.add_parser("serve", help="a browser UI on this computer: upload, upscale, compare, download")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this computer only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860; 0 picks a free one)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="refuse larger files (default: 25 MB)")
    p.add_argument("--max-pixels", type=int, default=4_000_000,
                   help="refuse inputs with more pixels (default: 4000000; the output has 16 times as many)")
    p.add_argument("--keep-minutes", type=float, default=30.0,
                   help="delete results not looked at for this long (default: 30); all are deleted on exit")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)")
    p.add_argument("--models-dir", metavar="DIR", help="also offer the weights files in this folder: superres's own "
                   "or other projects' that spandrel knows (ESRGAN, Real-ESRGAN, SwinIR, ...)")
    precision_option(p, per_picture=True)
    p.set_defaults(run=cmd_serve)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that nothing written later (Python's own flush at exit) meets the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file (tests capture it)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command. A reader that stops early (`superres models --json | head -5`) ends it quietly with exit
    code 141, as the shell reports a Unix tool that the closed pipe stopped (128 + SIGPIPE)."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, so a closed pipe shows now rather than in Python's flush at exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from superres.distributed import env_world
    from superres.imageio import ImageFileError
    from superres.weights import WeightsError

    try:
        return args.run(args)
    except (CliError, ImageFileError, WeightsError, ValueError, RuntimeError) as error:
        if os.environ.get("SUPERRES_DEBUG"):
            raise
        rank = env_world().rank  # under torchrun: every rank meets a CliError alike, and rank 0 says it
        if rank == 0 or not isinstance(error, CliError):
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            _error(f"rank {rank}: {message}" if rank else message)
        return EXIT_BAD_INPUT
    except MemoryError:
        if os.environ.get("SUPERRES_DEBUG"):
            raise
        _error("out of memory (a smaller --tile, or --max-pixels to refuse huge images, may help)")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted; finished outputs are complete, none is half-written")
        return EXIT_INTERRUPTED
