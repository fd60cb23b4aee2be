"""Store weights files in float16 (half the bytes) where that changes nothing measurable. Each file is scored
before and after on the first images of a validation folder (Kodak24; never the benchmark sets) under the test
conditions of its degradation, and rewritten in place, metadata unchanged, only if no Y PSNR moves by more than
--tolerance dB. One JSON line per file:

    PYTHONPATH=src python tools/store_half.py src/superres/pretrained/*.safetensors
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from superres.data.conditions import own_conditions
from superres.evaluate import score_image, test_images
from superres.files import atomic_write
from superres.inference import upscale
from superres.weights import load_model, stored

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "val" / "kodak24"


def halved(path: Path) -> bytes:
    """The file's bytes with every floating-point tensor in float16 and the same metadata."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    return save(stored(tensors, torch.float16), metadata=metadata)


def scores(model: torch.nn.Module, images: dict[str, list]) -> tuple[dict, list[torch.Tensor]]:
    """Mean Y PSNR per condition over `images` ({condition: [(name, lq, gt), ...]}), and the outputs."""
    means, outputs = {}, []
    with torch.inference_mode():
        for condition, triples in images.items():
            values = []
            for _, lq, gt in triples:
                sr = upscale(model, lq)
                outputs.append(sr)
                values.append(score_image(sr, gt[:, : sr.shape[-2], : sr.shape[-1]], scale=model.scale)["psnr_y"])
            means[condition] = sum(values) / len(values)
    return means, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=DATA, help="validation HR images (a flat folder or HR/)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest Y PSNR change allowed (dB)")
    parser.add_argument("--dry-run", action="store_true", help="measure only; rewrite nothing")
    args = parser.parse_args()
    for path in args.files:
        full = load_model(path)
        names = own_conditions(full.info.degradation, full.scale)
        images = {c: test_images(args.data, degradation=c, scale=full.scale)[: args.images] for c in names}
        before, out_before = scores(full, images)
        payload = halved(path)
        with tempfile.TemporaryDirectory() as tmp:
            half_path = Path(tmp) / path.name
            half_path.write_bytes(payload)
            after, out_after = scores(load_model(half_path), images)
        change = max(abs(after[c] - before[c]) for c in names)
        largest = max((a - b).abs().max().item() for a, b in zip(out_after, out_before))
        kept = change <= args.tolerance and not args.dry_run
        if kept:
            atomic_write(path, lambda file: file.write(payload))
        print(json.dumps({"file": str(path), "psnr_y_fp32": {c: round(v, 4) for c, v in before.items()},
                          "psnr_y_fp16": {c: round(v, 4) for c, v in after.items()}, "largest_psnr_change": change,
                          "largest_pixel_change": largest, "stored_fp16": kept}))


if __name__ == "__main__":
    main()
