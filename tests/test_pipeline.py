"""The inference pipeline, the attention figure and `attngan generate`, on a tiny random model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

import attngan.checkpoints
import attngan.pipeline
from attngan.checkpoints import build_component, save_model
from attngan.cli import main
from attngan.config import load_config
from attngan.errors import ModelError, VocabularyError
from attngan.models import Generator, Noise
from attngan.models.inference import RowChunks, TransposedUpBlock, inference_copy
from attngan.pipeline import GenerationOutput, Pipeline, image_seed
from attngan.text import Vocabulary, tokenize
from attngan.visualize import attention_figure

WORDS = "a red green blue circle square triangle at the top bottom left right of image small big"
RED = "a red circle at the top left"
BLUE = "a big blue square at the bottom"
GREEN = "green triangle"


@pytest.fixture(scope="module")
def config():
    overrides = [
        "model.base_size=16",
        "model.stages=2",
        "model.gf=8",
        "model.df=8",
        "model.embedding_dim=32",
        "model.word_dim=16",
        "model.cnn_channels=8",
        "data.max_words=8",
    ]
    return load_config("shapes", overrides)


@pytest.fixture(scope="module")
def models(config, tmp_path_factory):
    """An attngan model and a damsm model, random weights; returns their folders."""
    torch.manual_seed(0)
    vocab = Vocabulary.build([tokenize(WORDS)])
    root = tmp_path_factory.mktemp("models")
    text_encoder = build_component("text_encoder", config, len(vocab))
    modules = {
        "generator": build_component("generator", config, len(vocab)),
        "text_encoder": text_encoder,
    }
    gan = save_model(root / "gan", "attngan", config, vocab, modules)
    image_encoder = build_component("image_encoder", config, len(vocab))
    damsm_modules = {"text_encoder": text_encoder, "image_encoder": image_encoder}
    damsm = save_model(root / "damsm", "damsm", config, vocab, damsm_modules)
    return gan, damsm


@pytest.fixture(scope="module")
def pipe(models):
    return Pipeline.from_pretrained(models[0])


def _rows(out: GenerationOutput, caption: int) -> list[torch.Tensor]:
    keep = [n for n, c in enumerate(out.caption_index) if c == caption]
    return [stage[keep] for stage in out.images]


def _close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(x, y, atol=1e-5, rtol=0) for x, y in zip(a, b, strict=True))


# --- the pipeline


def test_output_shapes_and_order(pipe):
    out = pipe([RED, GREEN], num_images=2)
    assert len(out) == 4 and out.captions == [RED, RED, GREEN, GREEN]
    assert out.caption_index == [0, 0, 1, 1] and out.image_index == [0, 1, 0, 1]
    assert [tuple(x.shape) for x in out.images] == [(4, 3, 16, 16), (4, 3, 32, 32)]
    assert [tuple(a.shape) for a in out.attention] == [(4, 7, 16, 16)]
    assert out.tokens[0] == tokenize(RED) and out.tokens[2] == ["green", "triangle"]
    assert all(x.device.type == "cpu" and x.abs().max() <= 1 for x in out.images)
    sums = out.attention[0].sum(dim=1)  # over the words: 1 at every pixel; padding gets 0
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert out.attention[0][2:, 2:].abs().max() == 0
    assert len(set(out.seeds)) == 4 and out.seeds[3] == image_seed(0, 1, 1)
    assert [im.size for im in out.pil()] == [(32, 32)] * 4 and out.pil(0)[0].size == (16, 16)
    assert (
        out.attention_figure(2).size
        == attention_figure([x[2] for x in out.images], out.tokens[2], [out.attention[0][2]]).size
    )


def test_same_seed_same_images_other_seed_other_images(pipe):
    first, again, other = pipe(RED, 2, seed=3), pipe(RED, 2, seed=3), pipe(RED, 2, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first.images, again.images, strict=True))
    assert not torch.allclose(first.images[-1], other.images[-1])
    assert not torch.allclose(first.images[-1][0], first.images[-1][1])  # images of one caption
    fresh, other_fresh = pipe(RED, seed=None), pipe(RED, seed=None)  # a seed drawn and kept
    assert fresh.seed != other_fresh.seed
    assert _close(fresh.images, pipe(RED, seed=fresh.seed).images)


def test_images_do_not_depend_on_batch_size_or_other_captions(pipe):
    alone = pipe([RED, BLUE, GREEN], num_images=3, seed=7, batch_size=1)
    batched = pipe([RED, BLUE, GREEN], num_images=3, seed=7, batch_size=16)
    assert _close(alone.images, batched.images)
    assert _close(alone.attention, batched.attention)
    neighbours = pipe([GREEN, BLUE, "a small circle"], num_images=3, seed=7, batch_size=4)
    assert _close(_rows(neighbours, 1), _rows(alone, 1))
    assert not _close(_rows(neighbours, 0), _rows(alone, 0))


def test_use_mean_ignores_the_conditioning_noise(pipe, monkeypatch):
    mean, mean_again = pipe(RED, 2, use_mean=True), pipe(RED, 2, use_mean=True)
    sampled = pipe(RED, 2)
    assert all(torch.equal(a, b) for a, b in zip(mean.images, mean_again.images, strict=True))
    assert not torch.allclose(mean.images[-1], sampled.images[-1])

    def other_epsilon(*args, **kwargs):  # the same z, another epsilon
        z, ca = sample_noise(*args, **kwargs)
        return Noise(z, -ca)

    sample_noise = attngan.pipeline.sample_noise
    monkeypatch.setattr(attngan.pipeline, "sample_noise", other_epsilon)
    assert _close(pipe(RED, 2, use_mean=True).images, mean.images)
    assert not torch.allclose(pipe(RED, 2).images[-1], sampled.images[-1])


def test_unknown_words_are_dropped_and_reported(pipe, caplog):
    with caplog.at_level(logging.WARNING, logger="attngan.pipeline"):
        out = pipe(["a purple circle zzz", RED])
    assert out.tokens == [["a", "circle"], tokenize(RED)]
    assert out.unknown == [["purple", "zzz"], []]
    assert "caption 0: unknown words dropped: purple, zzz" in caplog.text


def test_long_captions_keep_their_first_words(pipe):
    words = tokenize("a big red circle at the top left of the image")
    out = pipe(" ".join(words))
    assert out.tokens == [words[:8]] and out.truncated == [words[8:]]
    assert out.attention[0].shape[1] == 8


@pytest.mark.parametrize(
    ("captions", "message"),
    [("", "empty caption"), ("purple zzz", "no known word"), ([RED, "..."], "empty caption")],
)
def test_unusable_captions_raise_vocabulary_errors(pipe, captions, message):
    with pytest.raises(VocabularyError, match=message):
        pipe(captions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"captions": []}, "no captions"),
        ({"captions": RED, "num_images": 0}, "num_images"),
        ({"captions": RED, "batch_size": 0}, "batch_size"),
        ({"captions": RED, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_errors(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_from_pretrained_refuses_missing_and_wrong_kind_models(models, tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        Pipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="not an AttnGAN generator model"):
        Pipeline.from_pretrained(models[1])


def test_networks_get_their_modes_back(pipe):
    pipe.generator.train()
    pipe(RED)
    assert pipe.generator.training and not pipe.text_encoder.training
    pipe.generator.eval()


# --- the attention figure


def _figure(stages: int, words: int, cell: int = 48) -> Image.Image:
    images = [torch.rand(3, 8 * 2**k, 8 * 2**k) * 2 - 1 for k in range(stages)]
    attention = [torch.rand(words + 2, 8 * 2**k, 8 * 2**k) for k in range(stages - 1)]
    return attention_figure(images, [f"w{k}" for k in range(words)], attention, cell=cell)


def test_attention_figure_grows_a_column_per_word_and_a_row_per_stage():
    one, two, eighteen = _figure(2, 1), _figure(2, 2), _figure(2, 18)
    step = two.width - one.width  # a cell and its gap
    assert 48 < step <= 56 and eighteen.width - one.width == 17 * step
    assert one.height == two.height == eighteen.height
    three_stages = _figure(3, 2)
    assert three_stages.width == two.width and three_stages.height - two.height == step
    assert one.width >= 2 * 48 and one.height >= 48
    assert _figure(3, 4, cell=96).height > 2 * 96


def test_attention_figure_rejects_mismatched_inputs():
    images = [torch.zeros(3, 8, 8), torch.zeros(3, 16, 16)]
    att = [torch.rand(3, 8, 8)]
    with pytest.raises(ValueError, match="need 1 attention maps"):
        attention_figure(images, ["a"], att + att)
    with pytest.raises(ValueError, match="T >= 4 words"):
        attention_figure(images, ["a", "b", "c", "d"], att)
    with pytest.raises(ValueError, match="at least 2 stages"):
        attention_figure(images[:1], ["a"], [])
    with pytest.raises(ValueError, match="no words"):
        attention_figure(images, [], att)


# --- attngan generate


def test_generate_writes_images_figures_and_captions(models, tmp_path, capsys):
    captions = tmp_path / "captions.txt"
    captions.write_text(f"# shapes\n{BLUE}\n\n  {GREEN}  \n")
    out = tmp_path / "generated"
    argv = ["generate", "--model", str(models[0]), "a purple circle", "--captions-file"]
    argv += [str(captions), "--num-images", "2", "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--batch-size", "3"]) == 0
    std = capsys.readouterr()
    assert std.out.strip() == str(out)
    assert "caption 0: unknown words dropped: purple" in std.err
    entries = json.loads((out / "captions.json").read_text())
    assert [e["caption"] for e in entries] == ["a purple circle"] * 2 + [BLUE] * 2 + [GREEN] * 2
    assert entries[0]["unknown"] == ["purple"] and entries[0]["tokens"] == ["a", "circle"]
    assert entries[5]["files"] == [
        "002-01-stage0-16px.png",
        "002-01-stage1-32px.png",
        "002-01-attention.png",
    ]
    for entry in entries:
        for name in entry["files"]:
            assert (out / name).is_file()
    with (
        Image.open(out / "001-00-stage0-16px.png") as small,
        Image.open(out / "001-00-stage1-32px.png") as large,
    ):
        assert small.size == (16, 16) and large.size == (32, 32)
    first = np.asarray(Image.open(out / "002-01-stage1-32px.png"), dtype=np.int16)
    assert main([*argv, "--batch-size", "1"]) == 0  # the same images, whatever the batch
    again = np.asarray(Image.open(out / "002-01-stage1-32px.png"), dtype=np.int16)
    assert np.abs(again - first).max() <= 1  # float rounding may flip a level


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/nowhere", RED], "model not found"),
        (["--model", "{damsm}", RED], "not an AttnGAN generator model"),
        (["--model", "{gan}", ""], "empty caption"),
        (["--model", "{gan}", "purple zzz"], "no known word"),
        (["--model", "{gan}", "--captions-file", "{tmp}/none.txt"], "captions file not found"),
        (["--model", "{gan}"], "no caption"),
    ],
)
def test_generate_errors_are_one_line(models, tmp_path, capsys, args, message):
    paths = {"tmp": tmp_path, "gan": models[0], "damsm": models[1]}
    argv = ["-q", "generate", *(a.format(**paths) for a in args), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attngan: error:") and message in err and len(err.splitlines()) == 1


def test_save_writes_the_files_it_returns(pipe, tmp_path):
    out = pipe([RED, GREEN])
    written = Pipeline.save(out, tmp_path / "new" / "folder")
    assert [p.name for p in written[:3]] == [
        "000-00-stage0-16px.png",
        "000-00-stage1-32px.png",
        "000-00-attention.png",
    ]
    assert len(written) == 7 and written[-1].name == "captions.json"
    assert all(p.is_file() for p in written)
    with Image.open(written[2]) as figure:
        assert figure.size == out.attention_figure(0).size


def test_folded_batchnorm_generates_the_same_images(models):
    plain = Pipeline.from_pretrained(models[0])
    plain.fold_batchnorm = False
    fast = Pipeline.from_pretrained(models[0])
    with torch.no_grad():  # give BatchNorm statistics that folding must carry
        for m in fast.generator.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.3, 0.3)
    plain.generator.load_state_dict(fast.generator.state_dict())
    a, b = plain([RED, BLUE], 2), fast([RED, BLUE], 2)
    assert _close(a.images, b.images) and _close(a.attention, b.attention)
    folded = fast.inference_generator()
    assert folded is not fast.generator
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


# --- the inference copy: the plain path's images, made once


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def _trained_statistics(generator: torch.nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics like a trained model's, which folding must carry."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in generator.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.fixture
def plain_and_fast(models):
    """Two pipelines of one model (trained-like BatchNorm statistics): the plain generator and
    the default inference copy."""
    plain, fast = Pipeline.from_pretrained(models[0]), Pipeline.from_pretrained(models[0])
    _trained_statistics(fast.generator)
    plain.generator.load_state_dict(fast.generator.state_dict())
    plain.fold_batchnorm = False
    return plain, fast


@pytest.mark.parametrize("use_mean", [False, True])
@pytest.mark.parametrize("batch", [1, 16])
def test_inference_copy_generates_the_plain_images(plain_and_fast, monkeypatch, batch, use_mean):
    plain, fast = plain_and_fast
    captions, kwargs = [RED, BLUE], {"num_images": 8, "use_mean": use_mean, "batch_size": batch}
    a, b = plain(captions, **kwargs), fast(captions, **kwargs)
    _assert_same(a.images, b.images)
    _assert_same(a.attention, b.attention)
    assert all(x.is_contiguous() for x in b.images + b.attention)  # NCHW, not channels-last
    copy = fast.inference_generator()
    assert sum(isinstance(m, TransposedUpBlock) for m in copy.modules()) == 3
    # refinement stages in slices of 3 rows (3, 3, 2): the same images
    monkeypatch.setattr(attngan.pipeline, "CPU_CHUNK_ELEMENTS", 3 * 8 * 16 * 16)
    fast.clear_cache()
    assert isinstance(fast.inference_generator().stages[1], RowChunks)
    _assert_same(fast(captions, **kwargs).images, a.images)


@pytest.mark.parametrize(
    "options",
    [{}, {"word_attention": False}, {"initial_attention": True}, {"legacy_mask_order": True},
     {"upsample": "bilinear"}],
)  # fmt: skip
def test_inference_copy_of_every_generator_variant_with_padding(options):
    """Padded captions (which the pipeline never batches) and the release's mask order, which
    makes rows depend on each other: the copy, sliced or not, keeps the generator's outputs."""
    torch.manual_seed(0)
    generator = Generator(stages=3, base_size=16, gf=8, z_dim=8, condition_dim=8,
                          embedding_dim=16, **options).eval()  # fmt: skip
    _trained_statistics(generator)
    batch, steps = 5, 6
    words, sentence = torch.randn(batch, 16, steps), torch.randn(batch, 16)
    mask = torch.arange(steps)[None, :] >= torch.tensor([6, 3, 6, 1, 4])[:, None]
    z, ca = torch.randn(batch, 8), torch.randn(batch, 8)
    with torch.no_grad():
        want = generator(z, sentence, words * ~mask[:, None], mask, ca_noise=ca)
    for copy in (inference_copy(generator), inference_copy(generator, chunk_elements=1)):
        with torch.inference_mode():
            got = copy(z, sentence, words * ~mask[:, None], mask, ca_noise=ca)
        _assert_same(got.images, want.images)
        _assert_same(got.attention, want.attention)
    assert not generator.stages[0].bn.training and hasattr(generator.stages[0], "bn")


