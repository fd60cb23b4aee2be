"""The GAN step in one screen: freeze D, step G; unfreeze D, step D on real and on detached fake."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn

from superres.losses import adversarial_loss, discriminator_loss, pixel_l1

Autocast = Callable[[], AbstractContextManager]


def generator_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    lq: torch.Tensor,
    gt: torch.Tensor,
    *,
    content_loss: nn.Module,
    adv_weight: float = 1e-3,
    pixel_weight: float = 0.0,
    autocast: Autocast = contextlib.nullcontext,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One G update with D frozen: content + adv_weight * adversarial + pixel_weight * L1. Returns sr detached."""
    discriminator.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    with autocast():
        sr = generator(lq)  # (B, 3, H*s, W*s)
        content = content_loss(sr, gt)
        adv = adversarial_loss(discriminator(sr))
        pixel = pixel_l1(sr, gt)
        total = content + adv_weight * adv + pixel_weight * pixel
    total.backward()
    opt_g.step()
    logs = {"g/content": content, "g/adv": adv, "g/pixel": pixel, "g/total": total}
    return sr.detach(), {k: v.item() for k, v in logs.items()}


def discriminator_step(
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    sr: torch.Tensor,
    gt: torch.Tensor,
    *,
    autocast: Autocast = contextlib.nullcontext,
) -> dict[str, float]:
    """One D update with D unfrozen: BCE of D(gt) against real plus BCE of D(sr.detach()) against fake."""
    discriminator.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    with autocast():
        real_logits = discriminator(gt)  # (B,)
        fake_logits = discriminator(sr.detach())  # (B,)
        real, fake = discriminator_loss(real_logits, fake_logits)
    (real + fake).backward()
    opt_d.step()
    return {
        "d/real": real.item(),
        "d/fake": fake.item(),
        "d/acc_real": (real_logits > 0).float().mean().item(),
        "d/acc_fake": (fake_logits < 0).float().mean().item(),
    }


def gan_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    lq: torch.Tensor,
    gt: torch.Tensor,
    *,
    content_loss: nn.Module,
    adv_weight: float = 1e-3,
    pixel_weight: float = 0.0,
    autocast: Autocast = contextlib.nullcontext,
) -> dict[str, float]:
    """G step then D step on the same batch; `autocast` is a zero-argument callable giving a context manager.

    Returns g/content, g/adv, g/pixel (L1, logged even at weight 0), g/total, d/real, d/fake, d/acc_real, d/acc_fake
    (the fraction of logits on the right side of 0). No gradient scaling: use bf16 autocast, not fp16."""
    sr, logs = generator_step(
        generator, discriminator, opt_g, lq, gt,
        content_loss=content_loss, adv_weight=adv_weight, pixel_weight=pixel_weight, autocast=autocast,
    )  # fmt: skip
    return logs | discriminator_step(discriminator, opt_d, sr, gt, autocast=autocast)
