"""Networks: shapes, sizes, attention masking, gradients and deterministic inference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attngan.config import load_config
from attngan.errors import ModelError
from attngan.models import (
    CNNImageEncoder,
    Discriminator,
    Generator,
    InceptionImageEncoder,
    TextEncoder,
    WordAttention,
    build_discriminators,
    build_generator,
    build_text_encoder,
    sample_noise,
)

from .reference import release_attention

D = 16  # embedding width of the tiny test networks


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def text_inputs(batch=4, steps=6, seed=0, vocab=30):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    lengths[0] = steps
    tokens = torch.randint(1, vocab, (batch, steps), generator=gen)
    tokens[torch.arange(steps)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def tiny_generator(**kw) -> Generator:
    args = dict(stages=2, base_size=16, gf=4, residual_blocks=1, z_dim=8, condition_dim=6)
    args.update(kw)
    return Generator(embedding_dim=D, **args)


def generator_inputs(batch=3, steps=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    words = torch.randn(batch, D, steps, generator=gen)
    mask = torch.zeros(batch, steps, dtype=torch.bool)
    mask[1, 3:] = True
    mask[2, 1:] = True
    return torch.randn(batch, 8, generator=gen), torch.randn(batch, D, generator=gen), words, mask


# --- sizes ---------------------------------------------------------------------------------------


def test_parameter_counts_equal_the_release():
    birds = load_config("birds").model
    with torch.device("meta"):  # sizes only: skip allocating and initialising 130 M parameters
        assert count(build_generator(birds)) == 7_084_592
        assert count(build_text_encoder(birds, 5450)) == 2_075_320
        discs = [round(count(d), -4) for d in build_discriminators(birds)]
        assert discs == [6_310_000, 19_420_000, 71_860_000]
        assert count(build_generator(load_config("coco").model)) == 13_811_456


@pytest.mark.parametrize(
    "stages,base,blocks", [(1, 16, 1), (2, 16, 2), (3, 16, 1), (2, 32, 1), (2, 64, 3)]
)
def test_generator_output_shapes(stages, base, blocks):
    g = tiny_generator(stages=stages, base_size=base, residual_blocks=blocks)
    z, sentence, words, mask = generator_inputs()
    out = g(z, sentence, words, mask)
    sizes = [base * 2**i for i in range(stages)]
    assert [tuple(im.shape) for im in out.images] == [(3, 3, s, s) for s in sizes]
    assert [tuple(a.shape) for a in out.attention] == [(3, 5, s, s) for s in sizes[:-1]]
    assert all(im.abs().max() <= 1 for im in out.images)
    assert out.mu.shape == out.logvar.shape == (3, 6)


@pytest.mark.parametrize("size", [16, 32, 64, 128, 256])
def test_discriminator_shapes(size):
    disc = Discriminator(size, df=2, embedding_dim=D)
    images, sentence = torch.randn(2, 3, size, size), torch.randn(2, D)
    assert disc.features(images).shape == (2, 16, 4, 4)
    out = disc(images, sentence)
    assert out.unconditional.shape == out.conditional.shape == (2,)
    assert (
        Discriminator(size, df=2, embedding_dim=D, unconditional=False)(
            images, sentence
        ).unconditional
        is None
    )


@pytest.mark.parametrize("size", [32, 128])
def test_spectral_norm_discriminator_has_unit_spectral_norms_and_no_batchnorm(size, tmp_path):
    from attngan.checkpoints import load_weights, save_weights

    torch.manual_seed(0)
    disc = Discriminator(size, df=4, embedding_dim=D, norm="spectral")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())
    batch = Discriminator(size, df=4, embedding_dim=D)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules())
    images, sentence = torch.randn(3, 3, size, size), torch.randn(3, D)
    for _ in range(30):  # power iterations run in training-mode forwards
        disc(images, sentence)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 4
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), 2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    # the state dict (with the power iteration's vectors) saves and loads: same outputs
    disc.eval()
    save_weights(disc, tmp_path / "d.safetensors", "discriminators")
    other = Discriminator(size, df=4, embedding_dim=D, norm="spectral", initialize=False).eval()
    load_weights(other, tmp_path / "d.safetensors")
    torch.testing.assert_close(other(images, sentence), disc(images, sentence))
    with pytest.raises(ValueError, match="norm"):
        Discriminator(size, df=4, embedding_dim=D, norm="layer")


def test_d_norm_config_builds_spectral_discriminators():
    from attngan.errors import ConfigError

    m = load_config("shapes", ["model.d_norm=spectral"]).model
    assert all(d.norm == "spectral" for d in build_discriminators(m))
    with pytest.raises(ConfigError, match="model.d_norm"):
        load_config("shapes", ["model.d_norm=instance"])


def test_shape_checks_name_the_input():
    g = tiny_generator()
    z, sentence, words, mask = generator_inputs()
    with pytest.raises(ValueError, match=r"z: expected shape \[3, 8\], got \[3, 9\]"):
        g(torch.randn(3, 9), sentence, words, mask)
    with pytest.raises(ValueError, match="mask"):
        g(z, sentence, words, mask[:, :2])
    with pytest.raises(ValueError, match="images"):
        Discriminator(32, df=2, embedding_dim=D).features(torch.randn(2, 3, 16, 16))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        tiny_generator(base_size=48)
    with pytest.raises(ValueError, match="stages"):
        tiny_generator(stages=0)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(8)


# --- word attention ------------------------------------------------------------------------------


def _attention_case(seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 4, 5, 5, generator=gen)
    words = torch.randn(3, D, 6, generator=gen)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 4:] = True
    mask[2, 2:] = True
    return h, words, mask


def test_attention_ignores_padding_and_sums_to_one():
    att = WordAttention(4, D)
    h, words, mask = _attention_case()
    context, attention = att(h, words, mask)
    assert context.shape == h.shape and attention.shape == (3, 6, 5, 5)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(3, 5, 5))
    assert torch.all(
        attention.permute(0, 2, 3, 1)[mask[:, None, None, :].expand(-1, 5, 5, -1)] == 0
    )
    # a sample's attention does not depend on its batch mates or on what its padding holds
    alone = att(h[2:], words[2:], mask[2:])[1]
    torch.testing.assert_close(alone, attention[2:])
    junk = words.clone()
    junk[2, :, 2:] = 100.0
    torch.testing.assert_close(att(h, junk, mask)[1], attention)


def test_legacy_mask_order_reproduces_the_release_tiling():
    torch.manual_seed(0)
    att = WordAttention(4, D, legacy_mask_order=True)
    h, words, mask = _attention_case(seed=1)
    _, attention = att(h, words, mask)
    projected = att.word_proj(words.transpose(1, 2)).transpose(1, 2)  # [B, C, T]
    torch.testing.assert_close(attention, release_attention(h, projected, mask))
    # the release's bug: some pixels attend to padded words, which the fixed order never does
    att.legacy_mask_order = False
    fixed = att(h, words, mask)[1]
    assert not torch.allclose(attention, fixed)
    assert attention[0, 4:].sum() > 0 and fixed[0, 4:].sum() == 0


def test_legacy_and_fixed_order_agree_without_padding():
    att = WordAttention(4, D, legacy_mask_order=True)
    h, words, _ = _attention_case(seed=2)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    legacy = att(h, words, mask)[1]
    att.legacy_mask_order = False
    torch.testing.assert_close(att(h, words, mask)[1], legacy)


# --- text encoder --------------------------------------------------------------------------------


def test_text_encoder_outputs():
    enc = TextEncoder(30, word_dim=8, embedding_dim=D).eval()
    tokens, lengths = text_inputs()
    out = enc(tokens, lengths)
    assert out.words.shape == (4, D, 6) and out.sentence.shape == (4, D)
    assert torch.equal(out.mask, tokens == 0)
    for i, n in enumerate(lengths.tolist()):
        assert torch.all(out.words[i, :, n:] == 0)
        # the sentence is the forward pass's last step and the backward pass's first
        torch.testing.assert_close(out.sentence[i, : D // 2], out.words[i, : D // 2, n - 1])
        torch.testing.assert_close(out.sentence[i, D // 2 :], out.words[i, D // 2 :, 0])
    # a caption's features do not depend on its batch mates or on trailing padding
    single = enc(tokens[1:2, : lengths[1]], lengths[1:2])
    torch.testing.assert_close(single.sentence, out.sentence[1:2])
    torch.testing.assert_close(single.words, out.words[1:2, :, : lengths[1]])


def test_text_encoder_batch_width_is_the_longest_caption():
    enc = TextEncoder(30, word_dim=8, embedding_dim=D).eval()
    tokens = torch.tensor([[3, 4, 0, 0, 0], [5, 0, 0, 0, 0]])
    out = enc(tokens, torch.tensor([2, 1]))
    assert out.words.shape == (2, D, 2) and out.mask.tolist() == [[False, False], [False, True]]
    with pytest.raises(ValueError, match="lengths"):
        enc(tokens, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="lengths"):
        enc(tokens, torch.tensor([6, 1]))


# --- image encoders ------------------------------------------------------------------------------


def test_cnn_image_encoder_shapes_and_resize():
    enc = CNNImageEncoder(D, input_size=32, channels=4)
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.regions.shape == (2, D, 4, 4) and out.image.shape == (2, D)
    assert enc(torch.randn(2, 3, 64, 64)).regions.shape == (2, D, 4, 4)


def test_cnn_image_encoder_averages_larger_images_down():
    """A 4x larger image is box-averaged to the encoder's size (bilinear would read 2 of every 4
    pixels); a size that is no multiple is resized bilinearly."""
    enc = CNNImageEncoder(D, input_size=32, channels=4).eval()
    big = torch.randn(2, 3, 128, 128)
    small = big.unflatten(2, (32, 4)).unflatten(4, (32, 4)).mean(dim=(3, 5))
    assert torch.allclose(enc(big).image, enc(small).image, atol=1e-5)
    odd = torch.randn(2, 3, 48, 48)
    resized = F.interpolate(odd, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(enc(odd).image, enc(resized).image, atol=1e-6)


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    return InceptionImageEncoder(D)


def test_inception_encoder_shapes_and_frozen_trunk(inception):
    out = inception(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.regions.shape == (2, D, 17, 17) and out.image.shape == (2, D)
    (out.regions.mean() + out.image.mean()).backward()
    trainable = {n for n, p in inception.named_parameters() if p.requires_grad}
    assert trainable == {"region_proj.weight", "global_proj.weight", "global_proj.bias"}
    assert all(inception.get_parameter(n).grad is not None for n in trainable)


def test_inception_weights_load_from_a_torchvision_state_dict(inception, tmp_path):
    from torchvision.models.inception import Inception3

    torch.manual_seed(1)
    reference = Inception3(aux_logits=True, init_weights=False)
    path = tmp_path / "inception_v3_google.pth"
    torch.save(reference.state_dict(), path)
    inception.load_inception_weights(path)
    assert torch.equal(inception.inception["Mixed_7c"].branch_pool.conv.weight,
                       reference.Mixed_7c.branch_pool.conv.weight)  # fmt: skip
    # files saved before PyTorch 0.4.1 (the release's Inception download) lack num_batches_tracked
    old = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, path)
    inception.load_inception_weights(path)
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ModelError, match="not an Inception-v3 state dict"):
        inception.load_inception_weights(path)


# --- gradients -----------------------------------------------------------------------------------


def _assert_all_grads(module: torch.nn.Module) -> None:
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    zero = [
        n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0
    ]
    assert not zero, f"zero gradient at {zero}"


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    g = tiny_generator(stages=3, residual_blocks=2)
    enc = TextEncoder(30, word_dim=8, embedding_dim=D)
    img = CNNImageEncoder(D, input_size=64, channels=4)
    discs = [Discriminator(s, df=2, embedding_dim=D) for s in (16, 32, 64)]
    tokens, lengths = text_inputs()
    text = enc(tokens, lengths)
    out = g(torch.randn(4, 8), text.sentence, text.words, text.mask)
    loss = sum(im.square().mean() for im in out.images) + out.mu.mean() + out.logvar.mean()
    feats = img(out.images[-1])
    loss = loss + feats.regions.mean() + feats.image.mean()
    for disc, image in zip(discs, out.images, strict=True):
        h = disc.features(image)
        loss = loss + disc.unconditional(h).mean() + disc.conditional(h, text.sentence).mean()
    loss.backward()
    for module in (g, enc, img, *discs):
        _assert_all_grads(module)


# --- deterministic inference ---------------------------------------------------------------------


def test_seed_fixes_all_noise_and_use_mean_removes_epsilon():
    g = tiny_generator().eval()
    _, sentence, words, mask = generator_inputs()
    a, b = sample_noise(3, 8, 6, seed=5), sample_noise(3, 8, 6, seed=5)
    assert torch.equal(a.z, b.z) and torch.equal(a.ca, b.ca)
    assert not torch.equal(a.z, sample_noise(3, 8, 6, seed=6).z)
    first = g(a.z, sentence, words, mask, ca_noise=a.ca).images[-1]
    again = g(b.z, sentence, words, mask, ca_noise=b.ca).images[-1]
    assert torch.equal(first, again)
    other_eps = g(a.z, sentence, words, mask, ca_noise=torch.randn(3, 6)).images[-1]
    assert not torch.allclose(first, other_eps)  # the release's sampling: eps changes the image
    mean1 = g(a.z, sentence, words, mask, ca_noise=a.ca, use_mean=True)
    mean2 = g(a.z, sentence, words, mask, ca_noise=torch.randn(3, 6), use_mean=True)
    assert torch.equal(mean1.images[-1], mean2.images[-1])
    mean3 = g(a.z, sentence, words, mask, use_mean=True)
    torch.testing.assert_close(mean3.images[-1], mean1.images[-1])


def test_generator_without_word_attention_sees_the_sentence_only():
    """The ablation's generator: refinement stages ignore the words, follow the sentence, and
    report a uniform attention over the caption's real words."""
    from attngan.models.generator import Generator

    torch.manual_seed(0)
    g = Generator(stages=2, base_size=16, gf=8, residual_blocks=1, embedding_dim=16,
                  word_attention=False).eval()  # fmt: skip
    z, sentence = torch.randn(2, 100), torch.randn(2, 16)
    mask = torch.tensor([[False, False, False, True], [False, False, False, False]])
    out = g(z, sentence, torch.randn(2, 16, 4), mask, use_mean=True)
    other_words = g(z, sentence, torch.randn(2, 16, 4), mask, use_mean=True)
    torch.testing.assert_close(out.images[-1], other_words.images[-1])
    other_sentence = g(z, sentence + 1, torch.randn(2, 16, 4), mask, use_mean=True)
    assert not torch.allclose(out.images[-1], other_sentence.images[-1])
    attention = out.attention[0]
    assert attention.shape == (2, 4, 16, 16)
    torch.testing.assert_close(attention[0, :, 0, 0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))
    torch.testing.assert_close(attention[1, :, 5, 7], torch.full((4,), 0.25))
    assert not any("attention" in name for name, _ in g.named_parameters())


