"""Blend two weights files of one architecture (network interpolation, `superres.weights.interpolate`) and save the
result with the sharp file's metadata and the blend in its recipe:

    PYTHONPATH=src python tools/interpolate_weights.py runs/gan-x4-general/last.safetensors rescnn-x4-general \
        --alpha 0.5 -o runs/gan-x4-general/interp-0.5.safetensors
"""

from __future__ import annotations

import argparse

from superres.weights import interpolate, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sharp", help="weights at alpha 1 (e.g. the GAN)")
    parser.add_argument("smooth", help="weights at alpha 0 (e.g. the PSNR-trained model the GAN started from)")
    parser.add_argument("--alpha", type=float, required=True, help="share of `sharp`, 0..1")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    model = interpolate(args.sharp, args.smooth, args.alpha)
    info = model.info
    recipe = info.recipe | {"interpolation": {"sharp": str(args.sharp), "smooth": str(args.smooth),
                                              "alpha": args.alpha}}
    save_weights(args.output, model, arch=info.arch, args=info.args, scale=info.scale, degradation=info.degradation,
                 recipe=recipe)
    print(f"wrote {args.output}: {args.alpha:g} x {args.sharp} + {1 - args.alpha:g} x {args.smooth}")


if __name__ == "__main__":
    main()
