"""The project's model format and safe weight I/O.

A model is a folder::

    model.json                 format, kind, the resolved Config, vocabulary size, components
    vocab.json                 the vocabulary (attngan.text.Vocabulary)
    <component>.safetensors    one per network: generator, text_encoder, image_encoder, ...

Kinds: ``damsm`` (text_encoder + image_encoder, from ``attngan train-damsm``) and ``attngan``
(generator + text_encoder, optionally image_encoder; from ``attngan train`` or
``attngan import-release``). Weight files are written atomically and ``model.json`` last, so a
folder with a ``model.json`` is complete. Nothing here unpickles: safetensors, or ``torch.load``
with ``weights_only=True`` for PyTorch files.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from attngan.config import Config, ConfigError, from_dict
from attngan.errors import ModelError
from attngan.fileio import atomic_path, write_text_atomic
from attngan.models import (
    build_discriminators,
    build_generator,
    build_image_encoder,
    build_text_encoder,
)
from attngan.text import Vocabulary

MODEL_FORMAT = "attngan-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
VOCAB_FILE = "vocab.json"
COMPONENTS = ("generator", "text_encoder", "image_encoder", "discriminators")
REQUIRED = {
    "damsm": ("text_encoder", "image_encoder"),
    "attngan": ("generator", "text_encoder"),
}
KIND_NAMES = {
    "damsm": "a DAMSM model (text and image encoders)",
    "attngan": "an AttnGAN generator model",
}


# --- state dicts -------------------------------------------------------------------------------


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a PyTorch state dict with ``torch.load(weights_only=True)``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad pickle, refused class, ...
        reason = torch_load_failure(exc)
        raise ModelError(f"cannot read {path} as a PyTorch state dict: {reason}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ModelError(f"{path} is not a state dict (a mapping of names to tensors)")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def check_state_dict(
    expected: dict[str, Tensor], given: dict[str, Tensor], source: str
) -> dict[str, Tensor]:
    """Every expected key present with its shape, and no extra key; else a ModelError naming the
    key (and both shapes)."""
    for key, value in expected.items():
        if key not in given:
            raise ModelError(f"{source}: missing weight '{key}'")
        if tuple(given[key].shape) != tuple(value.shape):
            raise ModelError(
                f"{source}: '{key}' has shape {list(given[key].shape)}, "
                f"the model expects {list(value.shape)}"
            )
    extra = [k for k in given if k not in expected]
    if extra:
        raise ModelError(f"{source}: unexpected weight '{extra[0]}' ({len(extra)} in all)")
    return given


def save_weights(module: nn.Module, path: str | Path, component: str) -> Path:
    """Write a module's state dict as safetensors, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": MODEL_FORMAT, "component": component})
    return Path(path)


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors file into ``module`` after checking every key and shape."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read {path} (truncated or not safetensors): {exc}") from None
    module.load_state_dict(check_state_dict(module.state_dict(), state, str(path)))
    return module


# --- model folders -----------------------------------------------------------------------------


@dataclass
class SavedModel:
    """A loaded model folder: its config, vocabulary and networks (in eval mode)."""

    path: Path
    kind: str
    config: Config
    vocab: Vocabulary
    modules: dict[str, nn.Module] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __getitem__(self, component: str) -> nn.Module:
        if component not in self.modules:
            raise ModelError(f"{self.path} has no {component.replace('_', ' ')}")
        return self.modules[component]


def build_component(
    component: str, config: Config, vocab_size: int, initialize: bool = True
) -> nn.Module:
    """Build one network from a config. With ``initialize=False`` the generator and discriminators
    skip the release's initialisation (for weights about to be loaded: its orthogonal init of a
    large network takes seconds)."""
    m = config.model
    if component == "generator":
        return build_generator(m, initialize)
    if component == "text_encoder":
        return build_text_encoder(m, vocab_size)
    if component == "image_encoder":
        return build_image_encoder(m)
    if component == "discriminators":
        return build_discriminators(m, initialize, contrastive=config.train.d_contrastive > 0)
    raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")


