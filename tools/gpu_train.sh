#!/usr/bin/env bash
# One training job on a bare GPU machine in under 9 minutes, from the repository and a compact copy of the data.
#
#   python3 tools/make_subset.py                                  # here, once: .subset/ (git-ignored)
#   OUT=$OUT bash tools/gpu_train.sh [--set KEY=VALUE ...]        # there (the device tool: carry [".subset"])
#
# Trains CONFIG (default configs/rescnn_x4_general.toml, from its init_weights) on .subset/train/* for STEPS steps
# of BATCH patches of PATCH px (the learning rate halves at 60% and 85% of the steps), stopping cleanly after
# MINUTES in any case, with bf16 autocast, channels_last, fused Adam, the patch sampler on the GPU with batches drawn
# ahead, and torch.compile (COMPILE=false turns it off). Into $OUT/run it writes a checkpoint and last.safetensors
# every 2 minutes (a job cut off from outside keeps recent weights), best.safetensors at each validation
# (4 Kodak24 images under the config's conditions), log.csv with speed/steps_per_s, speed/hr_mpx_per_s and
# speed/tflop_per_s, and curves.png; it prints the speed of the last log window when done. Extra arguments go to
# `superres train` (e.g. --set 'model.init_weights="rescnn-x4-general"'). The CPU rehearsal is
# tests/test_gpu_train.py (tiny model, a few steps).
set -euo pipefail
set -f  # TOML values hold brackets: no globbing
: "${OUT:?set OUT to the output folder}"
CONFIG=${CONFIG:-configs/rescnn_x4_general.toml}
SUBSET=${SUBSET:-.subset}
STEPS=${STEPS:-12000}
BATCH=${BATCH:-64}
PATCH=${PATCH:-128}
MINUTES=${MINUTES:-8}
COMPILE=${COMPILE:-true}
ROOTS=$(python3 -c 'import json, pathlib, sys
print(json.dumps(sorted(str(p) for p in pathlib.Path(sys.argv[1], "train").iterdir() if p.is_dir())))' "$SUBSET")
mkdir -p "$OUT"
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} python3 -m superres train --config "$CONFIG" --run-dir "$OUT/run" --quiet \
  --set "data.train_roots=$ROOTS" --set data.batch_size="$BATCH" --set data.patch_size="$PATCH" \
  --set data.device_resident=true --set data.prefetch=2 \
  --set train.steps="$STEPS" --set "train.lr_milestones=[$((STEPS * 6 / 10)), $((STEPS * 85 / 100))]" \
  --set train.max_minutes="$MINUTES" --set train.checkpoint_minutes=2 --set train.checkpoint_every="$STEPS" \
  --set train.precision='"auto"' --set train.channels_last=true --set train.compile="$COMPILE" \
  --set "train.val_roots=[\"$SUBSET/val\"]" --set train.val_max_images=4 --set train.val_crop=256 \
  --set train.val_every=$((STEPS / 4 > 0 ? STEPS / 4 : 1)) \
  --set train.log_every=$((STEPS / 100 > 0 ? STEPS / 100 : 1)) \
  "$@"
