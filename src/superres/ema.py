"""An exponential moving average of a model's weights: what a run validates and exports when train.ema_decay > 0.

    ema = ModelEma(generator, decay=0.999)
    ...after each optimizer step: ema.update(generator)
    ema.module                     # an eval-mode copy with the averaged weights, same class and arguments

Parameters and floating-point buffers (BatchNorm's running statistics) are averaged alike; integer buffers (the
count of batches a norm has seen) are copied. Copying the statistics too would validate and export the averaged
weights with the statistics of the live ones over only the last few batches, which describe another network: the
averaged statistics are the usual approximation of the averaged network's own (exact after recomputing them over
many batches, `superres.precise_bn`; a model without batch norm has none). The decay warms up as
min(decay, (1 + n) / (10 + n)) after n updates, so a short run (a fine-tune of a few thousand steps) is not held
near its starting weights: early on the average spans about the last tenth of the run, later about 1 / (1 - decay)
steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        for averaged, live in zip(self.module.parameters(), model.parameters()):
            averaged.lerp_(live.detach(), weight)
        for averaged, live in zip(self.module.buffers(), model.buffers()):
            if averaged.is_floating_point():
                averaged.lerp_(live.detach(), weight)
            else:
                averaged.copy_(live)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
