"""Import of the original release's checkpoints (taoxugit/AttnGAN, SPEC §9).

The release saved bare state dicts whose keys follow its module names. Each of our keys has one
release key (:func:`release_key`); import checks every key and shape, fills BatchNorm's
``num_batches_tracked`` (absent before PyTorch 0.4.1), and writes the project's model format. The
release's word order lives only in its ``captions.pickle``, read without unpickling any object.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from attngan.checkpoints import build_component, load_state_dict_file, save_model
from attngan.config import Config, load_config, parse_override
from attngan.errors import ConfigError, ModelError
from attngan.models import Discriminator
from attngan.text import read_release_captions

log = logging.getLogger(__name__)

# What the release's weights were trained with, for parity with its outputs; an explicit --set of
# the key wins. Its mask tiling order (taoxugit/AttnGAN#93), and the Inception encoder's 299 px
# resize as PyTorch 0.3's bilinear upsampling did it (align_corners=True; 0.4 changed the default).
RELEASE_SETTINGS = {"model.legacy_mask_order": True, "model.inception_align_corners": True}

_Rule = tuple[str, str | Callable[[re.Match], str]]

_GENERATOR_RULES: list[_Rule] = [
    (r"ca\.fc\.(.+)", r"ca_net.fc.\1"),
    (r"stages\.0\.linear\.(.+)", r"h_net1.fc.0.\1"),
    (r"stages\.0\.bn\.(.+)", r"h_net1.fc.1.\1"),
    (r"stages\.0\.up\.(\d+)\.(conv|bn)\.(.+)", lambda m: f"h_net1.upsample{int(m[1]) + 1}."
     f"{_UP[m[2]]}.{m[3]}"),
    (r"stages\.(\d+)\.attention\.word_proj\.(.+)", lambda m: f"h_net{int(m[1]) + 1}.att."
     f"conv_context.{m[2]}"),
    (r"stages\.(\d+)\.residual\.(\d+)\.(conv1|bn1|conv2|bn2)\.(.+)", lambda m: f"h_net"
     f"{int(m[1]) + 1}.residual.{m[2]}.block.{_RES[m[3]]}.{m[4]}"),
    (r"stages\.(\d+)\.up\.(conv|bn)\.(.+)", lambda m: f"h_net{int(m[1]) + 1}.upsample."
     f"{_UP[m[2]]}.{m[3]}"),
    (r"to_image\.(\d+)\.(.+)", lambda m: f"img_net{int(m[1]) + 1}.img.0.{m[2]}"),
]  # fmt: skip
_UP = {"conv": "1", "bn": "2"}  # the release's upBlock: Upsample, conv, BN, GLU
_RES = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4"}  # conv, BN, GLU, conv, BN

_TEXT_RULES: list[_Rule] = [(r"embedding\.(.+)", r"encoder.\1"), (r"lstm\.(.+)", r"rnn.\1")]

_IMAGE_RULES: list[_Rule] = [
    (r"inception\.(.+)", r"\1"),
    (r"region_proj\.(.+)", r"emb_features.\1"),
    (r"global_proj\.(.+)", r"emb_cnn_code.\1"),
]

# Linear layers of ours that the release wrote as 1x1 convolutions.
_CONV_AS_LINEAR = re.compile(r"stages\.\d+\.attention\.word_proj\.weight")


def _discriminator_rules(image_size: int) -> list[_Rule]:
    """The release's D_NET64/128/256 names: ``img_code_s16`` is one Sequential of 4 down convs
    (conv, LeakyReLU, then conv, BN, LeakyReLU three times); extra down/3x3 blocks follow."""
    extra_down = {4: "img_code_s32", 5: "img_code_s64"}
    squeeze = {128: ["img_code_s32_1"], 256: ["img_code_s64_1", "img_code_s64_2"]}.get(image_size)

    def down(m: re.Match) -> str:
        k, part, rest = int(m[1]), m[2], m[3]
        if k < 4:
            index = 0 if k == 0 else 3 * k - 1 + (part == "bn")
            return f"img_code_s16.{index}.{rest}"
        return f"{extra_down[k]}.{int(part == 'bn')}.{rest}"

    return [
        (r"down\.(\d+)\.(conv|bn)\.(.+)", down),
        (r"squeeze\.(\d+)\.(conv|bn)\.(.+)", lambda m: f"{squeeze[int(m[1])]}."
         f"{int(m[2] == 'bn')}.{m[3]}"),
        (r"uncond_logits\.(.+)", r"UNCOND_DNET.outlogits.0.\1"),
        (r"cond_joint\.(conv|bn)\.(.+)", lambda m: f"COND_DNET.jointConv.{int(m[1] == 'bn')}."
         f"{m[2]}"),
        (r"cond_logits\.(.+)", r"COND_DNET.outlogits.0.\1"),
    ]  # fmt: skip


def _rules(component: str, module: nn.Module) -> list[_Rule]:
    if component == "generator":
        return _GENERATOR_RULES
    if component == "text_encoder":
        return _TEXT_RULES
    if component == "image_encoder":
        return _IMAGE_RULES
    if component == "discriminator":
        assert isinstance(module, Discriminator)
        if module.image_size not in (64, 128, 256):
            raise ModelError(f"the release has no {module.image_size} px discriminator")
        return _discriminator_rules(module.image_size)
    raise ValueError(f"unknown release component {component!r}")


def release_key(rules: list[_Rule], key: str) -> str:
    """The release's name for one of our state-dict keys."""
    for pattern, replacement in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return replacement(m) if callable(replacement) else m.expand(replacement)
    raise KeyError(f"no release name for '{key}'")


