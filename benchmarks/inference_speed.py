"""Inference speed, peak memory and numerical fidelity of x4 upscaling on the CPU: every superres model on every
inference path, against OpenCV's dnn_superres peers.

    PYTHONPATH=src python benchmarks/inference_speed.py                # full run, about 10 minutes on 2 cores
    PYTHONPATH=src python benchmarks/inference_speed.py --quick        # tiny input, 1 repeat: a smoke run
    PYTHONPATH=src python benchmarks/inference_speed.py --models rescnn espcn --paths fp32 bf16 --repeats 5

1. Speed: a `--size` px RGB crop of a real photo (Set14 HR; seeded noise when the photo is absent) is upscaled x4
   by each model (shipped weights when the name resolves, else the architecture with random weights: speed does not
   depend on the weights) through `superres.inference.upscale` on each `--paths` entry:
   `fp32` the model as trained; `fast-fp32` batch norm folded and channels_last (`superres.optimize`); `bf16` and
   `fp16` the same in 16 bits (what `--precision auto` picks is in the settings); `onnxruntime` the `superres export`
   graph in ONNX Runtime's CPU provider. The OpenCV peers run through `cv2.dnn_superres`, and `cv2.resize`
   INTER_CUBIC. One warm-up run, then the median of `--repeats`.
2. The conv peak: in the same run, a 3x3 convolution 64->64 and 64->256 channels on a 256x256 map in fp32, bf16
   and fp16 (channels_last), the best GFLOP/s of each precision. Each model row reports its own GFLOP/s (its
   convolutions' multiply-adds x 2 over the median time) and that as a share of the peak of its precision.
3. Memory: every measurement runs in a fresh child process, whose peak resident set (VmHWM, reset after the model
   and input are loaded) is reported, absolute and as the delta over the resident set just before upscaling.
4. Fidelity: every shipped weights file on Set5 and Set14 (official bicubic LR), each path against fp32: the change
   in mean Y-PSNR against HR (protocol of `superres evaluate`) and the share of output pixels (8-bit) more than
   2/255 from fp32's. The bar: within 0.02 dB and at most 0.1% of pixels.
5. Large image: `--large` (2000x1500) made by mirror-tiling the photo, upscaled by rescnn with `--tile` 256 in a
   fresh process (one warm-up on a tile-sized corner, one timed run), whose whole-life peak RSS must stay within
   `--limit-gib` (3 GiB). The same without tiling runs only when the 256 px rescnn measurement, its delta scaled
   by the pixel count, predicts it fits `--untiled-limit-gib`; otherwise it is reported as skipped.

Prints Markdown tables and writes them, with the raw numbers and the machine, to `--out`/inference_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

# torch, cv2 and superres are imported inside functions: a child process that measures an OpenCV peer should not
# carry torch's memory, and the parent imports them only to describe the machine and resolve weight names.

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
SHARED = HERE.parents[1].parent / "shared"
PHOTOS = SHARED / "data" / "benchmarks" / "set14" / "HR"
PEERS = SHARED / "peers" / "opencv_dnn_superres"
SCALE = 4
MIB = 2**20

TORCH_MODELS = ("bicubic", "cnn", "rescnn", "repattn", "gan")
OPENCV_PEERS = {  # name -> (file, algorithm for setModel)
    "espcn": ("ESPCN_x4.pb", "espcn"),
    "fsrcnn": ("FSRCNN_x4.pb", "fsrcnn"),
    "fsrcnn-small": ("FSRCNN-small_x4.pb", "fsrcnn"),
    "lapsrn": ("LapSRN_x4.pb", "lapsrn"),
}
MODELS = (*TORCH_MODELS, *OPENCV_PEERS, "cv2-cubic")
FALLBACK_ARCH = {"bicubic": "bicubic", "cnn": "cnn", "rescnn": "rescnn", "repattn": "repattn"}  # gan: a rescnn
TINY_ARGS = {"cnn": {"channels": 8}, "rescnn": {"channels": 8, "num_blocks": 1},
             "repattn": {"channels": 8, "num_blocks": 1}}
PATHS = ("fp32", "fast-fp32", "bf16", "fp16", "onnxruntime")
PATH_DTYPE = {"fp32": "fp32", "fast-fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "onnxruntime": "fp32"}
FIDELITY_SETS = ("set5", "set14")


# ---------------------------------------------------------------- the child process: one measurement


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def conv_flops(model, height: int, width: int) -> float:
    """2 x the multiply-adds of `model`'s convolutions on a (1, 3, height, width) input (they scale with pixels), as
    run for inference (re-parameterised branches folded)."""
    import torch

    from superres.optimize import fold_batchnorm

    model = fold_batchnorm(model)
    total = 0.0

    def count(module, inputs, output):
        nonlocal total
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]  # in/groups x kh x kw
        total += 2.0 * output.numel() * kernel

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(count) for m in convs]
    with torch.no_grad():
        model(torch.zeros(1, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    return total * height * width / (16 * 16)


def inference_path(model, path: str, tile: int | None = None):
    """A callable (3, H, W) float -> (3, sH, sW) float for `model` on `path`, in tiles of `tile` (torch paths)."""
    import torch

    from superres.inference import upscale
    from superres.optimize import optimize_for_inference

    if path == "fp32":
        return lambda x: upscale(model, x, tile=tile)
    if path == "onnxruntime":
        import onnxruntime

        from superres.export import export_onnx

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        with tempfile.TemporaryDirectory(prefix="superres-onnx.") as folder:  # the session keeps what it loaded
            onnx_file = export_onnx(model, Path(folder) / "model.onnx")
            session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"lq": x[None].numpy()})[0][0])
    precision = "fp32" if path == "fast-fp32" else path
    fast = optimize_for_inference(model, device=torch.device("cpu"), precision=precision)
    return lambda x: upscale(fast, x, tile=tile)


def _torch_upscaler(spec: dict):
    import torch

    from superres.models import build_model, count_parameters
    from superres.weights import WeightsError, load_model

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    model = None
    if spec["args"] is None:  # explicit arguments (tiny models) skip the shipped weights
        try:
            model = load_model(spec["name"])
            weights = "none" if model.info.path is None else f"shipped {model.info.name}"
        except WeightsError:
            pass
    if model is None:
        model = build_model(spec["arch"], **(spec["args"] or {})).eval()
        weights = "none" if spec["arch"] == "bicubic" else "random (no shipped weights)"
    image = torch.from_numpy(np.load(spec["input"])).permute(2, 0, 1).float().div_(255)  # (3, H, W)
    info = {"weights": weights, "params": count_parameters(model), "torch_threads": torch.get_num_threads(),
            "flops": conv_flops(model, *image.shape[-2:])}
    if spec["tile"] and spec["path"] == "onnxruntime":
        raise ValueError("the onnxruntime path runs whole images only")
    return inference_path(model, spec["path"], spec["tile"]), image, info


def _conv_peak(spec: dict) -> dict:
    """Best GFLOP/s of a 3x3 convolution (64->64 and 64->256 channels, 256x256 map) per precision."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    size, peaks = spec["size"], {}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        best = 0.0
        for out_channels in (64, 256):
            conv = torch.nn.Conv2d(64, out_channels, 3, padding=1).to(dtype=dtype, memory_format=torch.channels_last)
            x = torch.rand(1, 64, size, size).to(dtype=dtype, memory_format=torch.channels_last)
            flops = 2.0 * out_channels * size * size * 64 * 9
            with torch.no_grad():
                for _ in range(2):
                    conv(x)
                for _ in range(spec["repeats"]):
                    start = time.perf_counter()
                    conv(x)
                    best = max(best, flops / (time.perf_counter() - start) / 1e9)
        peaks[dtype_name] = best
    return {"gflops": peaks, "torch_threads": torch.get_num_threads()}


