"""Import of the release's checkpoints: release-layout state dicts written from our own modules
(the release's key names and shapes, SPEC §9) import back to the same outputs."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
import torch

from attngan import legacy
from attngan.checkpoints import load_model
from attngan.cli import main
from attngan.config import load_config
from attngan.errors import ModelError
from attngan.models import (
    build_discriminators,
    build_generator,
    build_image_encoder,
    build_text_encoder,
    sample_noise,
)
from attngan.text import read_release_captions

from .conftest import CUB, needs_cub

WORDS = ["<end>", "a", "red", "bird", "with", "blue", "wings", "small", "beak"]
TINY = [
    "model.stages=2",
    "model.gf=4",
    "model.residual_blocks=1",
    "model.embedding_dim=16",
    "model.word_dim=8",
    "model.z_dim=8",
    "model.condition_dim=6",
    "model.df=2",
    "model.legacy_mask_order=true",
]


def write_captions_pickle(path: Path, words: list[str]) -> Path:
    """A captions.pickle in the release's layout, as Python 2 pickled it (protocol 2)."""
    ixtoword = dict(enumerate(words))
    wordtoix = {w: i for i, w in ixtoword.items()}
    with open(path, "wb") as f:
        pickle.dump([[[1, 2, 3]], [[3, 4, 5, 6]], ixtoword, wordtoix], f, protocol=2)
    return path


