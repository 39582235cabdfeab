"""Tests of the model-folder format and the safe weight I/O (``attngan.checkpoints``)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attngan import checkpoints
from attngan.checkpoints import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    build_component,
    check_state_dict,
    load_model,
    load_state_dict_file,
    load_weights,
    read_model_info,
    save_model,
    save_weights,
)
from attngan.config import Config, load_config
from attngan.errors import AttnGANError, ModelError
from attngan.text import Vocabulary

TINY = [
    "model.gf=4",
    "model.df=8",
    "model.base_size=16",
    "model.stages=2",
    "model.embedding_dim=16",
    "model.word_dim=8",
    "model.cnn_channels=4",
    "model.z_dim=8",
    "model.condition_dim=8",
    "model.residual_blocks=1",
    "model.image_encoder=cnn",
]
WORDS = ["<end>", "a", "red", "circle", "blue", "square", "left", "of"]
ATTNGAN_PARTS = ("generator", "text_encoder", "image_encoder")
DAMSM_PARTS = ("text_encoder", "image_encoder")


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config("shapes", TINY)


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(WORDS)


def _randomize_buffers(module: nn.Module, seed: int) -> None:
    """Give BatchNorm running statistics non-default values, so that a load that skipped buffers
    would change eval-mode outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if buf.is_floating_point():
                buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(7)


def _build(config: Config, vocab: Vocabulary, parts: tuple[str, ...], seed: int = 0) -> dict:
    torch.manual_seed(seed)
    modules = {}
    for k, part in enumerate(parts):
        module = build_component(part, config, len(vocab))
        _randomize_buffers(module, seed * 100 + k)
        modules[part] = module.eval()
    return modules


def _tokens() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.tensor([[1, 2, 3, 0, 0], [1, 4, 5, 6, 7], [2, 3, 0, 0, 0]])
    lengths = torch.tensor([3, 5, 2])
    return tokens, lengths


def _images(config: Config, batch: int = 3) -> torch.Tensor:
    side = config.model.image_sizes[-1]
    gen = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, side, side, generator=gen) * 2 - 1