def _opencv_upscaler(spec: dict):
    import cv2

    if spec["threads"]:
        cv2.setNumThreads(spec["threads"])
    bgr = np.ascontiguousarray(np.load(spec["input"])[..., ::-1])  # (H, W, 3) uint8 BGR
    info = {"cv2_threads": cv2.getNumThreads()}
    if spec["name"] == "cv2-cubic":
        size = (bgr.shape[1] * SCALE, bgr.shape[0] * SCALE)
        return (lambda x: cv2.resize(x, size, interpolation=cv2.INTER_CUBIC)), bgr, {**info, "weights": "none"}
    model = cv2.dnn_superres.DnnSuperResImpl_create()
    model.readModel(spec["file"])
    model.setModel(spec["algo"], SCALE)
    return model.upsample, bgr, {**info, "weights": f"OpenCV {Path(spec['file']).name}"}


def _shape_hw(out) -> list[int]:
    return list(out.shape[-2:]) if out.ndim == 3 and out.shape[0] == 3 else list(out.shape[:2])


def measure(spec: dict) -> dict:
    """Time `spec`'s model in this process: warm-ups, then `repeats` timed runs; peak RSS over all of them."""
    if spec["kind"] == "peak":
        return _conv_peak(spec)
    make = _opencv_upscaler if spec["kind"] == "opencv" else _torch_upscaler
    run, image, info = make(spec)
    import gc

    gc.collect()
    rss_before = _status_kib("VmRSS")
    life_peak = _status_kib("VmHWM")
    resettable = _reset_peak()
    crop = spec.get("warmup_crop")  # warm up on a corner of a large input, not the whole of it
    warm = image if not crop else image[..., :crop, :crop] if spec["kind"] == "torch" else image[:crop, :crop]
    for _ in range(spec["warmup"]):
        out = run(warm)
        del out
    seconds, cpu_start = [], time.process_time()
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        out = run(image)
        seconds.append(time.perf_counter() - start)
        shape = _shape_hw(out)
        del out
    peak = _status_kib("VmHWM")
    return {
        **info,
        "output": shape,
        "seconds": seconds,
        "cpu_cores_used": (time.process_time() - cpu_start) / sum(seconds),  # below the threads: contention
        "baseline_rss_mib": rss_before / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_delta_mib": (peak - rss_before) / 1024,
        "process_peak_rss_mib": max(peak, life_peak) / 1024,
        "peak_reset": resettable,
    }


