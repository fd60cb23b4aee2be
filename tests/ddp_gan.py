"""Run by test_distributed.py under torchrun (2 gloo processes): two GAN steps of `GanStep` on each rank's own
patches, then a GAN run of `train`. Rank 0 writes what it saw as JSON.

    python -m torch.distributed.run --nproc_per_node 2 --standalone tests/ddp_gan.py OUT.json CONFIG.toml RUN_DIR
"""

from __future__ import annotations

import json
import math
import sys

import torch
import torch.nn.functional as F

from superres.config import GanConfig, TrainConfig, load_config
from superres.distributed import gather, session
from superres.losses import build_content_loss
from superres.models import build_model
from superres.steps import GanStep
from superres.train import train


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def main(out: str, config: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    with session("gloo") as world:
        torch.manual_seed(0)
        generator = build_model("cnn", channels=4)
        discriminator = build_model("discriminator", channels=4, hidden_features=8)  # with batch norm
        before = flat(generator), flat(discriminator)
        step = GanStep(generator, discriminator, build_content_loss("pixel-l1"), TrainConfig(lr=1e-3),
                       GanConfig(d_lr=1e-3), device=torch.device("cpu"), precision="fp32", world=world)  # fmt: skip
        for i in range(2):
            gt = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(10 * i + world.rank))
            logs = step(F.avg_pool2d(gt, 4), gt)  # (2, 3, 8, 8), (2, 3, 32, 32): other patches on each rank
        g, d = gather(world, flat(generator)), gather(world, flat(discriminator))
        losses = gather(world, logs["g/content"].item())
        result = train(load_config(config), run_dir, world=world)
        if world.is_main:
            seen = {
                "g_same": torch.equal(*g), "d_same": torch.equal(*d),
                "g_moved": not torch.equal(g[0], before[0]), "d_moved": not torch.equal(d[0], before[1]),
                "own_patches": losses[0] != losses[1], "finite": all(math.isfinite(v.item()) for v in logs.values()),
                "steps": result.step, "ranks": result.ranks,
            }  # fmt: skip
            with open(out, "w") as f:
                json.dump(seen, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