def _noise(config: Config, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(batch, config.model.z_dim, generator=gen)
    ca = torch.randn(batch, config.model.condition_dim, generator=gen)
    return z, ca


@torch.no_grad()
def _outputs(part: str, module: nn.Module, config: Config, text_encoder: nn.Module) -> list:
    """Every output tensor of ``module`` on fixed inputs (generator inputs come from
    ``text_encoder``, the same one for original and loaded, so only the generator differs)."""
    if part == "text_encoder":
        feats = module(*_tokens())
        return [feats.words, feats.sentence, feats.mask, feats.lengths]
    if part == "image_encoder":
        feats = module(_images(config))
        return [feats.regions, feats.image]
    if part == "generator":
        feats = text_encoder(*_tokens())
        z, ca = _noise(config)
        out = module(z, feats.sentence, feats.words, feats.mask, ca_noise=ca)
        return [*out.images, *out.attention, out.mu, out.logvar]
    raise AssertionError(part)


def _all_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _eval_everywhere(module: nn.Module) -> bool:
    return not any(m.training for m in module.modules())


@pytest.fixture
def saved_attngan(tmp_path: Path, config: Config, vocab: Vocabulary) -> tuple[Path, dict]:
    modules = _build(config, vocab, ATTNGAN_PARTS, seed=0)
    return save_model(tmp_path / "gan", "attngan", config, vocab, modules), modules


@pytest.fixture
def saved_damsm(tmp_path: Path, config: Config, vocab: Vocabulary) -> tuple[Path, dict]:
    modules = _build(config, vocab, DAMSM_PARTS, seed=3)
    return save_model(tmp_path / "damsm", "damsm", config, vocab, modules), modules


def _read_meta(path: Path) -> dict:
    return json.loads((path / "model.json").read_text(encoding="utf-8"))


def _write_meta(path: Path, meta: object) -> None:
    (path / "model.json").write_text(json.dumps(meta), encoding="utf-8")


# --- save_model / load_model round trip -------------------------------------------------------


@pytest.mark.parametrize(("kind", "parts"), [("attngan", ATTNGAN_PARTS), ("damsm", DAMSM_PARTS)])
def test_round_trip_gives_identical_outputs(
    tmp_path: Path, config: Config, vocab: Vocabulary, kind: str, parts: tuple[str, ...]
) -> None:
    originals = _build(config, vocab, parts, seed=5)
    path = save_model(tmp_path / kind, kind, config, vocab, originals)
    assert path == tmp_path / kind

    loaded = load_model(path, kind=kind)
    assert loaded.kind == kind
    assert loaded.path == path
    assert loaded.config == config
    assert loaded.vocab == vocab
    assert loaded.vocab.words == WORDS
    assert sorted(loaded.modules) == sorted(parts)
    assert loaded.info["kind"] == kind

    text_encoder = originals["text_encoder"]
    for part in parts:
        module = loaded[part]
        assert type(module) is type(originals[part])
        assert _eval_everywhere(module), f"{part} not in eval mode"
        # every parameter and buffer (BatchNorm statistics, num_batches_tracked) came back
        want = originals[part].state_dict()
        got = module.state_dict()
        assert list(got) == list(want)
        for key in want:
            assert torch.equal(got[key], want[key]), f"{part}.{key} differs"
            assert got[key].dtype == want[key].dtype
        expected = _outputs(part, originals[part], config, text_encoder)
        assert _all_equal(_outputs(part, module, config, text_encoder), expected), part
        # the comparison is not vacuous: a freshly built network gives other outputs
        torch.manual_seed(1234)
        fresh = build_component(part, config, len(vocab)).eval()
        assert not _all_equal(_outputs(part, fresh, config, text_encoder), expected), part


def test_load_model_components_picks_only_those(saved_attngan: tuple[Path, dict]) -> None:
    path, originals = saved_attngan
    loaded = load_model(path, components=("text_encoder",))
    assert list(loaded.modules) == ["text_encoder"]
    assert _eval_everywhere(loaded["text_encoder"])
    expected = _outputs("text_encoder", originals["text_encoder"], loaded.config, None)
    got = _outputs("text_encoder", loaded["text_encoder"], loaded.config, None)
    assert _all_equal(got, expected)
    with pytest.raises(ModelError, match="has no generator"):
        loaded["generator"]


def test_load_model_components_ignores_unwanted_broken_files(
    saved_attngan: tuple[Path, dict],
) -> None:
    path, _ = saved_attngan
    (path / "generator.safetensors").write_bytes(b"garbage")
    loaded = load_model(path, components=("text_encoder", "image_encoder"))
    assert sorted(loaded.modules) == ["image_encoder", "text_encoder"]
    with pytest.raises(ModelError, match="generator.safetensors"):
        load_model(path)


def test_load_model_without_kind_accepts_either(
    saved_attngan: tuple[Path, dict], saved_damsm: tuple[Path, dict]
) -> None:
    assert load_model(saved_attngan[0], components=()).kind == "attngan"
    assert load_model(saved_damsm[0], components=()).kind == "damsm"


def test_attngan_without_image_encoder(tmp_path: Path, config: Config, vocab: Vocabulary) -> None:
    modules = _build(config, vocab, ("generator", "text_encoder"))
    path = save_model(tmp_path / "m", "attngan", config, vocab, modules)
    assert _read_meta(path)["components"] == ["generator", "text_encoder"]
    loaded = load_model(path, kind="attngan")
    assert sorted(loaded.modules) == ["generator", "text_encoder"]
    with pytest.raises(ModelError, match="has no image encoder"):
        loaded["image_encoder"]


def test_discriminators_round_trip(tmp_path: Path, config: Config, vocab: Vocabulary) -> None:
    modules = _build(config, vocab, ("generator", "text_encoder", "discriminators"))
    path = save_model(tmp_path / "m", "attngan", config, vocab, modules)
    loaded = load_model(path, components=("discriminators",))
    want = modules["discriminators"].state_dict()
    got = loaded["discriminators"].state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_info_is_kept_in_model_json(tmp_path: Path, config: Config, vocab: Vocabulary) -> None:
    modules = _build(config, vocab, DAMSM_PARTS)
    path = save_model(tmp_path / "m", "damsm", config, vocab, modules, info={"epoch": 12})
    assert _read_meta(path)["epoch"] == 12
    assert load_model(path, components=()).info["epoch"] == 12
    with pytest.raises(ValueError, match="info may not set kind, version"):
        save_model(tmp_path / "m2", "damsm", config, vocab, modules, {"version": 2, "kind": "x"})


def test_build_component_uninitialized_is_real_cpu_memory(
    config: Config, vocab: Vocabulary
) -> None:
    for part in (*ATTNGAN_PARTS, "discriminators"):
        empty = build_component(part, config, len(vocab), initialize=False)
        full = build_component(part, config, len(vocab))
        assert type(empty) is type(full)
        got, want = empty.state_dict(), full.state_dict()
        assert list(got) == list(want)
        for key, value in got.items():
            assert value.device.type == "cpu", f"{part}.{key} on {value.device}"
            assert value.shape == want[key].shape and value.dtype == want[key].dtype


def test_unknown_component_name(config: Config, vocab: Vocabulary) -> None:
    with pytest.raises(ValueError, match="unknown component 'critic'"):
        build_component("critic", config, len(vocab))


def test_loaded_modules_move_to_device(saved_damsm: tuple[Path, dict]) -> None:
    loaded = load_model(saved_damsm[0], device=torch.device("cpu"))
    for module in loaded.modules.values():
        assert all(t.device.type == "cpu" for t in module.state_dict().values())


# --- files written -----------------------------------------------------------------------------


def test_files_written(saved_attngan: tuple[Path, dict], config: Config) -> None:
    path, originals = saved_attngan
    names = sorted(p.name for p in path.iterdir())
    assert names == [
        "generator.safetensors",
        "image_encoder.safetensors",
        "model.json",
        "text_encoder.safetensors",
        "vocab.json",
    ]
    assert not list(path.rglob("*.tmp"))

    meta = _read_meta(path)
    assert meta["format"] == MODEL_FORMAT == "attngan-model"
    assert meta["version"] == FORMAT_VERSION
    assert meta["kind"] == "attngan"
    assert meta["components"] == ["generator", "image_encoder", "text_encoder"]
    assert meta["vocab_size"] == len(WORDS)
    assert meta["config"] == config.to_dict()
    assert read_model_info(path) == meta

    assert Vocabulary.load(path / "vocab.json").words == WORDS
    assert json.loads((path / "vocab.json").read_text())["words"] == WORDS

    for part, module in originals.items():
        state = load_file(str(path / f"{part}.safetensors"))
        assert set(state) == set(module.state_dict())
        with open(path / f"{part}.safetensors", "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_len))
        assert header["__metadata__"] == {"format": MODEL_FORMAT, "component": part}


def test_damsm_files_written(saved_damsm: tuple[Path, dict]) -> None:
    path, _ = saved_damsm
    assert sorted(p.name for p in path.iterdir()) == [
        "image_encoder.safetensors",
        "model.json",
        "text_encoder.safetensors",
        "vocab.json",
    ]
    meta = _read_meta(path)
    assert meta["kind"] == "damsm"
    assert meta["components"] == ["image_encoder", "text_encoder"]
    assert meta["vocab_size"] == len(WORDS)


def test_save_model_overwrites_in_place(
    saved_attngan: tuple[Path, dict], config: Config, vocab: Vocabulary
) -> None:
    path, _ = saved_attngan
    newer = _build(config, vocab, ATTNGAN_PARTS, seed=9)
    save_model(path, "attngan", config, vocab, newer)
    assert not list(path.rglob("*.tmp"))
    loaded = load_model(path)
    for part in ATTNGAN_PARTS:
        want = newer[part].state_dict()
        assert all(torch.equal(loaded[part].state_dict()[k], want[k]) for k in want)


def test_overwrite_drops_old_networks_and_is_incomplete_while_writing(
    saved_attngan: tuple[Path, dict], config: Config, vocab: Vocabulary, monkeypatch
) -> None:
    path, _ = saved_attngan
    damsm = _build(config, vocab, DAMSM_PARTS, seed=4)
    save_model(path, "damsm", config, vocab, damsm)
    assert not (path / "generator.safetensors").exists()  # the old model's generator is gone
    assert load_model(path).kind == "damsm"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, "damsm", config, vocab, damsm)
    with pytest.raises(ModelError, match="no model.json"):
        load_model(path)  # not mistaken for a complete model


@pytest.mark.parametrize(
    ("kind", "parts", "message"),
    [
        ("gan", DAMSM_PARTS, "unknown model kind"),
        ("damsm", ("text_encoder",), "needs image_encoder"),
        ("attngan", ("text_encoder", "image_encoder"), "needs generator"),
    ],
)
def test_save_model_refuses_incomplete(
    tmp_path: Path,
    config: Config,
    vocab: Vocabulary,
    kind: str,
    parts: tuple[str, ...],
    message: str,
) -> None:
    modules = _build(config, vocab, parts)
    with pytest.raises(ValueError, match=message):
        save_model(tmp_path / "m", kind, config, vocab, modules)
    assert not (tmp_path / "m" / "model.json").exists()


def test_model_json_is_written_last(
    tmp_path: Path, config: Config, vocab: Vocabulary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that fails part-way leaves no model.json, so the folder never looks complete."""
    modules = _build(config, vocab, ATTNGAN_PARTS)
    real = checkpoints.save_weights
    calls = []

    def failing(module: nn.Module, path: Path, component: str) -> Path:
        calls.append(component)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(module, path, component)

    monkeypatch.setattr(checkpoints, "save_weights", failing)
    with pytest.raises(OSError, match="disk full"):
        save_model(tmp_path / "m", "attngan", config, vocab, modules)
    assert len(calls) == 2
    assert not (tmp_path / "m" / "model.json").exists()
    with pytest.raises(ModelError, match="no model.json"):
        load_model(tmp_path / "m")


# --- save_weights is atomic --------------------------------------------------------------------


def test_save_weights_is_atomic(
    tmp_path: Path, config: Config, vocab: Vocabulary, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(config, vocab, ("text_encoder",), seed=1)["text_encoder"]
    target = tmp_path / "w" / "text_encoder.safetensors"
    assert save_weights(first, target, "text_encoder") == target
    before = target.read_bytes()
    written = []

    def broken_save_file(state: dict, filename: str, metadata: dict | None = None) -> None:
        written.append(filename)
        Path(filename).write_bytes(before[: len(before) // 3])
        raise OSError("no space left on device")

    monkeypatch.setattr(checkpoints, "save_file", broken_save_file)
    second = _build(config, vocab, ("text_encoder",), seed=2)["text_encoder"]
    with pytest.raises(OSError, match="no space left"):
        save_weights(second, target, "text_encoder")

    assert written and Path(written[0]) != target  # it wrote beside the target, not onto it
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["text_encoder.safetensors"]
    # and the old file still loads
    module = build_component("text_encoder", config, len(vocab))
    load_weights(module, target)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in first.state_dict().items())


def test_save_weights_first_write_failure_leaves_nothing(
    tmp_path: Path, config: Config, vocab: Vocabulary, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save_file(state: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("boom")

    monkeypatch.setattr(checkpoints, "save_file", broken_save_file)
    module = _build(config, vocab, ("text_encoder",))["text_encoder"]
    with pytest.raises(OSError, match="boom"):
        save_weights(module, tmp_path / "x.safetensors", "text_encoder")
    assert list(tmp_path.iterdir()) == []


# --- read_model_info / load_model errors -------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model not found") as info:
        load_model(tmp_path / "nope")
    assert "nope" in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".pt"])
def test_pth_file_points_to_import_release(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"netG_epoch_600{suffix}"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ModelError, match="import-release") as info:
        load_model(path)
    assert "is a file" in str(info.value)
    assert path.name in str(info.value)


def test_other_file_has_no_import_release_hint(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelError, match="is a file") as info:
        load_model(path)
    assert "import-release" not in str(info.value)


def test_folder_without_model_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"not an attngan model folder \(no model.json\)"):
        load_model(tmp_path / "empty")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage"])
def test_model_json_not_json(saved_damsm: tuple[Path, dict], content: bytes) -> None:
    path, _ = saved_damsm
    (path / "model.json").write_bytes(content)
    with pytest.raises(ModelError, match="not valid JSON") as info:
        load_model(path)
    assert "model.json" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: [meta], "not an attngan model description"),
        (lambda meta: {**meta, "format": "something-else"}, "not an attngan model description"),
        (lambda meta: {**meta, "version": 99}, "format version 99 is not supported"),
        (lambda meta: {**meta, "kind": "vae"}, "unknown model kind 'vae'"),
        (lambda meta: {k: v for k, v in meta.items() if k != "config"}, "bad config"),
        (
            lambda meta: {**meta, "config": {**meta["config"], "model": {"gff": 4}}},
            "bad config.*unknown config key 'model.gff'",
        ),
    ],
)
def test_bad_model_json(saved_damsm: tuple[Path, dict], change, message: str) -> None:
    path, _ = saved_damsm
    _write_meta(path, change(_read_meta(path)))
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_wrong_kind(saved_damsm: tuple[Path, dict], saved_attngan: tuple[Path, dict]) -> None:
    with pytest.raises(ModelError, match="DAMSM") as info:
        load_model(saved_damsm[0], kind="attngan")
    assert "not an AttnGAN generator model" in str(info.value)
    with pytest.raises(ModelError, match="is an AttnGAN generator model, not a DAMSM"):
        load_model(saved_attngan[0], kind="damsm")


def test_truncated_safetensors_names_the_file(saved_attngan: tuple[Path, dict]) -> None:
    path, _ = saved_attngan
    weights = path / "generator.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or not safetensors") as info:
        load_model(path)
    assert str(weights) in str(info.value)


def test_empty_safetensors(saved_damsm: tuple[Path, dict]) -> None:
    path, _ = saved_damsm
    (path / "image_encoder.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="image_encoder.safetensors"):
        load_model(path)


def test_missing_weights_file(saved_damsm: tuple[Path, dict]) -> None:
    path, _ = saved_damsm
    (path / "text_encoder.safetensors").unlink()
    with pytest.raises(ModelError, match="weights file not found.*text_encoder.safetensors"):
        load_model(path)


def _pick_key(state: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in state.items() if v.dim() == 2)


def test_wrong_shape_names_key_and_both_shapes(saved_attngan: tuple[Path, dict]) -> None:
    path, _ = saved_attngan
    weights = path / "generator.safetensors"
    state = load_file(str(weights))
    key = _pick_key(state)
    good = list(state[key].shape)
    bad = [good[0] + 1, *good[1:]]
    state[key] = torch.zeros(bad)
    save_file(state, str(weights))
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert str(weights) in message
    assert f"'{key}'" in message
    assert f"has shape {bad}" in message
    assert f"the model expects {good}" in message


def test_config_that_no_longer_fits_the_weights(saved_attngan: tuple[Path, dict]) -> None:
    path, _ = saved_attngan
    meta = _read_meta(path)
    meta["config"]["model"]["gf"] = 8
    _write_meta(path, meta)
    with pytest.raises(ModelError, match="generator.safetensors.*has shape"):
        load_model(path)
    # the encoders do not depend on gf and still load
    assert sorted(load_model(path, components=DAMSM_PARTS).modules) == sorted(DAMSM_PARTS)


def test_missing_weight_key(saved_attngan: tuple[Path, dict]) -> None:
    path, _ = saved_attngan
    weights = path / "generator.safetensors"
    state = load_file(str(weights))
    key = sorted(state)[len(state) // 2]
    del state[key]
    save_file(state, str(weights))
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert f"missing weight '{key}'" in str(info.value)
    assert str(weights) in str(info.value)


def test_extra_weight_key_in_file(saved_damsm: tuple[Path, dict]) -> None:
    path, _ = saved_damsm
    weights = path / "text_encoder.safetensors"
    state = load_file(str(weights))
    state["bonus.weight"] = torch.zeros(3)
    save_file(state, str(weights))
    with pytest.raises(ModelError, match=r"unexpected weight 'bonus.weight' \(1 in all\)"):
        load_model(path)


def test_vocab_size_mismatch(saved_damsm: tuple[Path, dict]) -> None:
    path, _ = saved_damsm
    Vocabulary([*WORDS, "triangle"]).save(path / "vocab.json")
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert f"vocab.json has {len(WORDS) + 1} words" in message
    assert f"model.json says {len(WORDS)}" in message


def test_missing_vocab_json_names_it(saved_damsm: tuple[Path, dict]) -> None:
    path, _ = saved_damsm
    (path / "vocab.json").unlink()
    with pytest.raises(AttnGANError, match="vocab.json"):
        load_model(path)


def test_unknown_kind_argument_is_a_clear_error(saved_damsm: tuple[Path, dict]) -> None:
    with pytest.raises((ModelError, ValueError), match="gan"):
        load_model(saved_damsm[0], kind="gan")


@pytest.mark.parametrize("component", ["generator", "discriminators"])
def test_asking_for_a_missing_component(saved_damsm: tuple[Path, dict], component: str) -> None:
    path, _ = saved_damsm
    with pytest.raises(ModelError, match=f"has no {component.replace('_', ' ')}"):
        load_model(path, components=("text_encoder", component))


# --- load_weights ------------------------------------------------------------------------------


def test_load_weights_checks_before_changing_the_module(
    saved_attngan: tuple[Path, dict], config: Config, vocab: Vocabulary
) -> None:
    path, _ = saved_attngan
    weights = path / "image_encoder.safetensors"
    state = load_file(str(weights))
    key = _pick_key(state)
    state[key] = torch.zeros(1, 1)
    save_file(state, str(weights))
    module = build_component("image_encoder", config, len(vocab))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ModelError, match=key):
        load_weights(module, weights)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())


def test_load_weights_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="weights file not found"):
        load_weights(nn.Linear(2, 2), tmp_path / "none.safetensors")


def test_load_weights_non_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "linear.safetensors"
    torch.save(nn.Linear(2, 2).state_dict(), path)  # a torch zip, not safetensors
    with pytest.raises(ModelError, match="truncated or not safetensors"):
        load_weights(nn.Linear(2, 2), path)


# --- check_state_dict --------------------------------------------------------------------------


def test_check_state_dict_accepts_a_match() -> None:
    expected = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    given = {"b": torch.ones(4), "a": torch.ones(2, 3)}
    assert check_state_dict(expected, given, "src") is given


def test_check_state_dict_reports_extra_key() -> None:
    expected = {"a": torch.zeros(2)}
    given = {"a": torch.zeros(2), "zz.extra": torch.zeros(1), "zz.more": torch.zeros(1)}
    with pytest.raises(ModelError) as info:
        check_state_dict(expected, given, "some-file")
    message = str(info.value)
    assert message.startswith("some-file: ")
    assert "unexpected weight 'zz.extra'" in message
    assert "(2 in all)" in message


def test_check_state_dict_reports_missing_key_and_shape() -> None:
    expected = {"a": torch.zeros(2), "b": torch.zeros(3, 4)}
    with pytest.raises(ModelError, match="src: missing weight 'b'"):
        check_state_dict(expected, {"a": torch.zeros(2)}, "src")
    with pytest.raises(ModelError, match=r"'b' has shape \[4, 3\], the model expects \[3, 4\]"):
        check_state_dict(expected, {"a": torch.zeros(2), "b": torch.zeros(4, 3)}, "src")
    # a scalar against a vector is a shape mismatch too
    with pytest.raises(ModelError, match=r"'a' has shape \[\], the model expects \[2\]"):
        check_state_dict(expected, {"a": torch.tensor(1.0), "b": torch.zeros(3, 4)}, "src")


# --- load_state_dict_file ----------------------------------------------------------------------


class _Sneaky:
    """Loading this with full unpickling would call __setstate__ (a stand-in for any code)."""

    ran = False

    def __init__(self) -> None:
        self.payload = [1, 2, 3]

    def __setstate__(self, state: dict) -> None:
        type(self).ran = True
        self.__dict__.update(state)


def _linear_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(3, 2).state_dict()


@pytest.mark.parametrize("zipfile", [True, False])
def test_load_state_dict_file_reads_torch_save(tmp_path: Path, zipfile: bool) -> None:
    state = _linear_state()
    path = tmp_path / "net.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zipfile)
    loaded = load_state_dict_file(path)
    assert type(loaded) is dict
    assert list(loaded) == ["weight", "bias"]
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    module = nn.Linear(3, 2)
    module.load_state_dict(check_state_dict(module.state_dict(), loaded, str(path)))


@pytest.mark.parametrize("zipfile", [True, False])
def test_load_state_dict_file_strips_module_prefix(tmp_path: Path, zipfile: bool) -> None:
    state = _linear_state()
    path = tmp_path / "parallel.pth"
    torch.save(
        {f"module.{k}": v for k, v in state.items()}, path, _use_new_zipfile_serialization=zipfile
    )
    loaded = load_state_dict_file(path)
    assert list(loaded) == ["weight", "bias"]
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_load_state_dict_file_keeps_partial_module_prefix(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pth"
    torch.save({"module.a": torch.zeros(1), "b": torch.ones(1)}, path)
    assert sorted(load_state_dict_file(path)) == ["b", "module.a"]


def test_load_state_dict_file_unwraps_state_dict_key(tmp_path: Path) -> None:
    state = _linear_state()
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = load_state_dict_file(path)
    assert list(loaded) == ["weight", "bias"]
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_load_state_dict_file_empty_dict(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    torch.save({}, path)
    assert load_state_dict_file(path) == {}


# random bytes can start like a pickle of an unknown protocol, which torch warns about first
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_state_dict_file_random_bytes_say_not_a_pytorch_file(tmp_path: Path) -> None:
    """Random bytes fail inside torch.load in many ways (the legacy unpickler's IndexError,
    ValueError, ...): every one is the same one-line reason (a flaky robustness case before)."""
    path = tmp_path / "garbage.pth"
    rng = random.Random(0)
    for _ in range(300):
        path.write_bytes(rng.randbytes(rng.choice([1, 2, 5, 64, 700])))
        with pytest.raises(ModelError) as info:
            load_state_dict_file(path)
        message = str(info.value)
        assert "not a PyTorch file" in message or "truncated or corrupt" in message, message
        assert "\n" not in message


def test_load_state_dict_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="checkpoint file not found"):
        load_state_dict_file(tmp_path / "gone.pth")
    with pytest.raises(ModelError, match="checkpoint file not found"):
        load_state_dict_file(tmp_path)  # a folder is not a checkpoint file


@pytest.mark.parametrize("zipfile", [True, False])
def test_load_state_dict_file_truncated(tmp_path: Path, zipfile: bool) -> None:
    path = tmp_path / "cut.pth"
    torch.save(
        {"w": torch.arange(1000, dtype=torch.float32)}, path, _use_new_zipfile_serialization=zipfile
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="as a PyTorch state dict") as info:
        load_state_dict_file(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_state_dict_file_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "text.pth"
    path.write_text("just some text\n")
    with pytest.raises(ModelError, match="cannot read"):
        load_state_dict_file(path)


@pytest.mark.parametrize(
    "obj",
    [
        [1, 2, 3],
        torch.zeros(3),
        {"w": torch.zeros(2), "epoch": 5},
        {"state_dict": {"w": [1.0, 2.0]}},
    ],
    ids=["list", "bare-tensor", "non-tensor-value", "nested-non-tensor"],
)
def test_load_state_dict_file_not_a_state_dict(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(ModelError, match="is not a state dict") as info:
        load_state_dict_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("wrap", [False, True])
def test_load_state_dict_file_refuses_arbitrary_objects(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "sneaky.pth"
    obj = _Sneaky()
    torch.save({"w": torch.zeros(1), "extra": obj} if wrap else obj, path)
    _Sneaky.ran = False
    # full unpickling would run the class's code ...
    torch.load(path, weights_only=False)
    assert _Sneaky.ran
    _Sneaky.ran = False
    # ... load_state_dict_file refuses instead
    with pytest.raises(ModelError, match="cannot read .* as a PyTorch state dict") as info:
        load_state_dict_file(path)
    assert not _Sneaky.ran
    assert str(path) in str(info.value)


def test_load_state_dict_file_non_string_keys(tmp_path: Path) -> None:
    path = tmp_path / "intkeys.pth"
    torch.save({1: torch.zeros(1), 2: torch.ones(1)}, path)
    with pytest.raises(ModelError, match="not a state dict"):
        load_state_dict_file(path)
