#!/usr/bin/env bash
# A 30-second check that the training path runs on the GPU before the long session: tiny supervised run with the
# sampler on the device, a tiny GAN run from it, and the data-path benchmark for one second per row.
set -eu
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=/tmp/check
python3 -m superres train --config configs/tiny.toml --run-dir $R/sup --quiet --set 'train.device="auto"' \
  --set 'data.train_roots=[".subset/t91"]' --set 'train.val_roots=[".subset/val"]' --set 'train.precision="auto"'
python3 -m superres train --config configs/gan_x4_div2k_unknown.toml --run-dir $R/gan --quiet \
  --set 'data.train_roots=[".subset/t91"]' --set data.batch_size=4 --set data.patch_size=32 --set train.steps=4 \
  --set 'train.val_roots=[".subset/val"]' --set train.val_max_images=1 --set train.val_crop=64 --set train.val_every=4 \
  --set "gan.generator_weights=\"$R/sup/last.safetensors\"" --set 'gan.content_loss="pixel-l1"' \
  --set 'gan.d_args={channels = 8, hidden_layers = 1, hidden_features = 32}'
python3 benchmarks/gpu_data_path.py --roots .subset/t91 --batch 64 --seconds 1 --out $R/bench