def test_inference_copy_is_made_once_and_again_after_weight_changes(plain_and_fast, monkeypatch):
    plain, fast = plain_and_fast
    made = []

    def counted(*args, **kwargs):
        made.append(1)
        return inference_copy(*args, **kwargs)

    monkeypatch.setattr(attngan.pipeline, "inference_copy", counted)
    first = fast([RED, GREEN], 2)
    copy = fast.inference_generator()
    again = fast([RED, GREEN], 2)
    assert len(made) == 1 and fast.inference_generator() is copy
    assert all(torch.equal(x, y) for x, y in zip(first.images, again.images, strict=True))

    def changed(change) -> list[torch.Tensor]:
        """Images after ``change(generator)`` to both pipelines' generators: the fast one's
        must be the plain one's (the new weights'), not the first call's."""
        for pipe in (plain, fast):
            change(pipe.generator)
        images = fast([RED, GREEN], 2).images
        _assert_same(images, plain([RED, GREEN], 2).images)
        assert not torch.allclose(images[-1], first.images[-1], atol=1e-3)
        return images

    torch.manual_seed(1)
    other = build_component("generator", fast.config, len(fast.vocab)).state_dict()
    changed(lambda g: g.load_state_dict(other))  # load_state_dict
    assert len(made) == 2

    def scale_one_conv(g):  # an in-place change of one weight (as an optimizer step makes)
        with torch.no_grad():
            g.to_image[-1].weight.mul_(1.5)

    changed(scale_one_conv)
    assert len(made) == 3

    def new_statistics(g):  # a buffer: BatchNorm statistics (folded into the copy)
        with torch.no_grad():
            g.stages[1].up.bn.running_var.mul_(4)

    changed(new_statistics)
    assert len(made) == 4
    fast([RED], 1)
    assert len(made) == 4 and fast.inference_generator() is not copy
    fast.generator = plain.generator  # another module
    fast([RED], 1)
    assert len(made) == 5


def test_generate_loads_the_model_once_for_100_captions(models, tmp_path, monkeypatch, capsys):
    loads, copies, calls = [], [], []
    load_model, call = attngan.checkpoints.load_model, Pipeline.__call__

    def counted_load(*args, **kwargs):
        loads.append(args)
        return load_model(*args, **kwargs)

    def counted_copy(*args, **kwargs):
        copies.append(1)
        return inference_copy(*args, **kwargs)

    def counted_call(self, *args, **kwargs):
        calls.append(1)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(attngan.checkpoints, "load_model", counted_load)
    monkeypatch.setattr(attngan.pipeline, "inference_copy", counted_copy)
    monkeypatch.setattr(Pipeline, "__call__", counted_call)
    rng = np.random.default_rng(0)
    words = tokenize(WORDS)
    captions = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(100)]
    file = tmp_path / "captions.txt"
    file.write_text("\n".join(captions) + "\n")
    out = tmp_path / "out"
    argv = ["generate", "--model", str(models[0]), "--captions-file", str(file), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert len(loads) == len(copies) == len(calls) == 1
    entries = json.loads((out / "captions.json").read_text())
    assert [e["caption"] for e in entries] == captions
