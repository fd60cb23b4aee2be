import math

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from superres import cli
from superres.losses import (
    CONTENT_LOSSES,
    VGG19_ENV_VAR,
    VGG19_URL,
    DiscriminatorFeatureLoss,
    DiscriminatorGramLoss,
    MissingWeightsError,
    VGGContentLoss,
    adversarial_loss,
    build_content_loss,
    build_texture_losses,
    discriminator_loss,
    fft_amplitude_loss,
    load_vgg54,
    periodic_amplitude_loss,
    pixel_l1,
    pixel_mse,
    pixel_psnr,
    resolve_content_loss,
    resolve_vgg_weights,
    torchvision_cache_path,
)
from superres.models import Discriminator, UNetDiscriminator


@pytest.fixture(scope="module")
def vgg19_features():
    """A real torchvision VGG19 `features` stack with seeded random weights, rounded to fp16 like the file."""
    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features
    return features.half().float().eval()


@pytest.fixture(scope="module")
def vgg_file(vgg19_features, tmp_path_factory):
    """Its state dict in torchvision's key format (`features.N.*`), fp16: a 40 MB .pth instead of 550 MB."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v.half() for k, v in vgg19_features.state_dict().items()}, path)
    return path


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(VGG19_ENV_VAR, raising=False)
    return tmp_path


def images(seed, n=2, size=32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_vgg54_from_a_random_vgg19_file_gives_finite_gradients(vgg_file):
    loss_fn = build_content_loss("vgg54", vgg_weights=vgg_file)
    gt = images(1)
    sr = images(2).requires_grad_(True)
    loss = loss_fn(sr, gt)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss_fn.parameters())
    assert loss_fn(gt, gt).item() == 0.0


def test_vgg54_is_phi54_after_relu_rescaled_and_imagenet_normalised(vgg_file, vgg19_features):
    features = load_vgg54(vgg_file)
    assert len(features) == 36
    assert isinstance(features[34], nn.Conv2d) and features[34].in_channels == 512
    assert isinstance(features[35], nn.ReLU)  # "after activation", before the 5th max-pool (features[36])
    x = images(3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = vgg19_features[:36]((x - mean) / std) / 12.75
        got = VGGContentLoss(features).embed(x)
    assert got.shape == (2, 512, 2, 2)
    torch.testing.assert_close(got, expected)


def test_vgg_stays_frozen_in_eval_mode(vgg_file):
    loss_fn = build_content_loss("vgg54", vgg_weights=vgg_file).train()
    assert loss_fn.training and not loss_fn.features.training
    assert not any(p.requires_grad for p in loss_fn.parameters())


def test_safetensors_and_full_torchvision_state_dicts_load(vgg_file, tmp_path):
    state = torch.load(vgg_file, weights_only=True)
    state["classifier.6.bias"] = torch.zeros(1000)  # the full torchvision file also holds the classifier: ignored
    path = tmp_path / "vgg19.safetensors"
    save_file(state, str(path))
    x = images(4)
    with torch.no_grad():
        torch.testing.assert_close(load_vgg54(path)(x), load_vgg54(vgg_file)(x))


def test_a_file_that_is_not_vgg19_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(nn.Conv2d(3, 8, 3).state_dict(), path)
    with pytest.raises(ValueError, match="not a VGG19 state dict"):
        load_vgg54(path)


def test_weights_are_found_by_flag_then_env_then_torchvision_cache(no_weights, monkeypatch):
    cache = torchvision_cache_path()
    assert cache == no_weights / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"")
    assert resolve_vgg_weights() == cache
    env_file = no_weights / "env.pth"
    env_file.write_bytes(b"")
    monkeypatch.setenv(VGG19_ENV_VAR, str(env_file))
    assert resolve_vgg_weights() == env_file
    flag_file = no_weights / "flag.pth"
    flag_file.write_bytes(b"")
    assert resolve_vgg_weights(flag_file) == flag_file


def test_missing_weights_message_is_one_line_that_says_where_and_how(no_weights):
    with pytest.raises(MissingWeightsError) as info:
        build_content_loss("vgg54")
    message = str(info.value)
    assert "\n" not in message
    for part in (
        str(torchvision_cache_path()),
        VGG19_URL,
        VGG19_ENV_VAR,
        "--vgg-weights",
        "--content-loss pixel-l1",
        "--content-loss disc-features",
    ):
        assert part in message


def test_a_named_but_missing_file_is_an_error_not_a_fallback(no_weights, monkeypatch):
    with pytest.raises(MissingWeightsError, match="nope.pth"):
        resolve_vgg_weights(no_weights / "nope.pth")
    monkeypatch.setenv(VGG19_ENV_VAR, str(no_weights / "gone.pth"))
    with pytest.raises(MissingWeightsError, match="gone.pth"):
        resolve_vgg_weights()


def test_discriminator_features_loss_gives_d_no_gradient():
    torch.manual_seed(0)
    discriminator = Discriminator(channels=4, hidden_features=16)
    loss_fn = build_content_loss("disc-features", discriminator=discriminator)
    assert list(loss_fn.parameters()) == []  # D is referenced, not owned
    gt = images(5)
    sr = images(6).requires_grad_(True)
    loss = loss_fn(sr, gt)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert all(p.grad is None and p.requires_grad for p in discriminator.parameters())
    assert loss_fn(gt, gt).item() == 0.0
    with pytest.raises(ValueError, match="discriminator"):
        build_content_loss("disc-features")


def test_pixel_l1_content_loss_and_unknown_kind():
    assert CONTENT_LOSSES == cli.CONTENT_LOSSES == ("auto", "vgg54", "pixel-l1", "disc-features")
    gt = torch.zeros(1, 3, 4, 4)
    assert build_content_loss("pixel-l1")(gt + 0.5, gt).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown content loss"):
        build_content_loss("vgg22")


def test_pixel_losses():
    gt = torch.zeros(1, 3, 4, 4)
    sr = torch.full_like(gt, 0.5)
    assert pixel_l1(sr, gt).item() == pytest.approx(0.5)
    assert pixel_mse(sr, gt).item() == pytest.approx(0.25)
    assert pixel_psnr(sr, gt).item() == pytest.approx(-6.02, abs=0.01)  # MSE 0.25: 6.02 dB
    mild, bad = torch.full_like(gt, 0.01), torch.full_like(gt, 0.3)  # 40 dB and 10.5 dB
    both = pixel_psnr(torch.cat([mild, bad]), torch.cat([gt, gt]))
    assert both.item() == pytest.approx((pixel_psnr(mild, gt) + pixel_psnr(bad, gt)).item() / 2)  # a mean over images
    for x in (mild, bad):
        x.requires_grad_(True)
    pixel_psnr(torch.cat([mild, bad]), torch.cat([gt, gt])).backward()
    assert mild.grad.abs().sum() > 10 * bad.grad.abs().sum()  # the small error weighs more, as dB do
    assert pixel_psnr(gt, gt).item() == pytest.approx(-50.0)  # capped: a perfect image is worth 50 dB


def test_adversarial_losses():
    zero = torch.zeros(4)
    assert adversarial_loss(zero).item() == pytest.approx(math.log(2))
    real, fake = discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0))
    assert real.item() < 1e-6 and fake.item() < 1e-6
    real, fake = discriminator_loss(zero, zero)
    assert real.item() == pytest.approx(math.log(2)) and fake.item() == pytest.approx(math.log(2))


def test_auto_content_loss_is_vgg54_only_when_a_vgg19_file_is_given(no_weights, monkeypatch, vgg_file):
    assert resolve_content_loss("auto") == "disc-features"
    assert resolve_content_loss("auto", vgg_file) == "vgg54"
    assert resolve_content_loss("pixel-l1", vgg_file) == "pixel-l1"
    torch.manual_seed(0)
    discriminator = Discriminator(channels=4, hidden_features=16)
    assert isinstance(build_content_loss("auto", discriminator=discriminator), DiscriminatorFeatureLoss)
    assert isinstance(build_content_loss("auto", vgg_weights=vgg_file), VGGContentLoss)
    monkeypatch.setenv(VGG19_ENV_VAR, str(vgg_file))
    assert resolve_content_loss("auto") == "vgg54"
    monkeypatch.setenv(VGG19_ENV_VAR, str(no_weights / "gone.pth"))  # named but missing: vgg54's clear error
    with pytest.raises(MissingWeightsError, match="gone.pth"):
        build_content_loss("auto", discriminator=discriminator)


def tiny_discriminators():
    torch.manual_seed(0)
    return [Discriminator(channels=4, hidden_features=16), UNetDiscriminator(channels=4)]


@pytest.mark.parametrize("name", ["fft", "gram-srgan", "gram-unet", "features-unet"])
def test_texture_and_feature_losses_are_zero_for_identical_images_and_differentiable_otherwise(name):
    srgan, unet = tiny_discriminators()
    loss_fn = {
        "fft": fft_amplitude_loss,
        "gram-srgan": DiscriminatorGramLoss(srgan),
        "gram-unet": DiscriminatorGramLoss(unet),
        "features-unet": DiscriminatorFeatureLoss(unet),
    }[name]
    gt = images(7)
    assert loss_fn(gt, gt.clone()).item() == 0.0
    sr = images(8).requires_grad_(True)
    loss = loss_fn(sr, gt)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    for d in (srgan, unet):  # frozen for the call: D gets no gradient and keeps its flags
        assert all(p.grad is None and p.requires_grad for p in d.parameters())


def test_fft_amplitude_loss_ignores_where_a_pattern_sits_but_not_how_strong_it_is():
    gt = images(9)
    shifted = gt.roll((3, 5), dims=(-2, -1))  # the same texture, moved (circularly): the same amplitude spectrum
    assert fft_amplitude_loss(shifted, gt).item() < 1e-5 < pixel_l1(shifted, gt).item()
    flat = gt.mean(dim=(-2, -1), keepdim=True).expand_as(gt)  # no texture at all
    assert fft_amplitude_loss(flat, gt).item() > 0.01


def test_periodic_loss_sees_a_checkerboard_and_not_a_shifted_image():
    gt = images(9, size=32)
    pattern = torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0], [0.5, 0.0, -0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    checkered = gt + 0.02 * pattern.repeat(8, 8)  # every 4 pixels, +-5 levels: what a x4 sub-pixel stage can add
    noisy = gt + 0.02 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(1))  # as strong, not periodic
    assert periodic_amplitude_loss(gt.roll((4, 8), dims=(-2, -1)), gt, 4).item() < 1e-5
    assert periodic_amplitude_loss(checkered, gt, 4).item() > 5 * periodic_amplitude_loss(noisy, gt, 4).item()
    with pytest.raises(ValueError, match="multiples of 4"):
        periodic_amplitude_loss(gt[..., :30], gt[..., :30], 4)


def test_texture_losses_are_built_only_with_a_weight():
    srgan, _ = tiny_discriminators()
    assert build_texture_losses() == {}
    terms = build_texture_losses(fft_weight=0.5, gram_weight=2.0, periodic_weight=3.0, discriminator=srgan)
    assert {name: weight for name, (weight, _) in terms.items()} == {"fft": 0.5, "periodic": 3.0, "gram": 2.0}
    with pytest.raises(ValueError, match="discriminator"):
        build_texture_losses(gram_weight=1.0)


def test_relativistic_losses_on_simple_logits():
    softplus = torch.nn.functional.softplus
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, -2.0])  # means 1 and -1
    # D: real relative to the mean fake, [3, 1], against real; fake relative to the mean real, [-1, -3], against fake
    d_real, d_fake = discriminator_loss(real, fake, kind="relativistic")
    assert d_real.item() == pytest.approx(float(softplus(-torch.tensor([3.0, 1.0])).mean()))
    assert d_fake.item() == pytest.approx(float(softplus(torch.tensor([-1.0, -3.0])).mean()))
    # G: the mirror image, both terms averaged
    g = adversarial_loss(fake, real, kind="relativistic")
    expected = 0.5 * (softplus(-torch.tensor([-1.0, -3.0])).mean() + softplus(torch.tensor([3.0, 1.0])).mean())
    assert g.item() == pytest.approx(expected.item())
    zero = torch.zeros(4)  # D cannot tell them apart: log 2 everywhere
    assert adversarial_loss(zero, zero, kind="relativistic").item() == pytest.approx(math.log(2))
    assert [v.item() for v in discriminator_loss(zero, zero, kind="relativistic")] == pytest.approx([math.log(2)] * 2)
    # only the difference matters: shifting every logit changes nothing (vanilla does change)
    assert adversarial_loss(fake + 5, real + 5, kind="relativistic").item() == pytest.approx(g.item())
    assert adversarial_loss(fake + 5).item() != pytest.approx(adversarial_loss(fake).item())
    with pytest.raises(ValueError, match="real images"):
        adversarial_loss(fake, kind="relativistic")


def test_adversarial_losses_take_per_pixel_logits():
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    for kind in ("vanilla", "relativistic"):
        loss = adversarial_loss(logits, torch.zeros(2, 1, 8, 8), kind=kind)
        assert loss.ndim == 0 and loss.item() == pytest.approx(math.log(2))
        assert all(part.ndim == 0 for part in discriminator_loss(logits, logits, kind=kind))
