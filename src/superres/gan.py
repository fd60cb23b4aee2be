"""The GAN step in one screen: freeze D, step G; unfreeze D, step D on real and on detached fake.

D may give one logit per image or one per pixel ((B,) or (B, 1, H, W)): every loss and accuracy here is a mean
over all of them. `adv_loss` is "vanilla" (SRGAN) or "relativistic" (ESRGAN's relativistic average GAN, for which
G's half also runs D on the real images, detached)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

import torch
from torch import nn

from superres.losses import adversarial_loss, discriminator_logits, discriminator_loss, pixel_l1

Autocast = Callable[[], AbstractContextManager]
Texture = Mapping[str, tuple[float, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]  # name -> (weight, loss)


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
    texture: Texture | None = None,
    adv_loss: str = "vanilla",
    autocast: Autocast = contextlib.nullcontext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One G update with D frozen: content + adv_weight * adversarial + pixel_weight * L1 + each texture term's
    weight * loss (logged as g/NAME, e.g. g/fft). Returns sr and the logged numbers detached, on the device."""
    discriminator.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    with autocast():
        sr = generator(lq)  # (B, 3, H*s, W*s)
        real_logits = None
        if adv_loss == "relativistic":
            with torch.no_grad():
                real_logits = discriminator(gt)  # (B,) or (B, 1, H*s, W*s)
        terms = {"content": (1.0, content_loss(sr, gt)), "pixel": (pixel_weight, pixel_l1(sr, gt)),
                 "adv": (adv_weight, adversarial_loss(discriminator(sr), real_logits, kind=adv_loss))}  # fmt: skip
        terms |= {name: (weight, loss(sr, gt)) for name, (weight, loss) in (texture or {}).items()}
        total = sum(weight * value for weight, value in terms.values())
    total.backward()
    opt_g.step()
    logs = {f"g/{name}": value for name, (_, value) in terms.items()} | {"g/total": total}
    return sr.detach(), {k: v.detach().float() for k, v in logs.items()}


def discriminator_step(
    discriminator: nn.Module,
    opt_d: torch.optim.Optimizer,
    sr: torch.Tensor,
    gt: torch.Tensor,
    *,
    adv_loss: str = "vanilla",
    autocast: Autocast = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """One D update with D unfrozen: BCE of D(gt) against real plus BCE of D(sr.detach()) against fake (for
    "relativistic", of each relative to the other's mean). Accuracies count the logits the loss judges. The numbers
    stay on the device (0-dim tensors: no host sync)."""
    discriminator.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    with autocast():
        real_logits = discriminator(gt)  # (B,) or (B, 1, H, W)
        fake_logits = discriminator(sr.detach())  # (B,) or (B, 1, H, W)
        real, fake = discriminator_loss(real_logits, fake_logits, kind=adv_loss)
    (real + fake).backward()
    opt_d.step()
    judged_real, judged_fake = discriminator_logits(real_logits.detach(), fake_logits.detach(), kind=adv_loss)
    return {
        "d/real": real.detach().float(),
        "d/fake": fake.detach().float(),
        "d/acc_real": (judged_real > 0).float().mean(),
        "d/acc_fake": (judged_fake < 0).float().mean(),
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
    texture: Texture | None = None,
    adv_loss: str = "vanilla",
    autocast: Autocast = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """G step then D step on the same batch; `autocast` is a zero-argument callable giving a context manager.

    Returns g/content, g/adv, g/pixel (L1, logged even at weight 0), one g/NAME per texture term, g/total, d/real,
    d/fake, d/acc_real, d/acc_fake (the fraction of judged logits on the right side of 0), as 0-dim tensors on the
    device (no host sync). No gradient scaling: use bf16 autocast, not fp16."""
    sr, logs = generator_step(
        generator, discriminator, opt_g, lq, gt, content_loss=content_loss, adv_weight=adv_weight,
        pixel_weight=pixel_weight, texture=texture, adv_loss=adv_loss, autocast=autocast,
    )  # fmt: skip
    return logs | discriminator_step(discriminator, opt_d, sr, gt, adv_loss=adv_loss, autocast=autocast)