def _worker(spec_json: str) -> None:
    print("RESULT " + json.dumps(measure(json.loads(spec_json))), flush=True)


# ---------------------------------------------------------------- the parent: inputs, children, tables


def photo_source(folder: Path) -> Path | None:
    """The largest photo in `folder` (most pixels, then name), or None when there is none."""
    from superres.imageio import list_images, read_rgb_u8

    if not folder.is_dir():
        return None
    pixels = {p: read_rgb_u8(p).shape[0] * read_rgb_u8(p).shape[1] for p in list_images(folder)}
    return max(pixels, key=lambda p: (pixels[p], p.name), default=None)


def centre_crop(photo: np.ndarray, size: int) -> np.ndarray:
    """A `size` x `size` crop from the centre, mirror-padding first where the photo is smaller."""
    photo = mirror_tile(photo, max(size, photo.shape[0]), max(size, photo.shape[1]))
    y, x = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    return np.ascontiguousarray(photo[y : y + size, x : x + size])


def mirror_tile(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width, 3): the photo repeated by mirror reflection, so there are no hard seams."""
    pad = ((0, max(height - photo.shape[0], 0)), (0, max(width - photo.shape[1], 0)), (0, 0))
    return np.ascontiguousarray(np.pad(photo, pad, mode="symmetric")[:height, :width])


def child_env() -> dict[str, str]:
    """The environment of a child: it imports superres from wherever this process did."""
    import superres

    package_root = str(Path(superres.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def run_child(spec: dict, timeout: float) -> dict:
    """`measure(spec)` in a fresh Python process; a failure becomes a row with status "failed"."""
    command = [sys.executable, str(HERE), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"exit {done.returncode}: {tail[:300]}"}
    return {"status": "ok", **json.loads(lines[-1][len("RESULT ") :])}


def model_spec(name: str, args: argparse.Namespace) -> dict | str:
    """The child's instructions for `name`, or the reason it is skipped."""
    base = {"name": name, "threads": args.threads, "tile": None, "args": None}
    if name in OPENCV_PEERS:
        file, algo = OPENCV_PEERS[name]
        path = args.peers / file
        if not path.is_file():
            return f"peer model {path} not found"
        return {**base, "kind": "opencv", "file": str(path), "algo": algo}
    if name == "cv2-cubic":
        return {**base, "kind": "opencv"}
    if name == "gan":
        from superres.weights import WeightsError, resolve

        try:
            resolve("gan")
        except WeightsError:
            return "no shipped 'gan' weights; its generator is a rescnn, measured above"
        return {**base, "kind": "torch", "arch": "rescnn"}
    tiny = TINY_ARGS.get(name) if args.tiny_models else None
    return {**base, "kind": "torch", "arch": FALLBACK_ARCH[name], "args": tiny}


