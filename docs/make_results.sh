#!/usr/bin/env bash
# Regenerates every table and figure under docs/ from the shipped weights, on the CPU (about 4 hours on 2 cores:
# the matrix about 1 hour, the GAN 15 minutes, RepAttn 3 minutes, x1 restoration 50 minutes, the GAN sweep 30
# minutes, store-small-upscale-later about 1.5 hours); rd-x2 (55 minutes), equal-time (trains two networks for 25
# minutes), quality-per-minute (two for 20 minutes) and x1-ensemble (45 minutes) run only when named.
#   bash docs/make_results.sh [matrix|figures|gan|repattn|x1|sweep|rd|rd-x2|equal-time|quality-per-minute
#                              |x1-ensemble ...]
#   (default: the first seven)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
B=$D/benchmarks
SR="python3 -m superres"
export PYTHONPATH=src
PARTS=${*:-matrix figures gan repattn x1 sweep rd}
# The general models (the aliases cnn and rescnn), then the specialists, each for one degradation (the GAN for
# any photo, `gan`, has its own part below).
MODELS=bicubic,cnn,rescnn,cnn-x4-bicubic,rescnn-x4-bicubic,cnn-x4-div2k-unknown,rescnn-x4-div2k-unknown,gan-x4-div2k-unknown

if [[ " $PARTS " == *" matrix "* ]]; then
  # Every model under every named test condition (superres.data.conditions) on Set5, Set14 and B100 (official
  # bicubic LR for `bicubic`, LR made from the HR for the others), and the real DIV2K unknown-track pairs.
  $SR benchmark --models $MODELS --data $B/set5 $B/set14 $B/b100 --degradations all --tile 256 --out docs/results/matrix
  $SR benchmark --models $MODELS --data $D/div2k_unknown_x4 --degradations div2k-unknown --tile 256 \
    --out docs/results/div2k-pairs
fi

if [[ " $PARTS " == *" figures "* ]]; then
  # A photo as people have them (the bundled example: small, noisy, JPEG), and a B100 photo under the "camera"
  # condition (blur, noise, JPEG) with its ground truth: bicubic, the old default, the new default.
  $SR compare examples/tiger_small.jpg --models bicubic,rescnn-x4-div2k-unknown,rescnn --crop 560,180,280,200 \
    -o docs/figures/compare_example.png
  $SR compare $B/b100/HR/img_066.png --degradation camera --models bicubic,rescnn-x4-div2k-unknown,rescnn \
    --crop-size 120 -o docs/figures/compare_camera_b100_066.png
  # The real DIV2K unknown-track pair 0900: the old default was made for it; the general model is one model for all.
  $SR compare $D/div2k_unknown_x4/LR_unknown/X4/0900x4.png --hr $D/div2k_unknown_x4/HR/0900.png \
    --models bicubic,rescnn-x4-div2k-unknown,rescnn --tile 256 --crop-size 160 -o docs/figures/compare_div2k_0900.png
fi

if [[ " $PARTS " == *" gan "* ]]; then
  # The GAN for any photo (`gan`, gan-x4-general) under every condition (its ResCNN's rows are in the matrix), and
  # texture on Set14's baboon (official bicubic LR): bicubic, the general ResCNN, the first GAN (DIV2K unknown), the
  # sub-pixel GAN for any photo (v1), the shipped one, HR.
  $SR benchmark --models gan --data $B/set5 $B/set14 $B/b100 --degradations all --tile 256 --out docs/results/gan
  $SR benchmark --models gan --data $D/div2k_unknown_x4 --degradations div2k-unknown --tile 256 \
    --out docs/results/gan-pairs
  $SR compare $B/set14/HR/img_001.png --degradation bicubic \
    --models bicubic,rescnn,gan-x4-div2k-unknown,gan-x4-general-v1,gan \
    --crop-size 120 -o docs/figures/compare_gan_set14_001.png
fi

