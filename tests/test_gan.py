import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from superres.gan import discriminator_step, gan_step, generator_step
from superres.losses import CONTENT_LOSSES, build_content_loss, build_texture_losses
from superres.models import Discriminator, ResCNN, UNetDiscriminator

LOG_KEYS = {"g/content", "g/adv", "g/pixel", "g/total", "d/real", "d/fake", "d/acc_real", "d/acc_fake"}


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A seeded random-weight torchvision VGG19 `features` state dict in fp16 (40 MB)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v.half() for k, v in features.state_dict().items()}, path)
    return path


def tiny_gan(seed=0, lr=1e-3, unet=False):
    torch.manual_seed(seed)
    generator = ResCNN(channels=8, num_blocks=1)
    discriminator = UNetDiscriminator(channels=4) if unet else Discriminator(channels=4, hidden_features=16)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr)
    return generator, discriminator, opt_g, opt_d


def batch(seed, n=2, size=32):
    gt = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(gt, 4), gt  # lq (n, 3, size/4, size/4), gt


def snapshot(module):
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def same(module, params):
    return all(torch.equal(p, params[k]) for k, p in module.named_parameters())


@pytest.mark.parametrize("unet", [False, True])
@pytest.mark.parametrize("adv_loss", ["vanilla", "relativistic"])
def test_each_half_of_the_step_changes_only_its_own_network(adv_loss, unet):
    generator, discriminator, opt_g, opt_d = tiny_gan(unet=unet)
    lq, gt = batch(1)
    g0, d0 = snapshot(generator), snapshot(discriminator)
    texture = build_texture_losses(fft_weight=0.1, gram_weight=0.1, discriminator=discriminator)
    sr, g_logs = generator_step(
        generator, discriminator, opt_g, lq, gt, content_loss=build_content_loss("disc-features",
        discriminator=discriminator), adv_weight=1.0, texture=texture, adv_loss=adv_loss,
    )  # fmt: skip
    assert same(discriminator, d0) and not same(generator, g0)
    assert all(p.grad is None for p in discriminator.parameters())  # frozen: no gradient even accumulated
    assert not sr.requires_grad and sr.shape == gt.shape
    g1 = snapshot(generator)
    d_logs = discriminator_step(discriminator, opt_d, sr, gt, adv_loss=adv_loss)
    assert same(generator, g1) and not same(discriminator, d0)
    assert set(g_logs) | set(d_logs) == LOG_KEYS | {"g/fft", "g/gram"}
    assert all(math.isfinite(v) for v in (g_logs | d_logs).values())


@pytest.mark.parametrize("kind", CONTENT_LOSSES)
def test_five_gan_steps_stay_finite(kind, vgg_file):
    generator, discriminator, opt_g, opt_d = tiny_gan()
    content_loss = build_content_loss(kind, vgg_weights=vgg_file, discriminator=discriminator)
    for step in range(5):
        lq, gt = batch(step)
        logs = gan_step(generator, discriminator, opt_g, opt_d, lq, gt, content_loss=content_loss, pixel_weight=0.1)
        assert set(logs) == LOG_KEYS
        assert all(v.shape == () and math.isfinite(v) for v in logs.values()), logs  # tensors: no host sync
        assert 0.0 <= logs["d/acc_real"] <= 1.0 and 0.0 <= logs["d/acc_fake"] <= 1.0
    assert all(torch.isfinite(p).all() for p in [*generator.parameters(), *discriminator.parameters()])


def test_total_is_content_plus_weighted_adversarial_pixel_and_texture():
    generator, discriminator, opt_g, opt_d = tiny_gan()
    lq, gt = batch(2)
    logs = gan_step(
        generator, discriminator, opt_g, opt_d, lq, gt, content_loss=build_content_loss("pixel-l1"), adv_weight=0.5,
        pixel_weight=2.0, texture=build_texture_losses(fft_weight=3.0),
    )  # fmt: skip
    expected = logs["g/content"] + 0.5 * logs["g/adv"] + 2.0 * logs["g/pixel"] + 3.0 * logs["g/fft"]
    assert logs["g/total"] == pytest.approx(expected, rel=1e-5)


def test_a_per_pixel_discriminator_is_judged_pixel_by_pixel():
    generator, discriminator, opt_g, opt_d = tiny_gan(unet=True)
    discriminator.eval()  # no power iteration between the two looks: the same logits
    lq, gt = batch(4)
    with torch.no_grad():
        real, fake = discriminator(gt), discriminator(generator(lq))  # (2, 1, 32, 32) each
    logs = discriminator_step(discriminator, opt_d, generator(lq).detach(), gt, adv_loss="relativistic")
    expected = ((real - fake.mean()) > 0).float().mean().item()  # the relative logits, over every pixel
    assert logs["d/acc_real"] == pytest.approx(expected)
    assert 0 < logs["d/acc_real"] < 1


def test_the_step_runs_under_the_given_autocast():
    generator, discriminator, opt_g, opt_d = tiny_gan()
    lq, gt = batch(3)
    entered = []

    def autocast():
        entered.append(True)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    logs = gan_step(
        generator, discriminator, opt_g, opt_d, lq, gt, content_loss=build_content_loss("pixel-l1"), autocast=autocast
    )
    assert len(entered) == 2  # once for G's half, once for D's
    assert all(math.isfinite(v) for v in logs.values())
    assert all(p.dtype == torch.float32 for p in generator.parameters())
