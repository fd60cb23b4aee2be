#!/usr/bin/env bash
# Equal wall time, side by side: RepAttn and ResCNN from scratch on the bicubic track with the one recipe of
# configs/repattn_x4_bicubic.toml (L1, Adam 2e-4, batch 16, 96 px patches), each on one CPU core for 25 minutes,
# at the same time, so both see the same machine. Then their Kodak24 curves in one figure and their Set5/Set14/B100
# scores. About 30 minutes on 2 cores.
#   bash docs/training/equal-time/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PYTHONPATH=src OMP_NUM_THREADS=1
SR="python3 -m superres"
OUT=docs/training/equal-time
$SR train --config configs/repattn_x4_bicubic.toml --run-dir runs/equal-time-repattn --quiet &
$SR train --config configs/repattn_x4_bicubic.toml --run-dir runs/equal-time-rescnn --quiet \
  --set name='"rescnn-x4-bicubic-equal-time"' --set model.arch='"rescnn"' \
  --set 'model.args={scale = 4, in_channels = 3, channels = 64, num_blocks = 16}' --set train.val_every=40 \
  --set train.checkpoint_every=40 &
wait
for run in repattn rescnn; do cp runs/equal-time-$run/log.csv $OUT/log_$run.csv; done
$SR curves runs/equal-time-repattn runs/equal-time-rescnn --x minutes --keys train/loss,val/psnr -o docs/figures/curves_equal_time.png
export OMP_NUM_THREADS=2
$SR benchmark --models runs/equal-time-repattn/last.safetensors,runs/equal-time-rescnn/last.safetensors \
  --data ../shared/data/benchmarks/set5 ../shared/data/benchmarks/set14 ../shared/data/benchmarks/b100 \
  --out $OUT/benchmark
