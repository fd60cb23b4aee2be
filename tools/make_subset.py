"""A compact copy of the training data for a GPU machine: the working tree and it must travel in 64 MiB.

    python3 tools/make_subset.py                    # .subset/train/<folder>/..., .subset/val/ (4 Kodak24 images)
    python3 tools/make_subset.py --budget-mib 20    # fewer photos, when the tree has grown (git ls-files | du)

Whole training photos (the files as they are, no re-encoding: JPEG would teach the networks its artifacts) are taken
folder by folder from ../shared/data/train in the order of `--folders`, each in name order, until the next one
would pass the budget (then the next folder); validation images come from Kodak24 (../shared/data/val), never
from the benchmark sets.
Prints what it copied. The folder is git-ignored; name it in the device tool's `carry`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MIB = 2**20
IMAGES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".subset"))
    parser.add_argument("--budget-mib", type=float, default=28.0, help="training and validation files together "
                        "(the tracked tree is 30 MiB with the weights in float16)")
    parser.add_argument("--folders", nargs="+", default=["t91", "div2k", "bsds400", "wiki49"])
    parser.add_argument("--val-images", type=int, default=4)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    budget = int(args.budget_mib * MIB)
    val = sorted((DATA / "val" / "kodak24").glob("*.png"))[: args.val_images]
    plan = [(path, args.out / "val" / path.name) for path in val]
    used = sum(path.stat().st_size for path, _ in plan)
    for folder in args.folders:
        for path in sorted(p for p in (DATA / "train" / folder).rglob("*") if p.suffix.lower() in IMAGES):
            if used + path.stat().st_size > budget:
                break
            plan.append((path, args.out / "train" / folder / path.relative_to(DATA / "train" / folder)))
            used += path.stat().st_size
    for source, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    counts = {}
    for _, target in plan:
        counts[target.parent.name] = counts.get(target.parent.name, 0) + 1
    print(f"{args.out}: {used / MIB:.1f} MiB; " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
