#!/usr/bin/env bash
# Quality per minute (issue 15): rescnn fine-tuned from the shipped rescnn-x4-bicubic on the bicubic track with
# today's settings (batch 16 of 96 px patches, batches drawn in the loop) and the fast ones (batch 32 of 128 px,
# batches drawn ahead in a thread), 20 minutes each (train.max_minutes), side by side on one CPU core each so both
# see the same machine; bf16 where the CPU has it, fused Adam in both (it is the trainer's only Adam now).
# Then their Kodak24 curves (12 centre crops of 256 px) in one figure. About 22 minutes on 2 cores.
#   bash docs/training/quality-per-minute/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PYTHONPATH=src OMP_NUM_THREADS=1
SR="python3 -m superres"
OUT=docs/training/quality-per-minute
COMMON=(--config configs/rescnn_x4_bicubic.toml --quiet --set 'model.init_weights="rescnn-x4-bicubic"'
        --set train.max_minutes=20 --set train.val_max_images=12 --set train.val_crop=256)
rm -rf runs/qpm-today runs/qpm-fast
$SR train "${COMMON[@]}" --run-dir runs/qpm-today --set name='"today"' --set data.prefetch=0 \
  --set train.val_every=100 --set train.checkpoint_every=100 &
$SR train "${COMMON[@]}" --run-dir runs/qpm-fast --set name='"fast"' --set data.batch_size=32 \
  --set data.patch_size=128 --set data.prefetch=2 --set train.val_every=28 --set train.checkpoint_every=28 &
wait
for run in today fast; do cp runs/qpm-$run/log.csv $OUT/log_$run.csv; done
$SR curves runs/qpm-today runs/qpm-fast --x minutes --keys train/loss,val/psnr \
  -o docs/figures/curves_quality_per_minute.png
# Where both start: the shipped weights on the same validation images, written beside the logs.
python3 - <<'PY' | tee $OUT/start.txt
from superres.runfolder import run_config
from superres.train import Validation, load_val_set
from superres.weights import load_model

config = run_config("runs/qpm-today")
numbers, _ = Validation(load_val_set(config), scale=config.data.scale)(load_model("rescnn-x4-bicubic"))
print(f"rescnn-x4-bicubic at the start: val/psnr {numbers['val/psnr']:.3f}, val/ssim {numbers['val/ssim']:.4f}")
PY
