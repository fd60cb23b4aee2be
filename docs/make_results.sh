#!/usr/bin/env bash
# Regenerates every table and figure under docs/ from the shipped weights (CPU, about 20 minutes on 2 cores).
#   bash docs/make_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
B=$D/benchmarks
SR="python3 -m superres"
export PYTHONPATH=src

# Results tables: the div2k-unknown family (LR of Set5/Set14/B100 made from HR by the same degradation; the real
# unknown-track LR for the DIV2K pairs), and the bicubic family on the official bicubic LR.
$SR benchmark --models bicubic,cnn,rescnn,gan --data $B/set5 $B/set14 $B/b100 $D/div2k_unknown_x4 \
  --degradation div2k-unknown --tile 256 --out docs/results/div2k-unknown
$SR benchmark --models bicubic,cnn-x4-bicubic,rescnn-x4-bicubic --data $B/set5 $B/set14 $B/b100 \
  --degradation bicubic --tile 256 --out docs/results/bicubic

# Comparison figures: the 4 DIV2K unknown-track pairs, and one Set14 image on its official bicubic LR.
for n in 0839 0852 0882 0900; do
  $SR compare $D/div2k_unknown_x4/LR_unknown/X4/${n}x4.png --hr $D/div2k_unknown_x4/HR/$n.png \
    --models bicubic,cnn,rescnn,gan --tile 256 --crop-size 160 -o docs/figures/compare_div2k_$n.png
done
$SR compare $B/set14/LR_bicubic/X4/img_005.png --hr $B/set14/HR/img_005.png \
  --models bicubic,cnn-x4-bicubic,rescnn-x4-bicubic -o docs/figures/compare_set14_img_005.png

# Store small, upscale later: downscale + codec + upscaling against the codec alone, on Kodak24 (a flat folder) and
# B100; the Kodak24 figure goes to docs/figures/. About an hour on 2 quiet cores (2.5 h on a busy single core).
$SR rd --data $D/val/kodak24 $B/b100 --codecs jpeg,webp,avif --scales 1,2,4 --models bicubic,rescnn-x4-bicubic \
  --out docs/results/rd && cp docs/results/rd/kodak24/rd_kodak24.png docs/figures/rd_kodak24.png