def model_paths(spec: dict | str, args: argparse.Namespace) -> list[str]:
    """The inference paths a model is measured on: all asked for a trained network, one for the rest."""
    if isinstance(spec, str):
        return ["-"]
    if spec["kind"] == "opencv":
        return ["opencv"]
    return ["fp32"] if spec["arch"] == "bicubic" else list(args.paths)


def path_skip_reason(path: str) -> str | None:
    import importlib.util

    if path == "onnxruntime" and any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnxscript")):
        return 'onnxruntime or onnxscript is not installed (pip install "superres[onnx]")'
    return None


def speed_row(name: str, spec: dict | str, input_path: Path, size: tuple[int, int], args, path: str = "-") -> dict:
    row = {"model": name, "path": path, "input": list(size)}
    if isinstance(spec, str) or path_skip_reason(path):
        return {**row, "status": "skipped", "reason": spec if isinstance(spec, str) else path_skip_reason(path)}
    spec = {**spec, "path": path}
    spec = {**spec, "input": str(input_path), "warmup": args.warmup, "repeats": args.repeats}
    result = run_child(spec, timeout=args.timeout)
    row.update(result)
    if result["status"] == "ok":
        row["median_s"] = statistics.median(result["seconds"])
        row["mp_per_s"] = row["output"][0] * row["output"][1] / 1e6 / row["median_s"]
    return row


def auto_path() -> str:
    """The benchmark path matching what `superres upscale --precision auto` runs on this CPU."""
    import torch

    from superres.runtime import resolve_precision

    precision = resolve_precision("auto", torch.device("cpu"))
    return "fast-fp32" if precision == "fp32" else precision


def large_rows(speed: list[dict], large_path: Path, size: tuple[int, int], args) -> list[dict]:
    """rescnn on the large image, on the path `superres upscale` takes here (`--precision auto`): tiled (required
    within the limit), then untiled where predicted to fit."""
    spec = model_spec("rescnn", args)
    base = {**spec, "path": auto_path(), "input": str(large_path), "warmup": 1, "warmup_crop": args.tile, "repeats": 1}
    rows = []
    for tile in (args.tile, None):
        row = {"model": "rescnn", "input": list(size), "tile": tile, "limit_gib": args.limit_gib}
        if tile is None:
            skip = untiled_skip_reason(speed, size, args)
            if skip:
                rows.append({**row, "status": "skipped", "reason": skip})
                continue
        row.update(run_child({**base, "tile": tile}, timeout=args.timeout))
        if row["status"] == "ok":
            row["median_s"] = row["seconds"][0]
            row["mp_per_s"] = row["output"][0] * row["output"][1] / 1e6 / row["median_s"]
            row["within_limit"] = row["process_peak_rss_mib"] <= args.limit_gib * 1024
        rows.append(row)
    return rows


def untiled_skip_reason(speed: list[dict], size: tuple[int, int], args) -> str | None:
    """Why untiled rescnn on the large image is not run, from the small measurement scaled by pixel count."""
    small = next((r for r in speed if r["model"] == "rescnn" and r["path"] == auto_path() and r["status"] == "ok"), None)
    if small is None:
        return "no small rescnn measurement to predict its memory from"
    ratio = size[0] * size[1] / (small["input"][0] * small["input"][1])
    predicted_gib = (small["baseline_rss_mib"] + small["peak_delta_mib"] * ratio) / 1024
    if predicted_gib > args.untiled_limit_gib:
        return f"predicted peak {predicted_gib:.1f} GiB > {args.untiled_limit_gib:g} GiB"
    return None


def conv_peak(args: argparse.Namespace) -> dict:
    """The conv peak of this machine, measured in a fresh child like the models."""
    spec = {"kind": "peak", "threads": args.threads, "size": args.peak_size, "repeats": args.repeats + 2}
    return run_child(spec, timeout=args.timeout)


def add_peak_share(speed: list[dict], peak: dict) -> None:
    """Each torch row's GFLOP/s and its share of the conv peak of its precision."""
    for row in speed:
        if row["status"] == "ok" and row.get("flops") and peak["status"] == "ok":
            row["gflops"] = row["flops"] / row["median_s"] / 1e9
            row["peak_share"] = row["gflops"] / peak["gflops"][PATH_DTYPE[row["path"]]]


