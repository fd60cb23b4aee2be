import pytest
import torch

from superres.models import ARCHS, GENERATORS, build_model, count_parameters

TINY = {"cnn": {"channels": 8}, "rescnn": {"channels": 8, "num_blocks": 1}, "bicubic": {}}


def test_cnn_has_the_seed_parameter_count():
    assert count_parameters(build_model("cnn")) == 335_875


def test_rescnn_defaults_are_srresnet_sized():
    model = build_model("rescnn")
    assert len(model.body) == 16
    assert 1.4e6 < count_parameters(model) < 1.6e6


@pytest.mark.parametrize("arch", GENERATORS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_generators_upscale_by_their_scale(arch, scale, generator):
    model = build_model(arch, scale=scale, **TINY[arch]).eval()
    lq = torch.rand(2, 3, 9, 13, generator=generator)
    assert model(lq).shape == (2, 3, 9 * scale, 13 * scale)
    assert model.scale == scale


@pytest.mark.parametrize("arch", ["cnn", "rescnn"])
def test_every_parameter_gets_a_finite_gradient(arch, generator):
    model = build_model(arch, **TINY[arch])
    model(torch.rand(2, 3, 8, 8, generator=generator)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_cnn_standardises_inside_with_a_saved_mean():
    model = build_model("cnn", channels=8)
    assert "rgb_mean" in model.state_dict()
    # With every weight zero the network is the identity of its normalisation: output = the saved mean.
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    out = model(torch.rand(1, 3, 4, 4))
    assert torch.allclose(out, model.rgb_mean.expand_as(out))


def test_bicubic_pseudo_model_keeps_flat_images_flat():
    out = build_model("bicubic", scale=4)(torch.full((1, 3, 5, 7), 0.25))
    assert out.shape == (1, 3, 20, 28)
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-6)


@pytest.mark.parametrize("activation", ["leaky_relu", "relu"])
@pytest.mark.parametrize("hidden_layers", [0, 1])
def test_discriminator_variants_give_one_logit_per_image(activation, hidden_layers, generator):
    d = build_model("discriminator", channels=4, hidden_layers=hidden_layers, hidden_features=16, activation=activation)
    features = d.features(torch.rand(3, 3, 32, 32, generator=generator))
    assert len(features) == 10
    assert features[6].shape == features[9].shape  # the skip joins block 7 to block 10
    assert d(torch.rand(3, 3, 32, 32, generator=generator)).shape == (3,)


def test_discriminator_at_defaults_reduces_96px_to_6x6():
    d = build_model("discriminator")
    assert d.features(torch.rand(1, 3, 96, 96))[-1].shape == (1, 512, 6, 6)
    assert isinstance(d.head[2], torch.nn.LeakyReLU)


def test_unknown_arch_and_activation_are_clear_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("edsr")
    with pytest.raises(ValueError, match="activation"):
        build_model("discriminator", activation="tanh")
    with pytest.raises(ValueError, match="scale"):
        build_model("rescnn", scale=5)
    assert set(ARCHS) == {"bicubic", "cnn", "rescnn", "discriminator"}