def test_folding_batchnorm_keeps_the_eval_outputs():
    from attngan.models.layers import fold_batchnorm

    torch.manual_seed(0)
    g = tiny_generator(stages=3)
    with torch.no_grad():  # statistics a trained model might hold, not the initial 0 and 1
        for m in g.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0, 0.1)
    g.eval()
    folded = fold_batchnorm(g)
    bns = [m for m in folded.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert not bns and any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    z, sentence, words, mask = generator_inputs()
    ca = torch.randn(3, 6)
    with torch.no_grad():
        a = g(z, sentence, words, mask, ca_noise=ca)
        b = folded(z, sentence, words, mask, ca_noise=ca)
    for x, y in zip(a.images + a.attention, b.images + b.attention, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5)
    assert g.training is False and next(g.parameters()).requires_grad  # the original untouched


# --- switches beyond the release (off by default) -----------------------------------------------


def test_unconditional_generator_ignores_the_text():
    g = tiny_generator(conditional=False).eval()
    z, sentence, words, mask = generator_inputs()
    ca = torch.randn(3, 6)
    a = g(z, sentence, words, mask, ca_noise=ca).images
    b = g(z, sentence + 3, torch.randn_like(words), mask, ca_noise=ca).images
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    assert not torch.allclose(a[-1], g(torch.randn_like(z), sentence, words, mask, ca_noise=ca)
                              .images[-1])  # fmt: skip
    conditional = tiny_generator().eval()
    c = conditional(z, sentence + 3, words, mask, ca_noise=ca).images[-1]
    assert not torch.allclose(conditional(z, sentence, words, mask, ca_noise=ca).images[-1], c)


def test_ca_sample_false_conditions_on_the_mean_in_training_too():
    torch.manual_seed(0)
    g = tiny_generator(ca_sample=False).train()
    z, sentence, words, mask = generator_inputs()
    a = g(z, sentence, words, mask, ca_noise=torch.randn(3, 6))
    b = g(z, sentence, words, mask, ca_noise=torch.randn(3, 6))
    torch.testing.assert_close(a.images[-1], b.images[-1])
    torch.manual_seed(0)
    sampled = tiny_generator().train()
    c = sampled(z, sentence, words, mask, ca_noise=torch.randn(3, 6))
    d = sampled(z, sentence, words, mask, ca_noise=torch.randn(3, 6))
    assert not torch.allclose(c.images[-1], d.images[-1])


def test_ca_norm_makes_mu_independent_of_the_sentence_scale_and_adds_no_weights():
    torch.manual_seed(0)
    normed = tiny_generator(ca_norm=True).eval()
    torch.manual_seed(0)
    plain = tiny_generator().eval()
    _, sentence, _, _ = generator_inputs()
    small = normed.ca(0.2 * sentence, use_mean=True).mu
    torch.testing.assert_close(small, normed.ca(sentence, use_mean=True).mu, atol=1e-3, rtol=1e-3)
    # without it mu shrinks with the sentence: the caption's share of c starts at the encoder's
    # scale; with it, mu is as large as the plain layer's mu of a standardised sentence
    assert plain.ca(0.2 * sentence, use_mean=True).mu.std() < 0.5 * small.std()
    standard = torch.nn.functional.layer_norm(sentence, sentence.shape[-1:])
    torch.testing.assert_close(normed.ca(sentence, use_mean=True).mu,
                               plain.ca(standard, use_mean=True).mu)  # fmt: skip
    assert normed.state_dict().keys() == plain.state_dict().keys()
    assert build_generator(load_config("shapes").model).ca.norm  # the shapes preset's choice
    assert not build_generator(load_config("shapes", ["model.ca_norm=false"]).model).ca.norm
    assert not any(load_config(name).model.ca_norm for name in ("birds", "coco"))  # the release


def test_initial_attention_lets_the_first_stage_read_the_words():
    torch.manual_seed(0)
    g = tiny_generator(initial_attention=True).eval()
    plain = tiny_generator().eval()
    z, sentence, words, mask = generator_inputs()
    ca = torch.randn(3, 6)
    other = words.clone()
    other[0, :, 0] += 2.0  # sample 0's first word (a real word)
    for net, moves in ((g, True), (plain, False)):
        first = net(z, sentence, words, mask, ca_noise=ca).images[0]
        second = net(z, sentence, other, mask, ca_noise=ca).images[0]
        assert torch.allclose(first[1:], second[1:])  # the other samples are untouched
        assert moves != torch.allclose(first[0], second[0])
    # padded words never reach the first stage: sample 2 has one real word
    padded = words.clone()
    padded[2, :, 1:] = 9.0
    torch.testing.assert_close(g(z, sentence, padded, mask, ca_noise=ca).images[0],
                               g(z, sentence, words, mask, ca_noise=ca).images[0])  # fmt: skip
    extra = {n for n, _ in g.named_parameters()} - {n for n, _ in plain.named_parameters()}
    assert extra == {"stages.0.attention.word_proj.weight"}


def test_generator_switches_come_from_the_config():
    config = load_config("shapes", ["model.conditional=false", "model.ca_sample=false",
                                    "model.initial_attention=true"])  # fmt: skip
    g = build_generator(config.model)
    assert not g.conditional and not g.ca.sample and g.stages[0].attention is not None
    plain = build_generator(load_config("shapes").model)
    assert plain.conditional and plain.ca.sample and plain.stages[0].attention is None


# --- train.fast_layers and channels-last training: the plain layers' values and gradients -------

CL = torch.channels_last


def _grads(out: torch.Tensor, inputs, seed: int = 1) -> list[torch.Tensor]:
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return list(torch.autograd.grad(out, inputs, grad))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_transposed_up_block_is_upsampling_then_conv(layout):
    from attngan.models.layers import UpBlock

    torch.manual_seed(0)
    fmt = CL if layout == "channels_last" else torch.contiguous_format
    plain = UpBlock(6, 4).double().to(memory_format=fmt)
    fast = UpBlock(6, 4).double().to(memory_format=fmt)
    fast.load_state_dict(plain.state_dict())
    fast.transposed = True
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64).to(memory_format=fmt).requires_grad_(True)
    outs, grads = [], []
    for block in (plain, fast):
        out = block(x)
        outs.append(out)
        grads.append(_grads(out, [x, *block.parameters()]))
    torch.testing.assert_close(outs[1], outs[0])
    assert outs[1].is_contiguous(memory_format=fmt)
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(b, a)
    torch.testing.assert_close(fast.bn.running_var, plain.bn.running_var)
    assert fast.state_dict().keys() == plain.state_dict().keys()  # the release's keys