def fidelity_rows(args: argparse.Namespace) -> list[dict]:
    """Each shipped weights file on each path against fp32 on Set5/Set14, with the LR of the weights' own
    degradation (official bicubic LR, or HR degraded by the DIV2K unknown kernel; for x1 models the HR under the
    `camera` condition): change in mean Y-PSNR, and the share of pixels more than 2/255 from fp32's."""
    from superres.data.conditions import own_conditions
    from superres.evaluate import test_images
    from superres.metrics import psnr
    from superres.weights import catalogue, load_model

    if args.fidelity_sets == ["none"]:
        return [{"status": "skipped", "reason": "--fidelity-sets none"}]
    folders = [args.benchmarks / name for name in args.fidelity_sets if (args.benchmarks / name / "HR").is_dir()]
    if not folders:
        return [{"status": "skipped", "reason": f"none of {', '.join(args.fidelity_sets)} under {args.benchmarks}"}]
    paths = [p for p in args.paths if p != "fp32" and not path_skip_reason(p)]
    rows = []
    for info in catalogue():
        model = load_model(str(info.path))
        degradation = own_conditions(info.degradation, model.scale)[0]
        runners = {"fp32": inference_path(model, "fp32")} | {p: inference_path(model, p) for p in paths}
        scores = {p: {} for p in runners}
        over = {p: dict.fromkeys((f.name for f in folders), 0) for p in runners}
        total = dict.fromkeys((f.name for f in folders), 0)
        for folder in folders:
            images = test_images(folder, degradation=degradation, scale=model.scale)[: 1 if args.quick else None]
            for _, lq, gt in images:
                if args.fidelity_crop:
                    lq = lq[:, : args.fidelity_crop, : args.fidelity_crop]
                outputs = {p: (run(lq) * 255).round() / 255 for p, run in runners.items()}  # 8-bit, as saved
                gt = gt[:, : outputs["fp32"].shape[1], : outputs["fp32"].shape[2]]
                total[folder.name] += outputs["fp32"].numel()
                for p, out in outputs.items():
                    out_y = out.mean(0, keepdim=True) if gt.shape[0] == 1 else out  # a grey HR: grey output
                    scores[p].setdefault(folder.name, []).append(psnr(out_y, gt, crop_border=model.scale, y_channel=True))
                    over[p][folder.name] += int(((out - outputs["fp32"]).abs() > 2.5 / 255).sum())
        reference = {name: sum(v) / len(v) for name, v in scores["fp32"].items()}
        for p in paths:
            delta = {name: sum(v) / len(v) - reference[name] for name, v in scores[p].items()}
            share = {name: over[p][name] / total[name] for name in total}
            rows.append({"status": "ok", "weights": info.name, "degradation": degradation, "path": p,
                         "fp32_psnr_y": reference, "delta_psnr_y": delta, "pixels_over_2": share,
                         "within_bar": all(abs(d) <= 0.02 for d in delta.values()) and max(share.values()) <= 0.001})
    return rows


