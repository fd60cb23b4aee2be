"""Batch-norm statistics measured over many batches with the weights fixed ("precise BN").

A BatchNorm layer keeps its running mean and variance as an exponential average with momentum 0.1, so the
statistics a checkpoint is saved with come mostly from its last ten or twenty batches. When every batch is a fresh
random mix of blur, noise and JPEG, those few batches differ a lot from each other, and the statistics used at
inference follow whichever happened to come last: validation PSNR moves by tenths of a dB between neighbouring
checkpoints. Recomputing them as the plain average over many batches, after training, removes that noise (Wu and
Johnson, "Rethinking 'Batch' in BatchNorm", 2021, section 3).

    count = recalibrate(model, (lq for lq, _ in batches))
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of `model` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate(model: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of every batch-norm layer of `model` by their equal-weight average over the
    forward passes of `inputs` (batches the model takes); the weights, the layers' momentum and the model's
    train/eval mode are left as they were. Returns the number of batches seen (0: no input, or no batch norm, and
    nothing changed)."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    momenta, was_training = [m.momentum for m in layers], model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch counts the same
    model.train()
    count = 0
    try:
        for x in inputs:
            model(x)
            count += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    if count == 0:
        for m, (mean, var, tracked) in zip(layers, saved):
            m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(tracked)
    return count
