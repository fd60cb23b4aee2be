#!/usr/bin/env bash
# The next GPU session, prepared: four fine-tunes from the shipped weights share the one GPU for at most MINUTES
# (default 6), each through tools/gpu_train.sh, then the 960x540 -> 3840x2160 frame rate of the shipped models.
#
#   python3 tools/make_subset.py --budget-mib 26       # here, once: .subset/ (git-ignored; 34 MiB of tree + 26)
#   OUT=$OUT bash tools/gpu_session3.sh                # there (the device tool: carry [".subset"], timeout_s 600)
#
#   x4-general  configs/rescnn_x4_general.toml from rescnn-x4-general (the default), batch 64 of 128 px
#   x4-bicubic  configs/rescnn_x4_bicubic.toml from rescnn-x4-bicubic, batch 64 of 128 px
#   x1-general  configs/rescnn_x1_general_ft.toml from rescnn-x1-general, batch 32 of 96 px, jpeg90 validated too
#   gan-general configs/gan_x4_general.toml from gan-x4-general (GAN_WEIGHTS), batch 32 of 128 px
#
# The step counts (X4_STEPS, X1_STEPS, GAN_STEPS; batches and patches X4_BATCH, X4_PATCH, X1_BATCH, X1_PATCH,
# GAN_BATCH, GAN_PATCH) come from the second session's rates, four jobs on the H200: rescnn x4 at
# about 50 steps/s with batch 64 of 96 px; an x1 step does 16 times the work of an x4 step of the same patch. A job
# that is slower stops cleanly at MINUTES with its last weights. The runs live in runs/gpu3/; $OUT gets six files:
# each job's last.safetensors as NAME.safetensors, logs.tar.gz (every log.csv, curves.png, config.toml and console
# log) and video_fps.md. Extra arguments go to every job; FPS_ARGS replaces the frame-rate benchmark's arguments
# (the CPU rehearsal in tests/test_gpu_train.py makes both tiny).
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
MINUTES=${MINUTES:-6}
X4_STEPS=${X4_STEPS:-9000}
X1_STEPS=${X1_STEPS:-2400}
GAN_STEPS=${GAN_STEPS:-1500}
X4_BATCH=${X4_BATCH:-64} X4_PATCH=${X4_PATCH:-128} X1_BATCH=${X1_BATCH:-32} X1_PATCH=${X1_PATCH:-96}
GAN_BATCH=${GAN_BATCH:-32} GAN_PATCH=${GAN_PATCH:-128} GAN_WEIGHTS=${GAN_WEIGHTS:-gan-x4-general}
FPS_ARGS=${FPS_ARGS:---models cnn rescnn gan}
RUNS=${RUNS:-runs/gpu3}
NAMES=(x4-general x4-bicubic x1-general gan-general)
mkdir -p "$OUT" "$RUNS"

job() {  # NAME CONFIG STEPS BATCH PATCH [--set ...]
  local name=$1 config=$2 steps=$3 batch=$4 patch=$5
  shift 5
  OUT="$RUNS/$name" CONFIG=$config STEPS=$steps BATCH=$batch PATCH=$patch MINUTES=$MINUTES \
    bash tools/gpu_train.sh "$@" > "$RUNS/$name.log" 2>&1
}

job x4-general configs/rescnn_x4_general.toml "$X4_STEPS" "$X4_BATCH" "$X4_PATCH" \
  --set 'model.init_weights="rescnn-x4-general"' "$@" &
job x4-bicubic configs/rescnn_x4_bicubic.toml "$X4_STEPS" "$X4_BATCH" "$X4_PATCH" \
  --set 'model.init_weights="rescnn-x4-bicubic"' "$@" &
job x1-general configs/rescnn_x1_general_ft.toml "$X1_STEPS" "$X1_BATCH" "$X1_PATCH" \
  --set 'model.init_weights="rescnn-x1-general"' \
  --set 'train.val_conditions=["blur","noise","jpeg","camera","jpeg90"]' "$@" &
job gan-general configs/gan_x4_general.toml "$GAN_STEPS" "$GAN_BATCH" "$GAN_PATCH" \
  --set "gan.generator_weights=\"$GAN_WEIGHTS\"" "$@" &
failed=0
for pid in $(jobs -p); do wait "$pid" || failed=1; done

# shellcheck disable=SC2086  # FPS_ARGS is a list of arguments
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} timeout 150 python3 benchmarks/video_fps.py $FPS_ARGS --out "$RUNS/fps" \
  > "$RUNS/fps.log" 2>&1 || failed=1
cp "$RUNS"/fps/video_fps_*.md "$OUT/video_fps.md" 2>/dev/null
for name in "${NAMES[@]}"; do
  cp "$RUNS/$name/run/last.safetensors" "$OUT/$name.safetensors" 2>/dev/null || failed=1
  tail -n 2 "$RUNS/$name.log"
done
tar czf "$OUT/logs.tar.gz" -C "$RUNS" --ignore-failed-read fps.log "${NAMES[@]/%/.log}" \
  "${NAMES[@]/%//run/log.csv}" "${NAMES[@]/%//run/curves.png}" "${NAMES[@]/%//run/config.toml}" 2>/dev/null
cat "$RUNS/fps.log"
exit $failed