@pytest.mark.parametrize("x_layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("w_layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(8, 8, 12, 4, 2, 1), (8, 4, 6, 3, 1, 1), (5, 7, 3, 3, 2, 0)])
def test_conv2d_gemm_is_conv2d(x_layout, w_layout, shape):
    from attngan.models.layers import conv2d_gemm

    cin, side, cout, k, stride, pad = shape
    fx = CL if x_layout == "channels_last" else torch.contiguous_format
    fw = CL if w_layout == "channels_last" else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, cin, side, side, generator=gen, dtype=torch.float64)
    w = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64)
    x, w = x.to(memory_format=fx).requires_grad_(True), w.to(memory_format=fw).requires_grad_(True)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64, requires_grad=True)
    plain = torch.nn.functional.conv2d(x, w, bias, stride, pad)
    fast = conv2d_gemm(x, w, bias, stride, pad)
    torch.testing.assert_close(fast, plain)
    assert fast.is_contiguous(memory_format=fx)
    for a, b in zip(_grads(plain, [x, w, bias]), _grads(fast, [x, w, bias]), strict=True):
        torch.testing.assert_close(b, a)
    conv2d_gemm(x, w, bias, stride, pad).sum().backward()
    assert w.grad.stride() == w.stride()  # the layout .grad keeps: no copy