def _release_shape(key: str, shape: torch.Size) -> tuple[int, ...]:
    return (*shape, 1, 1) if _CONV_AS_LINEAR.fullmatch(key) else tuple(shape)


def to_release_state(
    component: str, module: nn.Module, batches_tracked: bool = False
) -> dict[str, Tensor]:
    """``module``'s weights under the release's names and shapes, as the release saved them
    (without ``num_batches_tracked`` unless asked). The inverse of :func:`from_release_state`."""
    rules = _rules(component, module)
    out = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") and not batches_tracked:
            continue
        out[release_key(rules, key)] = value.detach().reshape(_release_shape(key, value.shape))
    return out


def from_release_state(
    component: str, module: nn.Module, state: dict[str, Tensor], source: str
) -> nn.Module:
    """Load a release state dict into ``module`` key by key, checking each shape."""
    rules = _rules(component, module)
    converted, used = {}, set()
    for key, value in module.state_dict().items():
        name = release_key(rules, key)
        if name not in state:
            if key.endswith("num_batches_tracked"):
                converted[key] = torch.zeros_like(value)
                continue
            raise ModelError(f"{source}: missing weight '{name}'")
        tensor, want = state[name], _release_shape(key, value.shape)
        if tuple(tensor.shape) != want:
            raise ModelError(
                f"{source}: '{name}' has shape {list(tensor.shape)}, expected {list(want)}"
            )
        converted[key] = tensor.reshape(value.shape).to(value.dtype)
        used.add(name)
    extra = [k for k in state if k not in used]
    if extra:
        raise ModelError(f"{source}: unexpected weight '{extra[0]}' ({len(extra)} in all)")
    module.load_state_dict(converted)
    return module


# --- recognising and sizing the release's files ------------------------------------------------

_KIND_NAMES = {
    "generator": "generator (netG_epoch_N.pth)",
    "text_encoder": "text encoder (text_encoderN.pth)",
    "image_encoder": "image encoder (image_encoderN.pth)",
    "discriminator": "discriminator (netD*.pth)",
}


def detect_release_kind(state: dict[str, Tensor]) -> str | None:
    """Which release network a state dict holds, from its keys (None if none)."""
    if "ca_net.fc.weight" in state:
        return "generator"
    if "encoder.weight" in state and "rnn.weight_ih_l0" in state:
        return "text_encoder"
    if "emb_features.weight" in state:
        return "image_encoder"
    if any(k.startswith("img_code_s16.") for k in state):
        return "discriminator"
    return None


