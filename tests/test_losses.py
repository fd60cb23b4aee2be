import math

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from superres.losses import (
    CONTENT_LOSSES,
    VGG19_ENV_VAR,
    VGG19_URL,
    DiscriminatorFeatureLoss,
    MissingWeightsError,
    VGGContentLoss,
    adversarial_loss,
    build_content_loss,
    discriminator_loss,
    load_vgg54,
    pixel_l1,
    pixel_mse,
    resolve_vgg_weights,
    torchvision_cache_path,
)
from superres.models import Discriminator


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
    assert CONTENT_LOSSES == ("vgg54", "pixel-l1", "disc-features")
    gt = torch.zeros(1, 3, 4, 4)
    assert build_content_loss("pixel-l1")(gt + 0.5, gt).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown content loss"):
        build_content_loss("vgg22")


def test_pixel_losses():
    gt = torch.zeros(1, 3, 4, 4)
    sr = torch.full_like(gt, 0.5)
    assert pixel_l1(sr, gt).item() == pytest.approx(0.5)
    assert pixel_mse(sr, gt).item() == pytest.approx(0.25)


def test_adversarial_losses():
    zero = torch.zeros(4)
    assert adversarial_loss(zero).item() == pytest.approx(math.log(2))
    real, fake = discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0))
    assert real.item() < 1e-6 and fake.item() < 1e-6
    real, fake = discriminator_loss(zero, zero)
    assert real.item() == pytest.approx(math.log(2)) and fake.item() == pytest.approx(math.log(2))