if [[ " $PARTS " == *" repattn "* ]]; then
  # The efficient network for any photo (repattn-x4-general) under every condition, beside the matrix's general
  # ResCNN, and the real DIV2K unknown-track pairs.
  $SR benchmark --models repattn-x4-general --data $B/set5 $B/set14 $B/b100 --degradations all --tile 256 \
    --out docs/results/repattn
  $SR benchmark --models repattn-x4-general --data $D/div2k_unknown_x4 --degradations div2k-unknown --tile 256 \
    --out docs/results/repattn-pairs
fi

if [[ " $PARTS " == *" x1 "* ]]; then
  # Restoration at the same size: the x1 model for any photo against the degraded input, Richardson-Lucy given the
  # true kernel (an oracle) and non-local means, under the five x1 conditions on Set14, B100 and Set5 (whole images,
  # fp32; the model's card has the numbers of the first four); before/after of a B100 photo under "camera" (blur,
  # noise, JPEG), and of Set14's barbara under jpeg90 (a good JPEG, which the model should leave as good).
  $SR benchmark --models rescnn-x1-general,input,richardson-lucy,nl-means --data $B/set14 $B/b100 $B/set5 \
    --degradations all --out docs/results/x1
  $SR compare $B/b100/HR/img_066.png --degradation camera --models input,richardson-lucy,nl-means,rescnn-x1-general \
    --crop-size 120 -o docs/figures/restore_camera_b100_066.png
  $SR compare $B/set14/HR/img_002.png --degradation jpeg90 --models input,nl-means,rescnn-x1-general \
    --crop-size 120 -o docs/figures/restore_jpeg90_set14_002.png
fi

if [[ " $PARTS " == *" x1-ensemble "* ]]; then
  # The x1 model with --ensemble (its output averaged over the 8 flips and rotations of the input) under "camera" on
  # Set14 and B100 (fp32, whole images): what 8 times the time buys where the model alone is weakest.
  $SR benchmark --models rescnn-x1-general --data $B/set14 $B/b100 --degradations camera --ensemble \
    --out docs/results/x1-ensemble
fi

if [[ " $PARTS " == *" sweep "* ]]; then
  # The report's table I (GAN sweep) through the training loop, from the shipped div2k-unknown ResCNN.
  $SR tune --steps 300 --window 250 --content-loss pixel-l1 --set data.batch_size=8 --set data.patch_size=64 \
    --set 'gan.generator_weights="rescnn-x4-div2k-unknown"' --out docs/results/sweep
fi

if [[ " $PARTS " == *" rd "* ]]; then
  # Store small, upscale later: downscale + codec + upscaling against the codec alone, on Kodak24 (a flat folder)
  # and B100; the Kodak24 figure goes to docs/figures/.
  $SR rd --data $D/val/kodak24 $B/b100 --codecs jpeg,webp,avif --scales 1,2,4 --models bicubic,rescnn-x4-bicubic,rescnn \
    --out docs/results/rd && cp docs/results/rd/kodak24/rd_kodak24.png docs/figures/rd_kodak24.png
fi

if [[ " $PARTS " == *" rd-x2 "* ]]; then
  # Store small, upscale later with the x2 network: half size + rescnn-x2-general against the full-size codecs and
  # half size + bicubic, on Kodak24.
  $SR rd --data $D/val/kodak24 --codecs jpeg,webp,avif --scales 1,2 --models bicubic,rescnn-x2-general \
    --out docs/results/rd-x2 && cp docs/results/rd-x2/kodak24/rd_kodak24.png docs/figures/rd_x2_kodak24.png
fi

if [[ " $PARTS " == *" quality-per-minute "* ]]; then
  # Today's training settings against the fast ones, 20 minutes each from rescnn-x4-bicubic, side by side on one core
  # each: curves in docs/figures/curves_quality_per_minute.png, logs in docs/training/quality-per-minute/.
  bash docs/training/quality-per-minute/run.sh
fi

if [[ " $PARTS " == *" equal-time "* ]]; then
  # RepAttn against ResCNN at equal wall time (25 minutes each, side by side on one core each), from scratch on the
  # bicubic track: curves in docs/figures/curves_equal_time.png, scores in docs/training/equal-time/benchmark/.
  bash docs/training/equal-time/run.sh
fi