def save_model(
    path: str | Path,
    kind: str,
    config: Config,
    vocab: Vocabulary,
    modules: dict[str, nn.Module],
    info: dict | None = None,
) -> Path:
    """Write a model folder (weights first, ``model.json`` last). Over an existing model folder,
    its ``model.json`` goes first, so a write cut short never looks complete."""
    if kind not in REQUIRED:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(REQUIRED)}")
    missing = [c for c in REQUIRED[kind] if c not in modules]
    if missing:
        raise ValueError(f"a {kind} model needs {', '.join(missing)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MODEL_FILE).unlink(missing_ok=True)  # the folder is incomplete until it is rewritten
    vocab.save(path / VOCAB_FILE)
    for component, module in modules.items():
        save_weights(module, path / f"{component}.safetensors", component)
    for component in COMPONENTS:  # a previous model's networks this one does not have
        if component not in modules:
            (path / f"{component}.safetensors").unlink(missing_ok=True)
    reserved = {"format", "version", "kind", "components", "vocab_size", "config"}
    clash = reserved & set(info or {})
    if clash:
        raise ValueError(f"info may not set {', '.join(sorted(clash))}")
    meta = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "components": sorted(modules),
        "vocab_size": len(vocab),
        "config": config.to_dict(),
        **(info or {}),
    }
    write_text_atomic(path / MODEL_FILE, json.dumps(meta, indent=2) + "\n")
    return path


def read_model_info(path: str | Path) -> dict:
    """``model.json`` of a model folder, checked; errors say what the path is instead."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if path.is_file():
        hint = (
            " (a checkpoint of the original release? convert it with `attngan import-release`)"
            if path.suffix in (".pth", ".pt")
            else ""
        )
        raise ModelError(f"{path} is a file; a model is a folder with {MODEL_FILE}{hint}")
    meta_path = path / MODEL_FILE
    if not meta_path.is_file():
        raise ModelError(f"{path} is not an attngan model folder (no {MODEL_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{meta_path}: not an attngan model description")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelError(f"{meta_path}: format version {meta.get('version')} is not supported")
    if meta.get("kind") not in REQUIRED:
        raise ModelError(f"{meta_path}: unknown model kind {meta.get('kind')!r}")
    return meta


def load_model(
    path: str | Path,
    kind: str | None = None,
    components: tuple[str, ...] | None = None,
    device: torch.device | str = "cpu",
) -> SavedModel:
    """Load a model folder; ``kind`` checks what it is, ``components`` picks which networks to
    build (default: all it has)."""
    if kind is not None and kind not in REQUIRED:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(REQUIRED)}")
    path = Path(path)
    meta = read_model_info(path)
    if kind is not None and meta["kind"] != kind:
        raise ModelError(f"{path} is {KIND_NAMES[meta['kind']]}, not {KIND_NAMES[kind]}")
    try:
        config = from_dict(meta["config"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise ModelError(f"{path / MODEL_FILE}: bad config ({exc})") from None
    vocab = Vocabulary.load(path / VOCAB_FILE)
    if len(vocab) != meta.get("vocab_size"):
        said = meta.get("vocab_size")
        raise ModelError(f"{path}: {VOCAB_FILE} has {len(vocab)} words, {MODEL_FILE} says {said}")
    available = meta.get("components", [])
    wanted = available if components is None else components
    modules = {}
    for component in wanted:
        if component not in available:
            raise ModelError(f"{path} has no {component.replace('_', ' ')}")
        module = build_component(component, config, len(vocab), initialize=False)
        load_weights(module, path / f"{component}.safetensors")
        modules[component] = module.to(device).eval()
    return SavedModel(path, meta["kind"], config, vocab, modules, meta)


def torch_load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, without PyTorch's advice
    to turn ``weights_only`` off (which would run whatever code the file holds)."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"it holds a pickled Python object ({refused[1]}), which is never unpickled here: "
            "save the network's state_dict() instead"
        )
    if "WeightsUnpickler" in text or isinstance(exc, (EOFError, KeyError, pickle.UnpicklingError)):
        return "not a PyTorch file, or a corrupt or empty one"
    if "zip archive" in text or "EOF" in text:
        return "truncated or corrupt"
    if isinstance(exc, OSError):  # unreadable: permissions, a folder, ...
        return _first_line(exc)
    # random bytes reach the legacy unpickler, which fails in many ways (IndexError, ValueError)
    return f"not a PyTorch file, or a corrupt or empty one ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