def read_release_file(path: str | Path, kind: str) -> dict[str, Tensor]:
    """Load a release state dict and check it is the ``kind`` of network expected."""
    state = load_state_dict_file(path)
    found = detect_release_kind(state)
    if found != kind:
        what = f"a release {_KIND_NAMES[found]}" if found else "not a checkpoint of the release"
        raise ModelError(f"{path}: expected a release {_KIND_NAMES[kind]}, but this is {what}")
    return state


def _shape(state: dict[str, Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise ModelError(f"{source}: missing weight '{key}'")
    return tuple(state[key].shape)


def infer_model_config(
    base: Config, generator: dict[str, Tensor], text_encoder: dict[str, Tensor], source: str
) -> Config:
    """The release's network sizes, read off its weights, over ``base`` (for everything else)."""
    stages = sum(1 for k in generator if re.fullmatch(r"img_net\d+\.img\.0\.weight", k))
    ups = sum(1 for k in generator if re.fullmatch(r"h_net1\.upsample\d+\.1\.weight", k))
    residual = {m[1] for k in generator if (m := re.match(r"h_net2\.residual\.(\d+)\.", k))}
    cond4, embedding_dim = _shape(generator, "ca_net.fc.weight", source)
    _, in_dim = _shape(generator, "h_net1.fc.0.weight", source)
    gf = _shape(generator, "img_net1.img.0.weight", source)[1]
    word_dim = _shape(text_encoder, "encoder.weight", source)[1]  # rows: checked by the caller
    hidden = _shape(text_encoder, "rnn.weight_hh_l0", source)[1]
    if 2 * hidden != embedding_dim:
        raise ModelError(
            f"the text encoder's features are {2 * hidden}-d but the generator expects "
            f"{embedding_dim}-d: the two files are not from one model"
        )
    model = dataclasses.replace(
        base.model,
        stages=stages,
        base_size=4 * 2**ups,
        gf=gf,
        residual_blocks=len(residual) or base.model.residual_blocks,
        z_dim=in_dim - cond4 // 4,
        condition_dim=cond4 // 4,
        embedding_dim=embedding_dim,
        word_dim=word_dim,
        image_encoder="inception",
    )
    return dataclasses.replace(base, model=model)


def import_release(
    out: str | Path,
    generator: str | Path | None,
    text_encoder: str | Path,
    captions: str | Path,
    image_encoder: str | Path | None = None,
    discriminators: list[str | Path] | None = None,
    config: str | None = None,
    overrides: list[str] | None = None,
    legacy_mask_order: bool | None = None,
) -> Path:
    """Convert the release's files into a model folder at ``out``: kind ``attngan`` with a
    generator, or kind ``damsm`` from the DAMSM encoders alone (``generator=None``; then the
    image encoder is needed), for ``attngan train --damsm``.

    ``config`` names the preset the remaining settings come from (``birds``, or ``coco`` when the
    generator is COCO-sized, gf 48), ``overrides`` change them. The release's own settings
    (:data:`RELEASE_SETTINGS`: its attention mask order, the Inception resize's
    ``align_corners=True``) apply unless ``overrides`` set them; ``legacy_mask_order`` (not
    ``None``) sets the mask order, and may not contradict ``overrides``.
    """
    if generator is None and not image_encoder:
        raise ModelError("without a generator, import the DAMSM encoders: give the image encoder")
    if generator is None and discriminators:
        raise ModelError("discriminators need their generator")
    g_state = read_release_file(generator, "generator") if generator else None
    t_state = read_release_file(text_encoder, "text_encoder")
    i_state = read_release_file(image_encoder, "image_encoder") if image_encoder else None
    d_states = [read_release_file(p, "discriminator") for p in discriminators or []]
    if config is None:
        coco = g_state is not None and g_state["img_net1.img.0.weight"].shape[1] == 48
        config = "coco" if coco else "birds"
    settings, chosen = _release_settings(overrides or [], legacy_mask_order)
    base = load_config(config, [*settings, *(overrides or [])])
    if g_state is not None:
        cfg = infer_model_config(base, g_state, t_state, str(generator))
    else:
        cfg = _encoder_config(base, t_state, str(text_encoder))
    if d_states and "img_code_s16.0.weight" in d_states[0]:
        cfg.model.df = d_states[0]["img_code_s16.0.weight"].shape[0]
    vocab = read_release_captions(captions).vocab
    rows = t_state["encoder.weight"].shape[0]
    if rows != len(vocab):
        raise ModelError(
            f"vocabulary-size mismatch: {text_encoder} has {rows} words, {captions} has "
            f"{len(vocab)} (use the captions.pickle of the same data set)"
        )
    modules: dict[str, nn.Module] = {}
    if g_state is not None:
        modules["generator"] = from_release_state(
            "generator",
            build_component("generator", cfg, len(vocab), False),
            g_state,
            str(generator),
        )
    modules["text_encoder"] = from_release_state(
        "text_encoder",
        build_component("text_encoder", cfg, len(vocab), False),
        t_state,
        str(text_encoder),
    )
    if i_state is not None:
        encoder = build_component("image_encoder", cfg, len(vocab), False)
        modules["image_encoder"] = from_release_state(
            "image_encoder", encoder, i_state, str(image_encoder)
        )
    if d_states:
        discs = build_component("discriminators", cfg, len(vocab), False)
        if len(d_states) != len(discs):
            raise ModelError(
                f"the generator has {len(discs)} stages but {len(d_states)} discriminators "
                "were given"
            )
        for disc, state, path in zip(discs, d_states, discriminators or [], strict=True):
            from_release_state("discriminator", disc, state, str(path))
        modules["discriminators"] = discs
    sources = {"generator": generator, "text_encoder": text_encoder, "captions": captions,
               "image_encoder": image_encoder}  # fmt: skip
    info = {"source": "taoxugit/AttnGAN release", "imported_from": {
        k: Path(v).name for k, v in sources.items() if v
    }}  # fmt: skip
    kind = "attngan" if g_state is not None else "damsm"
    out = save_model(out, kind, cfg, vocab, modules, info)
    log.info(
        "imported with %s (the release's: its attention mask order, taoxugit/AttnGAN#93, and "
        "PyTorch 0.3's bilinear resize to 299 px, which aligned corners; --set changes them)",
        chosen,
    )
    return out


def _release_settings(
    overrides: list[str], legacy_mask_order: bool | None
) -> tuple[list[str], str]:
    """Overrides for the :data:`RELEASE_SETTINGS` that ``overrides`` leave alone (and for
    ``legacy_mask_order`` when given), and the settings the model gets, as text for the log."""
    explicit = dict(parse_override(o) for o in overrides)
    given = dict(explicit)
    mask = "model.legacy_mask_order"
    if legacy_mask_order is not None:
        if given.get(mask, legacy_mask_order) != legacy_mask_order:
            raise ConfigError(
                f"--fix-mask (legacy_mask_order={legacy_mask_order}) contradicts "
                f"--set {mask}={given[mask]}: give one of them"
            )
        given.setdefault(mask, legacy_mask_order)
    chosen = {key: given.get(key, value) for key, value in RELEASE_SETTINGS.items()}
    said = ", ".join(f"{k}={_text(v)}{' (yours)' if k in given else ''}" for k, v in chosen.items())
    return [f"{k}={_text(v)}" for k, v in chosen.items() if k not in explicit], said


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _encoder_config(base: Config, text_encoder: dict[str, Tensor], source: str) -> Config:
    """The DAMSM encoders' sizes, read off the text encoder, over ``base``."""
    word_dim = _shape(text_encoder, "encoder.weight", source)[1]
    hidden = _shape(text_encoder, "rnn.weight_hh_l0", source)[1]
    model = dataclasses.replace(
        base.model, embedding_dim=2 * hidden, word_dim=word_dim, image_encoder="inception"
    )
    return dataclasses.replace(base, model=model)
