from pathlib import Path

import pytest

from attngan.config import (
    Config,
    all_keys,
    dump_config,
    load_config,
    preset_names,
    save_config,
)
from attngan.errors import ConfigError


def test_presets_ship_with_the_release_values():
    assert {"birds", "coco", "shapes"} <= set(preset_names())
    birds, coco = load_config("birds"), load_config("coco")
    assert (birds.model.stages, birds.model.gf, birds.model.df, birds.model.residual_blocks) == (
        3,
        32,
        64,
        2,
    )
    assert (coco.model.gf, coco.model.df, coco.model.residual_blocks) == (48, 96, 3)
    assert (birds.data.captions_per_image, birds.data.max_words) == (10, 18)
    assert (coco.data.captions_per_image, coco.data.max_words) == (5, 12)
    assert (birds.train.batch_size, birds.train.epochs, birds.train.damsm_lambda) == (20, 600, 5.0)
    assert (coco.train.batch_size, coco.train.epochs, coco.train.damsm_lambda) == (14, 120, 50.0)
    assert birds.model.image_sizes == [64, 128, 256]
    assert (birds.damsm.gamma1, birds.damsm.gamma2, birds.damsm.gamma3) == (4.0, 5.0, 10.0)
    assert load_config("shapes").data.format == "folder"


def test_dotted_overrides_are_typed():
    cfg = load_config(
        "birds",
        [
            "train.batch_size=8",
            "train.lr_g=1e-3",
            "data.skip_bad=true",
            "model.image_encoder=cnn",
            "train.damsm_lambda=2",
        ],
    )
    assert cfg.train.batch_size == 8
    assert cfg.train.lr_g == pytest.approx(1e-3)
    assert cfg.data.skip_bad is True
    assert cfg.model.image_encoder == "cnn"
    assert isinstance(cfg.train.damsm_lambda, float)  # an int is accepted for a float


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("train.batchsize=8", ["train.batchsize", "train.batch_size"]),
        ("nothing.here=1", ["nothing.here"]),
        ("train.batch_size=eight", ["train.batch_size", "int"]),
        ("train.batch_size=true", ["train.batch_size", "int"]),  # a bool is not an int
        ("data.skip_bad=3", ["data.skip_bad", "bool"]),
        ("model.base_size=48", ["model.base_size"]),
        ("data.format=parquet", ["data.format"]),
        ("train.batch_size", ["key=value"]),
    ],
)
def test_bad_overrides_name_the_key(override, names):
    with pytest.raises(ConfigError) as err:
        load_config("birds", [override])
    for name in names:
        assert name in str(err.value)


def test_yaml_file_based_on_a_preset(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("preset: coco\ntrain:\n  batch_size: 4\n")
    cfg = load_config(str(path), ["data.max_words=7"])
    assert cfg.name == "coco" and cfg.model.gf == 48
    assert cfg.train.batch_size == 4 and cfg.data.max_words == 7


def test_yaml_file_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match="train.batch_sise"):
        load_config(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(bad))
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="no preset or config file"):
        load_config(str(tmp_path / "missing.yaml"))


def test_resolved_config_round_trips(tmp_path: Path):
    cfg = load_config("coco", ["train.seed=7", "data.root=/somewhere"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(str(path))
    assert again == cfg
    assert "batch_size: 14" in dump_config(cfg)


def test_all_keys_are_dotted_and_complete():
    keys = all_keys()
    assert "train.batch_size" in keys and "model.legacy_mask_order" in keys
    assert len(keys) == len(set(keys))
    assert isinstance(Config().to_dict()["model"], dict)


@pytest.mark.parametrize("key", ["damsm.swap_weight", "train.swap_weight", "train.r1_gamma"])
def test_loss_weights_cannot_be_negative(key):
    with pytest.raises(ConfigError, match=f"{key} must be >= 0"):
        load_config("shapes", [f"{key}=-1"])
    assert load_config("shapes", [f"{key}=0"])  # zero turns the term off


@pytest.mark.parametrize("value", ["8", "40", "-16"])
def test_cnn_size_is_zero_or_a_multiple_of_16(value):
    with pytest.raises(ConfigError, match="model.cnn_size"):
        load_config("shapes", [f"model.cnn_size={value}"])
    assert load_config("shapes", ["model.cnn_size=32"]).model.cnn_size == 32