def randomize_batchnorm(module: torch.nn.Module, seed: int = 0) -> None:
    """Give BatchNorm running statistics non-default values, so eval outputs depend on them."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def outputs(generator, text_encoder, tokens, lengths, seed=3):
    with torch.no_grad():
        text = text_encoder(tokens, lengths)
        noise = sample_noise(tokens.size(0), generator.z_dim, generator.condition_dim, seed=seed)
        out = generator(noise.z, text.sentence, text.words, text.mask, ca_noise=noise.ca)
    return text, out


@pytest.fixture
def release(tmp_path):
    """Release-layout files from fresh modules: netG (PyTorch's legacy file format, as the
    release's PyTorch wrote it, without num_batches_tracked), text encoder, captions.pickle."""
    torch.manual_seed(0)
    cfg = load_config("birds", TINY)
    g, t = build_generator(cfg.model), build_text_encoder(cfg.model, len(WORDS))
    randomize_batchnorm(g)
    g.eval(), t.eval()
    files = {
        "generator": tmp_path / "netG_epoch_600.pth",
        "text_encoder": tmp_path / "text_encoder600.pth",
        "captions": write_captions_pickle(tmp_path / "captions.pickle", WORDS),
    }
    g_state = legacy.to_release_state("generator", g)
    torch.save(g_state, files["generator"], _use_new_zipfile_serialization=False)
    torch.save(legacy.to_release_state("text_encoder", t), files["text_encoder"])
    return cfg, g, t, files


def _import_args(files, out):
    return [
        "import-release",
        "--generator", str(files["generator"]),
        "--text-encoder", str(files["text_encoder"]),
        "--captions", str(files["captions"]),
        "--out", str(out),
    ]  # fmt: skip


def test_release_keys_follow_the_release_names(release):
    _, _, _, files = release
    state = torch.load(files["generator"], weights_only=True)
    for key in (
        "ca_net.fc.weight",
        "h_net1.fc.0.weight",
        "h_net1.fc.1.running_var",
        "h_net1.upsample4.1.weight",
        "h_net1.upsample4.2.bias",
        "h_net2.att.conv_context.weight",
        "h_net2.residual.0.block.3.weight",
        "h_net2.upsample.1.weight",
        "img_net1.img.0.weight",
        "img_net2.img.0.weight",
    ):
        assert key in state, key
    assert state["h_net2.att.conv_context.weight"].shape == (4, 16, 1, 1)  # a 1x1 conv there
    assert not any(k.endswith("num_batches_tracked") for k in state)
    text = torch.load(files["text_encoder"], weights_only=True)
    assert set(text) >= {"encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse"}


def test_import_round_trip_gives_the_same_outputs(release, tmp_path, capsys):
    cfg, g, t, files = release
    assert main(_import_args(files, tmp_path / "model")) == 0
    model = load_model(tmp_path / "model", kind="attngan")
    # sizes are inferred from the weights; df (no discriminator given) from the preset
    assert dataclasses.replace(model.config.model, df=2, inception_align_corners=False) == cfg.model
    assert model.config.model.legacy_mask_order  # the release's masking, for parity
    assert model.config.model.inception_align_corners  # PyTorch 0.3's bilinear resize
    assert model.vocab.words == WORDS
    assert model.info["imported_from"]["generator"] == "netG_epoch_600.pth"
    tokens = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [8, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 5, 1])
    want_text, want = outputs(g, t, tokens, lengths)
    got_text, got = outputs(model["generator"], model["text_encoder"], tokens, lengths)
    torch.testing.assert_close(got_text.sentence, want_text.sentence, rtol=0, atol=1e-6)
    for a, b in zip(got.images + got.attention, want.images + want.attention, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_fix_mask_option(release, tmp_path):
    _, _, _, files = release
    assert main([*_import_args(files, tmp_path / "model"), "--fix-mask"]) == 0
    assert not load_model(tmp_path / "model").config.model.legacy_mask_order


def test_the_release_settings_are_logged_and_an_explicit_set_wins(release, tmp_path, capsys):
    _, _, _, files = release
    assert main(_import_args(files, tmp_path / "release")) == 0
    err = capsys.readouterr().err
    assert "model.legacy_mask_order=true, model.inception_align_corners=true (the release's" in err
    argv = [*_import_args(files, tmp_path / "mine"), "--set", "model.legacy_mask_order=false"]
    assert main([*argv, "model.inception_align_corners=false"]) == 0
    err = capsys.readouterr().err
    assert (
        "model.legacy_mask_order=false (yours), model.inception_align_corners=false (yours)" in err
    )
    settings = load_model(tmp_path / "mine").config.model
    assert not settings.legacy_mask_order and not settings.inception_align_corners
    argv = [*_import_args(files, tmp_path / "true"), "--set", "model.legacy_mask_order=true"]
    assert main([*argv, "--fix-mask"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attngan: error: --fix-mask") and err.count("\n") == 1, err
    assert not (tmp_path / "true").exists()


def test_dataparallel_prefix_is_accepted(release, tmp_path):
    _, _, _, files = release
    state = torch.load(files["generator"], weights_only=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, files["generator"])
    assert main(_import_args(files, tmp_path / "model")) == 0


def _expect_error(files, tmp_path, capsys, *needles):
    assert main(_import_args(files, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("attngan: error:") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out" / "model.json").exists()


def test_truncated_checkpoint(release, tmp_path, capsys):
    _, _, _, files = release
    data = files["generator"].read_bytes()
    files["generator"].write_bytes(data[: len(data) // 2])
    _expect_error(files, tmp_path, capsys, "cannot read", "netG_epoch_600.pth")


def test_checkpoint_of_the_wrong_kind(release, tmp_path, capsys):
    _, _, _, files = release
    files["generator"], files["text_encoder"] = files["text_encoder"], files["generator"]
    _expect_error(files, tmp_path, capsys, "expected a release generator", "text encoder")


def test_not_a_release_checkpoint(release, tmp_path, capsys):
    _, _, _, files = release
    torch.save({"weight": torch.zeros(2)}, files["generator"])
    _expect_error(files, tmp_path, capsys, "not a checkpoint of the release")


def test_vocabulary_size_mismatch(release, tmp_path, capsys):
    _, _, _, files = release
    write_captions_pickle(files["captions"], WORDS[:-2])
    _expect_error(files, tmp_path, capsys, "vocabulary-size mismatch", "9 words", "7")


def test_shape_mismatch_names_the_key_and_both_shapes(release, tmp_path, capsys):
    _, _, _, files = release
    state = torch.load(files["generator"], weights_only=True)
    state["h_net2.residual.0.block.0.weight"] = torch.zeros(16, 4, 3, 3)
    torch.save(state, files["generator"])
    _expect_error(
        files,
        tmp_path,
        capsys,
        "'h_net2.residual.0.block.0.weight'",
        "has shape [16, 4, 3, 3], expected [16, 8, 3, 3]",
    )


def test_missing_and_unexpected_keys(release, tmp_path, capsys):
    _, _, _, files = release
    state = torch.load(files["generator"], weights_only=True)
    good = dict(state)
    del state["h_net2.upsample.2.running_mean"]
    torch.save(state, files["generator"])
    _expect_error(files, tmp_path, capsys, "missing weight 'h_net2.upsample.2.running_mean'")
    torch.save({**good, "h_net9.extra": torch.zeros(1)}, files["generator"])
    _expect_error(files, tmp_path, capsys, "unexpected weight 'h_net9.extra'")


def test_discriminators_round_trip():
    cfg = load_config("birds", [*TINY, "model.stages=3"])
    for disc in build_discriminators(cfg.model):
        randomize_batchnorm(disc)
        state = legacy.to_release_state("discriminator", disc)
        assert "COND_DNET.jointConv.0.weight" in state and "img_code_s16.8.weight" in state
        copy = build_discriminators(cfg.model)[[64, 128, 256].index(disc.image_size)]
        legacy.from_release_state("discriminator", copy, state, "netD")
        images, sentence = torch.randn(2, 3, disc.image_size, disc.image_size), torch.randn(2, 16)
        a, b = disc.eval()(images, sentence), copy.eval()(images, sentence)
        assert torch.equal(a.conditional, b.conditional)
        assert torch.equal(a.unconditional, b.unconditional)


@needs_cub
def test_birds_sized_release_model_with_the_real_vocabulary_imports_and_generates(tmp_path):
    """The birds config at full size (3 stages to 256 px, 5,450 words from the real
    captions.pickle, the Inception image encoder) through release-layout files."""
    torch.manual_seed(0)
    cfg = load_config(
        "birds", ["model.legacy_mask_order=true", "model.inception_align_corners=true"]
    )
    vocab = read_release_captions(CUB / "captions.pickle").vocab
    g, t = build_generator(cfg.model), build_text_encoder(cfg.model, len(vocab))
    image_encoder = build_image_encoder(cfg.model)
    for m in (g, image_encoder):
        randomize_batchnorm(m)
    files = {
        "generator": tmp_path / "bird_AttnGAN2.pth",
        "text_encoder": tmp_path / "text_encoder200.pth",
        "image_encoder": tmp_path / "image_encoder200.pth",
    }
    for component, module in (
        ("generator", g),
        ("text_encoder", t),
        ("image_encoder", image_encoder),
    ):
        state = legacy.to_release_state(component, module)
        torch.save(state, files[component], _use_new_zipfile_serialization=False)
    out = legacy.import_release(tmp_path / "bird", captions=CUB / "captions.pickle", **files)
    model = load_model(out, kind="attngan")
    assert model.config.model == cfg.model and len(model.vocab) == 5450
    caption = model.vocab.encode("this bird has a red crown and short beak")
    tokens = torch.tensor([caption.ids])
    lengths = torch.tensor([len(caption.ids)])
    g.eval(), t.eval(), image_encoder.eval()
    _, want = outputs(g, t, tokens, lengths)
    _, got = outputs(model["generator"], model["text_encoder"], tokens, lengths)
    assert [tuple(im.shape) for im in got.images] == [(1, 3, s, s) for s in (64, 128, 256)]
    for a, b in zip(got.images + got.attention, want.images + want.attention, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    images = got.images[-1]
    with torch.no_grad():
        a, b = model["image_encoder"](images), image_encoder(images)
    torch.testing.assert_close(a.regions, b.regions, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=1e-5)


def test_release_key_of_an_unknown_key():
    with pytest.raises(KeyError, match="no release name"):
        legacy.release_key(legacy._TEXT_RULES, "something.else")


def test_import_with_discriminators_reads_df(release, tmp_path):
    cfg, _, _, files = release
    discs = build_discriminators(cfg.model)
    paths = []
    for i, disc in enumerate(discs):
        randomize_batchnorm(disc, seed=i)
        paths.append(tmp_path / f"netD{i}.pth")
        torch.save(legacy.to_release_state("discriminator", disc), paths[-1])
    args = [*_import_args(files, tmp_path / "model"), "--discriminators", *map(str, paths)]
    assert main(args) == 0
    model = load_model(tmp_path / "model")
    assert model.config.model.df == 2
    for mine, loaded in zip(discs, model["discriminators"], strict=True):
        assert torch.equal(mine.cond_logits.weight, loaded.cond_logits.weight)
    with pytest.raises(ModelError, match="2 stages but 1 discriminators"):
        legacy.import_release(tmp_path / "m2", discriminators=paths[:1], **files)


def test_release_damsm_encoders_import_alone_as_a_damsm_model(release, tmp_path, capsys):
    """Without --generator, the text and image encoders make a `damsm` model for GAN training."""
    cfg, _, t, files = release
    image_encoder = build_image_encoder(cfg.model)
    randomize_batchnorm(image_encoder)
    files["image_encoder"] = tmp_path / "image_encoder600.pth"
    torch.save(legacy.to_release_state("image_encoder", image_encoder), files["image_encoder"])
    args = _import_args(files, tmp_path / "damsm")
    args = args[:1] + args[3:] + ["--image-encoder", str(files["image_encoder"])]
    assert main(args) == 0
    model = load_model(tmp_path / "damsm", kind="damsm")
    assert model.config.model.embedding_dim == 16 and model.config.model.word_dim == 8
    assert set(model.modules) == {"text_encoder", "image_encoder"}
    assert model["image_encoder"].align_corners  # resizes to 299 px as PyTorch 0.3 did
    assert "generator" not in model.info["imported_from"]
    for mine, loaded in ((t, model["text_encoder"]), (image_encoder, model["image_encoder"])):
        a, b = mine.state_dict(), loaded.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    without = args[: args.index("--image-encoder")]
    assert main(without) == 2
    assert "give the image encoder" in capsys.readouterr().err
