import pytest
import torch

from superres.models import ARCHS, DISCRIMINATORS, GENERATORS, build_model, count_macs, count_parameters
from superres.models.blocks import NearestConvUpsample, SubPixelUpsample
from superres.models.repattn import RepConv
from superres.optimize import fold_batchnorm

TINY = {"cnn": {"channels": 8}, "rescnn": {"channels": 8, "num_blocks": 1}, "repattn": {"channels": 8, "num_blocks": 1},
        "bicubic": {}}


def test_cnn_has_the_seed_parameter_count():
    assert count_parameters(build_model("cnn")) == 335_875


def test_rescnn_defaults_are_srresnet_sized():
    model = build_model("rescnn")
    assert len(model.body) == 16
    assert 1.4e6 < count_parameters(model) < 1.6e6


def test_rescnn_without_batch_norm_has_biased_convs_and_starts_as_the_identity_at_x1(generator):
    model = build_model("rescnn", scale=1, channels=8, num_blocks=2, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(1, 3, 10, 12, generator=generator)
    with torch.no_grad():
        assert torch.equal(model(x), x)


@pytest.mark.parametrize("arch", GENERATORS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_generators_upscale_by_their_scale(arch, scale, generator):
    model = build_model(arch, scale=scale, **TINY[arch]).eval()
    lq = torch.rand(2, 3, 9, 13, generator=generator)
    assert model(lq).shape == (2, 3, 9 * scale, 13 * scale)
    assert model.scale == scale


@pytest.mark.parametrize("arch", ["cnn", "rescnn", "repattn"])
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
    assert set(ARCHS) == {"bicubic", "cnn", "rescnn", "repattn", "discriminator", "unet-discriminator", "input",
                          "richardson-lucy", "nl-means"}
    assert set(DISCRIMINATORS.values()) <= set(ARCHS)


@pytest.mark.parametrize("factor", [2, 3])
def test_icnr_starts_the_sub_pixel_conv_as_nearest_neighbour_upsampling(factor, generator):
    stage = SubPixelUpsample(8, factor, torch.nn.Identity())
    out = stage(torch.randn(2, 8, 5, 7, generator=generator))  # (2, 8, 5f, 7f)
    blocks = out.unfold(2, factor, factor).unfold(3, factor, factor)  # (2, 8, 5, 7, f, f): one f x f block each
    assert blocks.std(dim=(-2, -1)).max() < 1e-6  # constant within every block: no checkerboard at init
    assert out.std() > 0.1  # and not constant everywhere


@pytest.mark.parametrize("arch", ["cnn", "rescnn"])
def test_generators_are_built_with_icnr(arch):
    conv = build_model(arch, **TINY[arch]).upsample[0][0]  # the first stage's conv, 4 * C outputs
    kernels = conv.weight.unflatten(0, (-1, 4))  # (C, 4, C, 3, 3): the 4 sub-pixels of each output channel
    assert torch.equal(kernels, kernels[:, :1].expand_as(kernels))
    assert torch.equal(conv.bias.unflatten(0, (-1, 4)), conv.bias.unflatten(0, (-1, 4))[:, :1].expand(-1, 4))


def test_a_nearest_conv_stage_cannot_learn_the_grid_a_sub_pixel_stage_learns(generator):
    """With the kernels of its output phases apart (as training moves them), a sub-pixel stage draws a grid on a flat
    input; a nearest-conv stage, whatever its weights, gives every output pixel the same kernel: no grid."""
    flat = torch.full((1, 8, 12, 12), 0.5)
    shuffle, nearest = SubPixelUpsample(8, 2, torch.nn.Identity()), NearestConvUpsample(8, 2, torch.nn.Identity())
    with torch.no_grad():
        for stage in (shuffle, nearest):
            for p in stage.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        shuffled, upsampled = shuffle(flat)[..., 2:-2, 2:-2], nearest(flat)[..., 2:-2, 2:-2]  # away from the padding
    assert shuffled.shape == upsampled.shape == (1, 8, 20, 20)
    phases = shuffled.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, 8, 10, 10, 2, 2): the 4 phases of each 2 x 2 block
    assert torch.allclose(phases, phases[:, :, :1, :1].expand_as(phases), atol=1e-4)  # the same in every block,
    assert phases.std(dim=(-2, -1)).min() > 0.1  # different within each: a grid of period 2
    assert torch.allclose(upsampled, upsampled[..., :1, :1].expand_as(upsampled), atol=1e-4)  # flat stays flat


def test_rescnn_takes_a_nearest_conv_upsampler(generator):
    model = build_model("rescnn", upsampler="nearest-conv", **TINY["rescnn"]).eval()
    assert isinstance(model.upsample[0], NearestConvUpsample) and len(model.upsample) == 2
    assert model(torch.rand(1, 3, 5, 6, generator=generator)).shape == (1, 3, 20, 24)
    with pytest.raises(ValueError, match="upsampler must be one of"):
        build_model("rescnn", upsampler="transposed", **TINY["rescnn"])


def test_unet_discriminator_gives_a_logit_per_pixel_and_finite_gradients(generator):
    d = build_model("unet-discriminator", channels=4)
    x = torch.rand(2, 3, 32, 24, generator=generator, requires_grad=True)
    logits = d(x)
    assert logits.shape == (2, 1, 32, 24)
    features = d.features(x)
    assert [tuple(f.shape[1:]) for f in features] == [
        (4, 32, 24), (8, 16, 12), (16, 8, 6), (32, 4, 3), (16, 8, 6), (8, 16, 12), (4, 32, 24), (4, 32, 24), (4, 32, 24)
    ]  # stem, encoder, decoder (each with the encoder's skip), two refining convs
    assert d.content_layers == (1, 2, 3)
    logits.square().mean().backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert d(torch.rand(1, 3, 20, 20, generator=generator)).shape == (1, 1, 20, 20)  # sizes not divisible by 8


def test_unet_discriminator_is_spectrally_normalised(generator):
    d = build_model("unet-discriminator", channels=4).train()
    x = torch.rand(2, 3, 16, 16, generator=generator)
    for _ in range(30):  # power iteration: one step per training-mode forward
        d(x)
    conv = d.down[1]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.05)
    assert any("parametrizations.weight.original" in key for key in d.state_dict())


def test_repattn_costs_under_a_third_of_rescnn():
    repattn, rescnn = build_model("repattn"), build_model("rescnn")
    assert count_macs(rescnn) == pytest.approx(129.26e9, rel=1e-3)  # the figure the efficient-network issue quotes
    assert count_macs(repattn) < count_macs(rescnn) / 3
    assert count_parameters(repattn) < count_parameters(rescnn) / 2


def test_untrained_repattn_is_nearest_neighbour_upsampling(generator):
    lq = torch.rand(1, 3, 6, 7, generator=generator)
    with torch.no_grad():
        sr = build_model("repattn", **TINY["repattn"]).eval()(lq)
    assert torch.equal(sr, lq.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3))


def test_folding_the_re_parameterised_convolutions_keeps_the_output(generator):
    torch.manual_seed(0)
    model = build_model("repattn", channels=8, num_blocks=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)  # the zero tail too: a trained-like model
    folded = fold_batchnorm(model)
    assert any(isinstance(m, RepConv) for m in model.modules())  # the original is left as it was
    assert not any(isinstance(m, RepConv) for m in folded.modules())
    lq = torch.rand(2, 3, 11, 9, generator=generator)
    with torch.no_grad():
        assert torch.allclose(folded(lq), model(lq), atol=1e-5)