def cpu_seconds() -> dict[str, float]:
    """Machine-wide busy and steal CPU seconds (/proc/stat), and this process's own with its children's."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:] if Path("/proc/stat").is_file() else []
    ticks = [int(v) / os.sysconf("SC_CLK_TCK") for v in fields] + [0.0] * 8
    own = os.times()
    return {"busy": sum(ticks[i] for i in (0, 1, 2, 5, 6)), "steal": ticks[7], "own": sum(own[:4]),
            "wall": time.monotonic()}


def other_load(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Average cores kept busy by other processes during the run, and steal by the hypervisor."""
    wall = after["wall"] - before["wall"]
    other = (after["busy"] - before["busy"]) - (after["own"] - before["own"])
    steal = after["steal"] - before["steal"]
    return {"other_busy_cores": round(max(other, 0.0) / wall, 2), "steal_cores": round(steal / wall, 2),
            "wall_s": round(wall, 1)}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    import cv2
    import torch

    from superres.runtime import cpu_supports_bf16

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text().split() if Path("/proc/meminfo").is_file() else []
    return {
        "cpu": names[0] if names else platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(int(meminfo[1]) / 2**20, 1) if meminfo[:1] == ["MemTotal:"] else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_supports_bf16(),
        "onnxruntime": _version("onnxruntime"),
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _num(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def markdown(results: dict) -> str:
    m, s, peak = results["machine"], results["settings"], results["conv_peak"]
    peak_text = (", ".join(f"{k} {v:.0f}" for k, v in peak["gflops"].items()) + " GFLOP/s"
                 if peak["status"] == "ok" else f"{peak['status']} ({peak.get('reason')})")
    lines = [
        "# Inference speed (x4, CPU)",
        "",
        f"{results['date']}; {m['cpu']}, {m['usable_cores']} cores (native bf16: {m['native_bf16']}), "
        f"torch {m['torch']} ({m['torch_threads']} threads), OpenCV {m['opencv']} ({m['opencv_threads']} threads), "
        f"ONNX Runtime {m['onnxruntime']}. `--precision auto` picks **{s['auto_precision']}** here.",
        f"Input: {s['image']}; {s['warmup']} warm-up, median of {s['repeats']}. "
        f"Load average before / after: {results['load_before']} / {results['load_after']}; other processes kept "
        f"{results['contention']['other_busy_cores']} cores busy on average (steal "
        f"{results['contention']['steal_cores']}) over the {results['contention']['wall_s']} s run."
        + (f" Note: {results['note']}" if results["note"] else ""),
        f"Conv peak of this CPU, measured in this run (3x3, 64->64/256 channels, {s['peak_size']}^2, channels_last): "
        f"{peak_text}.",
        "",
        "| model | path | weights | input | output | median s | output MP/s | GFLOP/s | % of peak | peak RSS delta MiB | peak RSS MiB |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["speed"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['path']} | {r['status']}: {r['reason']} | | | | | | | | |")
            continue
        share = f"{100 * r['peak_share']:.0f}" if "peak_share" in r else "-"
        lines.append(
            f"| {r['model']} | {r['path']} | {r['weights']} | {r['input'][1]}x{r['input'][0]} "
            f"| {r['output'][1]}x{r['output'][0]} | {_num(r['median_s'], 4)} | {_num(r['mp_per_s'], 2)} "
            f"| {_num(r.get('gflops'), 0)} | {share} | {_num(r['peak_delta_mib'], 0)} | {_num(r['peak_rss_mib'], 0)} |"
        )
    lines += [
        "",
        "Fidelity of each fast path against fp32, shipped weights, on Set5/Set14 LR of each weights' degradation "
        "(8-bit outputs; the bar: |change in mean Y-PSNR| <= 0.02 dB and at most 0.1% of pixels more than 2/255 "
        "away):",
        "",
        "| weights | LR | path | Set5 fp32 PSNR-Y | Set5 change dB | Set5 pixels > 2/255 | Set14 fp32 PSNR-Y "
        "| Set14 change dB | Set14 pixels > 2/255 | within bar |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["fidelity"]:
        if r["status"] != "ok":
            lines.append(f"| {r['status']}: {r['reason']} | | | | | | | | | |")
            continue
        cells = [r["weights"], r["degradation"], r["path"]]
        for name in ("set5", "set14"):
            share = r["pixels_over_2"].get(name)
            cells += [_num(r["fp32_psnr_y"].get(name), 2), _num(r["delta_psnr_y"].get(name), 4),
                      f"{100 * share:.4f}%" if share is not None else "-"]
        lines.append("| " + " | ".join(cells) + f" | {'yes' if r['within_bar'] else 'NO'} |")
    lines += [
        "",
        f"Large image, rescnn on the `auto` path ({s['large_path']}), a fresh process each, warmed up on a tile-sized corner, one timed run; "
        f"limit {s['limit_gib']:g} GiB on the process's peak RSS:",
        "",
        "| run | input | output | seconds | output MP/s | process peak RSS MiB | delta MiB | within limit |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results["large"]:
        run = f"tile {r['tile']}" if r["tile"] else "untiled"
        if r["status"] != "ok":
            lines.append(f"| {run} | {r['input'][1]}x{r['input'][0]} | {r['status']}: {r['reason']} | | | | | |")
            continue
        lines.append(
            f"| {run} | {r['input'][1]}x{r['input'][0]} | {r['output'][1]}x{r['output'][0]} | {_num(r['median_s'], 1)} "
            f"| {_num(r['mp_per_s'], 2)} | {_num(r['process_peak_rss_mib'], 0)} | {_num(r['peak_delta_mib'], 0)} "
            f"| {'yes' if r['within_limit'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="inference paths of torch models")
    parser.add_argument("--peak-size", type=int, default=256, help="side of the conv-peak feature map, px")
    parser.add_argument("--fidelity-sets", nargs="+", default=list(FIDELITY_SETS), help="test sets, or none")
    parser.add_argument("--fidelity-crop", type=int, default=0, help="crop LR images to this side (0: whole)")
    parser.add_argument("--benchmarks", type=Path, default=SHARED / "data" / "benchmarks", help="Set5/Set14 folder")
    parser.add_argument("--size", type=int, default=256, help="side of the square input, px")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--large", default="2000x1500", help="WxH of the large-image test; 'none' skips it")
    parser.add_argument("--tile", type=int, default=256, help="tile of the large-image test, input px")
    parser.add_argument("--limit-gib", type=float, default=3.0, help="peak RSS allowed for the tiled large run")
    parser.add_argument("--untiled-limit-gib", type=float, default=3.0, help="run untiled only if predicted below")
    parser.add_argument("--threads", type=int, default=0, help="torch/OpenCV threads in children (0: defaults)")
    parser.add_argument("--tiny-models", action="store_true", help="cnn/rescnn with 8 channels, 1 block (tests)")
    parser.add_argument("--quick", action="store_true",
                        help="32 px input, 1 repeat, 128x96 large image, tile 32, one 24 px crop per fidelity set")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of photos to crop the input from")
    parser.add_argument("--peers", type=Path, default=PEERS, help="folder of the OpenCV dnn_superres .pb files")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per child process")
    parser.add_argument("--note", default="", help="free text saved with the results (e.g. other load)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.size < 1:
        parser.error("--repeats must be >= 1, --warmup >= 0 and --size >= 1")
    if args.quick:
        args.size, args.repeats, args.large, args.tile = 32, 1, "128x96", 32
        args.peak_size, args.fidelity_crop = 32, 24
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every fast path met the fidelity bar and the tiled large-image run (if asked for)
    stayed within the memory limit, else 1."""
    args = parse_args(argv)
    import torch

    from superres.imageio import read_rgb_u8
    from superres.runtime import resolve_precision

    load_before, cpu_before = [round(x, 2) for x in os.getloadavg()], cpu_seconds()
    source = photo_source(args.photos)
    photo = read_rgb_u8(source) if source else np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    label = f"{source.parent.parent.name}/{source.parent.name}/{source.name}" if source else "seeded noise"
    speed, large = [], []
    with tempfile.TemporaryDirectory(prefix="inference_speed.") as tmp:
        small_path = Path(tmp) / "small.npy"
        np.save(small_path, centre_crop(photo, args.size))
        peak = conv_peak(args)
        print("conv peak: " + (", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak["gflops"].items())
                               if peak["status"] == "ok" else peak["reason"]), flush=True)
        for name in args.models:
            spec = model_spec(name, args)
            for path in model_paths(spec, args):
                row = speed_row(name, spec, small_path, (args.size, args.size), args, path)
                speed.append(row)
                print(f"{name:>13} {path:>11}: " + (f"{row['mp_per_s']:.2f} MP/s, peak +{row['peak_delta_mib']:.0f} MiB"
                      if row["status"] == "ok" else f"{row['status']} ({row['reason']})"), flush=True)
        add_peak_share(speed, peak)
        fidelity = fidelity_rows(args)
        if args.large != "none":
            width, height = (int(v) for v in args.large.lower().split("x"))
            large_path = Path(tmp) / "large.npy"
            np.save(large_path, mirror_tile(photo, height, width))
            large = large_rows(speed, large_path, (height, width), args)
    results = {
        "benchmark": "inference_speed",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "image": f"{args.size}x{args.size} centre crop of {label}; large: {args.large} mirror-tiled from it",
            "scale": SCALE, "size": args.size, "warmup": args.warmup, "repeats": args.repeats,
            "large": args.large, "tile": args.tile, "limit_gib": args.limit_gib,
            "untiled_limit_gib": args.untiled_limit_gib, "threads": args.threads or "default",
            "tiny_models": args.tiny_models, "paths": args.paths, "device": "cpu", "peak_size": args.peak_size,
            "auto_precision": resolve_precision("auto", torch.device("cpu")), "large_path": auto_path(), "fidelity_crop": args.fidelity_crop,
        },
        "conv_peak": peak,
        "fidelity": fidelity,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "contention": other_load(cpu_before, cpu_seconds()),
        "note": args.note,
        "speed": speed,
        "large": large,
    }
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "inference_speed.md").write_text(table)
    print(table)
    tiled = [r for r in large if r["tile"]]
    faithful = all(r["status"] != "ok" or r["within_bar"] for r in fidelity)
    return 0 if faithful and all(r["status"] == "ok" and r["within_limit"] for r in tiled) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2])
    else:
        sys.exit(main())