def test_conv_block_gemm_runs_the_large_small_output_convolutions(monkeypatch):
    from attngan.models import layers

    calls, real = [], layers.conv2d_gemm
    monkeypatch.setattr(layers, "conv2d_gemm", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    disc = layers.use_fast_layers(Discriminator(64, df=4, embedding_dim=D))
    plain = Discriminator(64, df=4, embedding_dim=D)
    plain.load_state_dict(disc.state_dict())
    images, sentence = torch.randn(2, 3, 64, 64), torch.randn(2, D)
    disc(images, sentence)
    assert not calls  # the test widths' weights are below GEMM_MIN_WEIGHT
    monkeypatch.setattr(layers, "GEMM_MIN_WEIGHT", 0)
    out = disc(images, sentence)
    # the 4x4-output convolutions: the last down-step and the conditional head's joint conv
    assert len(calls) == 2
    for a, b in zip(plain(images, sentence), out, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_gemm_takes_the_birds_discriminators_deep_layers():
    from attngan.models import layers

    chosen = []
    for side in (64, 128, 256):
        with torch.device("meta"):
            disc = layers.use_fast_layers(Discriminator(side, 64, 256, initialize=False))
        x, names = torch.empty(1, 3, side, side), []
        for name, block in [*disc.down.named_children(), *disc.squeeze.named_children()]:
            if block._use_gemm(x):
                names.append(name)
            x = torch.empty(block.conv(x.to("meta")).shape)
        chosen.append(names)
    # 4x4 outputs of >= 4 M weights: 512 -> 1024 and 1024 -> 2048 (4x4 kernels), 2048 -> 1024
    # and 1024 -> 512 (3x3)
    assert chosen == [[], ["4", "0"], ["5", "0", "1"]]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_glu_keeps_the_gradients_layout(layout):
    from attngan.models.layers import glu

    fmt = CL if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64).to(memory_format=fmt).requires_grad_(True)
    plain = torch.nn.functional.glu(x, dim=1)
    out = glu(x)
    torch.testing.assert_close(out, plain)
    (a,), (b,) = _grads(plain, [x]), _grads(out, [x])
    torch.testing.assert_close(b, a)
    assert b.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fused_batchnorm_glu_is_batchnorm_then_glu(layout):
    from attngan.models.layers import batchnorm_glu

    fmt = CL if layout == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    plain, fused = torch.nn.BatchNorm2d(6).double(), torch.nn.BatchNorm2d(6).double()
    with torch.no_grad():
        plain.weight.normal_(1, 0.3), plain.bias.normal_(0, 0.3)
    fused.load_state_dict(plain.state_dict())
    for _ in range(2):  # the running statistics follow the same batches
        x = torch.randn(3, 6, 5, 4, dtype=torch.float64).mul(2).add(1).to(memory_format=fmt)
        x.requires_grad_(True)
        a = torch.nn.functional.glu(plain(x), dim=1)
        b = batchnorm_glu(fused, x, fused=True)
        assert b.grad_fn.name().startswith("_BatchNormGLU")
        torch.testing.assert_close(b, a)
        grads = _grads(b, [x, *fused.parameters()])
        for ga, gb in zip(_grads(a, [x, *plain.parameters()]), grads, strict=True):
            torch.testing.assert_close(gb, ga)
        assert grads[0].is_contiguous(memory_format=fmt)
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[key], value)  # incl. num_batches_tracked
    # where the fused path does not apply, the plain layers run
    fused.eval()
    with torch.no_grad():
        expected = torch.nn.functional.glu(plain.eval()(x), dim=1)
        torch.testing.assert_close(batchnorm_glu(fused, x, fused=True), expected)
    other = type("OtherNorm", (torch.nn.BatchNorm2d,), {})(6).double()  # e.g. SyncBatchNorm
    assert "_BatchNormGLU" not in batchnorm_glu(other, x, fused=True).grad_fn.name()
    assert "_BatchNormGLU" in batchnorm_glu(fused.train(), x, fused=True).grad_fn.name()
    with torch.autocast("cpu", torch.bfloat16):
        bn = torch.nn.BatchNorm2d(6)
        assert "_BatchNormGLU" not in batchnorm_glu(bn, x.float(), fused=True).grad_fn.name()


