#!/usr/bin/env bash
# Second GPU session: fine-tune the first session's weights (in .subset/init/) with the sampler that augments
# before degrading, four runs in parallel against a 3-minute cap; pack weights and logs into $OUT.
set -u
set -f  # the TOML values below hold brackets: no globbing
export PYTHONPATH=src PYTHONUNBUFFERED=1
ROOTS='[".subset/t91",".subset/bsds400",".subset/div2k"]'
common() {  # steps lr
  echo --quiet --set "data.train_roots=$ROOTS" --set data.batch_size=64 --set train.steps=$1 --set train.lr=$2 \
    --set "train.lr_milestones=[$(($1 / 2)),$(($1 * 4 / 5))]" --set train.lr_gamma=0.4 --set train.max_minutes=3.0 \
    --set 'train.val_roots=[".subset/val"]' --set train.val_max_images=4 --set train.val_every=$(($1 / 3 + 1)) \
    --set train.checkpoint_every=$(($1 / 3 + 1)) --set train.log_every=$(($1 / 200 + 1))
}
T="python3 -m superres train"
$T --config configs/rescnn_x4_div2k_unknown.toml --run-dir runs/rescnn-unknown-ft $(common 5600 2e-4) \
  --set 'model.init_weights=".subset/init/rescnn-unknown.safetensors"' > runs_a.log 2>&1 &
$T --config configs/rescnn_x4_bicubic.toml --run-dir runs/rescnn-bicubic-ft $(common 5600 1e-4) \
  --set 'model.init_weights=".subset/init/rescnn-bicubic.safetensors"' > runs_b.log 2>&1 &
$T --config configs/cnn_x4_div2k_unknown.toml --run-dir runs/cnn-unknown-ft $(common 13600 5e-4) \
  --set 'model.init_weights=".subset/init/cnn-unknown.safetensors"' > runs_c.log 2>&1 &
$T --config configs/gan_x4_div2k_unknown.toml --run-dir runs/gan-unknown-2 $(common 2500 1e-4) --set data.batch_size=32 \
  --set 'gan.generator_weights=".subset/init/rescnn-unknown.safetensors"' --set 'gan.content_loss="pixel-l1"' > runs_d.log 2>&1 &
wait
set +f
mkdir -p "$OUT"
for r in rescnn-unknown-ft rescnn-bicubic-ft gan-unknown-2; do cp runs/$r/last.safetensors "$OUT/$r.safetensors"; done
tar czf "$OUT/runs2.tar.gz" runs_?.log runs/*-ft/log.csv runs/*-ft/config.toml runs/*-ft/curves.png runs/cnn-unknown-ft/last.safetensors runs/gan-unknown-2/log.csv runs/gan-unknown-2/config.toml runs/gan-unknown-2/curves.png
tail -n 3 runs_?.log