@pytest.mark.parametrize("legacy", [False, True])
def test_word_attention_on_channels_last_features(legacy):
    torch.manual_seed(0)
    attention = WordAttention(6, D, legacy_mask_order=legacy).double()
    h = torch.randn(3, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    _, _, words, mask = generator_inputs()
    words = words.double()
    context, att = attention(h, words, mask)
    h_cl = h.detach().to(memory_format=CL).requires_grad_(True)
    context_cl, att_cl = attention(h_cl, words, mask)
    torch.testing.assert_close(context_cl, context)
    torch.testing.assert_close(att_cl, att)
    assert context_cl.is_contiguous(memory_format=CL)
    (a,), (b,) = _grads(context, [h]), _grads(context_cl, [h_cl])
    torch.testing.assert_close(b, a)


def test_folded_inception_encoder_gives_the_same_features_and_image_gradients():
    from attngan.models.layers import fold_batchnorm

    torch.manual_seed(0)
    encoder = InceptionImageEncoder(D)
    with torch.no_grad():  # statistics a trained trunk holds, not the initial 0 and 1
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    encoder = encoder.requires_grad_(False).eval().double()  # float64: the gradient is small
    folded = fold_batchnorm(encoder)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    images = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    plain, fast = encoder(images), folded(images)
    for a, b in zip(plain, fast, strict=True):
        torch.testing.assert_close(b, a)
    (ga,) = torch.autograd.grad(plain.image.sum() + plain.regions.sum(), images)
    (gb,) = torch.autograd.grad(fast.image.sum() + fast.regions.sum(), images)
    torch.testing.assert_close(gb, ga)


def test_bilinear_up_block_upsamples_smoothly_in_every_mode():
    """``model.upsample=bilinear``: the conv sees a bilinear x2 map (no 2x2 pixel blocks), the
    same with the fast layers switched on (their transposed form is nearest's only), and the
    generator and the config pass the choice on."""
    from attngan.errors import ConfigError
    from attngan.models.layers import UpBlock, use_fast_layers

    torch.manual_seed(0)
    block = UpBlock(3, 2, mode="bilinear").eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        want = F.glu(block.bn(block.conv(F.interpolate(x, scale_factor=2.0, mode="bilinear"))), 1)
        got = block(x)
        nearest = UpBlock(3, 2).eval()
        nearest.load_state_dict(block.state_dict())
        other = nearest(x)
        use_fast_layers(block)
        fast = block(x)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(fast, got, atol=1e-6)
    assert not torch.allclose(other, got, atol=1e-3)
    with pytest.raises(ValueError, match="mode"):
        UpBlock(3, 2, mode="bicubic")
    config = load_config("shapes", ["model.upsample=bilinear"])
    generator = build_generator(config.model)
    ups = [m for m in generator.modules() if isinstance(m, UpBlock)]
    assert len(ups) == 4 and all(m.mode == "bilinear" for m in ups)  # 3 initial + 1 refinement
    assert all(m.mode == "nearest" for m in build_generator(load_config("shapes").model).modules()
               if isinstance(m, UpBlock))  # fmt: skip
    with pytest.raises(ConfigError, match="model.upsample"):
        load_config("shapes", ["model.upsample=bicubic"])


def test_feature_discriminator_reads_the_frozen_encoder_without_owning_it():
    from attngan.models.discriminator import FeatureDiscriminator

    enc = CNNImageEncoder(D, input_size=32, channels=4).eval().requires_grad_(False)
    maps = enc.feature_maps(torch.randn(2, 3, 64, 64))  # resized to 32 first
    assert [tuple(m.shape[1:]) for m in maps] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4)]
    x = torch.randn(2, 3, 32, 32)  # the last map is what the encoder's regions are made of
    torch.testing.assert_close(enc.region_proj(enc.feature_maps(x)[-1]), enc(x).regions)
    torch.manual_seed(0)
    critic = FeatureDiscriminator(enc, embedding_dim=6, width=5).train()
    # the encoder is neither trained nor saved with the critic, and stays in eval mode
    assert not any(k.startswith("_encoder") for k in critic.state_dict())
    own = {id(p) for p in critic.parameters()}
    assert not own & {id(p) for p in enc.parameters()}
    assert not enc.training
    images = torch.randn(3, 3, 32, 32, requires_grad=True)
    sentence = torch.randn(3, 6)
    out = critic(images, sentence)
    assert out.unconditional.shape == (3,) and out.conditional.shape == (3,)
    assert critic.features(images).shape == (3, 4 * 5, 4, 4)
    (out.unconditional.sum() + out.conditional.sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # through the frozen encoder
    assert all(p.grad is None for p in enc.parameters())
    other = critic(images.detach(), torch.randn(3, 6)).conditional
    assert not torch.allclose(other, out.conditional.detach())  # the sentence counts
    with pytest.raises(ValueError, match="CNN image encoder"):
        FeatureDiscriminator(torch.nn.Linear(2, 2), embedding_dim=6)


def test_contrastive_head_leaves_the_discriminator_as_it_was():
    # the head is built last: the release's weights draw the same random numbers with it
    torch.manual_seed(3)
    plain = Discriminator(32, df=4, embedding_dim=8).state_dict()
    torch.manual_seed(3)
    headed = Discriminator(32, df=4, embedding_dim=8, contrastive=True).state_dict()
    assert set(headed) - set(plain) == {"contrast.weight", "contrast.bias"}
    assert all(torch.equal(plain[k], headed[k]) for k in plain)
    assert headed["contrast.weight"].shape == (8, 8 * 4)
