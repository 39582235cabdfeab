"""Typed configuration: dataclasses, YAML presets and dotted command-line overrides.

This is the only module that parses options. Networks and data sets receive explicit arguments taken
from a :class:`Config`; nothing reads a global.

A configuration comes from a preset name (``birds``, ``coco``, ``shapes``, shipped in
``attngan/configs/``) or a YAML file, then ``key=value`` overrides such as ``train.batch_size=8``.
A YAML file may name a preset to start from with a top-level ``preset:`` key. An unknown key or a
value of the wrong type is a :class:`~attngan.errors.ConfigError` that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from attngan.errors import ConfigError
from attngan.fileio import write_text_atomic

DATA_FORMATS = ("cub", "coco", "folder")
IMAGE_ENCODERS = ("inception", "cnn")
UPSAMPLE_MODES = ("nearest", "bilinear")  # the generator's up-blocks (model.upsample)
D_NORMS = ("batch", "spectral")  # the discriminators' normalisation (model.d_norm)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class DataConfig:
    """Where the images and captions are and how samples are drawn (SPEC §2, §7)."""

    format: str = "cub"  # one of DATA_FORMATS: CUB release layout, COCO, or an image-caption folder
    root: str = "data/birds"  # the data set's folder; `--data DIR` sets it
    captions_per_image: int = 10  # captions each image must have; the first this many are used
    max_words: int = 18  # longer captions keep a random ordered subset (train) or are cut (eval)
    workers: int = 2  # DataLoader worker processes
    skip_bad: bool = (
        False  # drop unreadable images / bad captions (and report how many) instead of failing
    )
    flip: bool = True  # random horizontal flips in training (off when captions say left/right)
    # random crops in training (the release: resize to 76/64 of the size, crop); off: resize and
    # centre-crop as the test split is, when captions say where things are and how big
    random_crop: bool = True
    # random shifts in training: the image moved by up to this many pixels (at the last stage's
    # size) along each axis, the border reflected in; a jitter of place at the same scale, for
    # captions that name sizes and shapes (0: off, the release)
    random_shift: int = 0
    limit: int = 0  # use only the first N samples of a split (0: all); for quick runs and tests
    # paired negatives (train.d_negatives): a folder laid out like `root` whose images, at the
    # same relative paths, are what each training image must not look like (e.g. `attngan data
    # shapes-twins`); empty: none
    negatives: str = ""

    def __post_init__(self) -> None:
        _choice("data.format", self.format, DATA_FORMATS)
        _at_least("data.captions_per_image", self.captions_per_image, 1)
        _at_least("data.max_words", self.max_words, 1)
        _at_least("data.workers", self.workers, 0)
        _at_least("data.limit", self.limit, 0)
        _at_least("data.random_shift", self.random_shift, 0)


@dataclass
class ModelConfig:
    """Network sizes (SPEC §3, §5, §6). Stage i generates ``base_size * 2**i`` pixels."""

    stages: int = (
        3  # generator stages; the first is the initial stage, the rest refine with attention
    )
    base_size: int = 64  # the first stage's image side, a power of two >= 16
    gf: int = 32  # generator feature width (release GF_DIM)
    df: int = 64  # discriminator feature width (release DF_DIM)
    residual_blocks: int = 2  # residual blocks per refinement stage (release R_NUM)
    z_dim: int = 100  # noise dimension
    condition_dim: int = 100  # conditioning-augmentation output (release CONDITION_DIM)
    embedding_dim: int = 256  # joint word/region space of DAMSM
    word_dim: int = 300  # text-encoder word-embedding width
    image_encoder: str = "inception"  # one of IMAGE_ENCODERS
    word_attention: bool = True  # False: refinement stages see the sentence only (ablation)
    legacy_mask_order: bool = False  # reproduce the release's padding-mask tiling (AttnGAN#93)
    inception_align_corners: bool = False  # align_corners of the Inception encoder's 299 resize
    cnn_channels: int = 32  # width of the small CNN image encoder's first block
    # the CNN image encoder's input side (0: the last stage's); a GAN whose last stage is larger
    # than its DAMSM's images records the DAMSM's side here
    cnn_size: int = 0
    # the discriminators' normalisation: batch (the release: BatchNorm after every conv but the
    # first) or spectral (no BatchNorm; spectral norm on every conv, as in SN-GAN)
    d_norm: str = "batch"
    # not in the release (its values are the defaults): False trains an unconditional GAN of the
    # same networks (the text is zeroed; needs train.damsm_lambda=0)
    conditional: bool = True
    ca_sample: bool = True  # False: the conditioning is its mean mu, in training and inference
    # True: the sentence vector standardised (layer norm, no weights) before the conditioning
    # augmentation's linear layer: with a text encoder of small norm (the shapes DAMSM: 0.21 per
    # dimension) mu otherwise starts a tenth of sigma, and the caption reaches stage 1 as noise
    ca_norm: bool = False
    initial_attention: bool = False  # word attention in the initial stage too (at base/2 px)
    # the generator's x2 upsampling in every up-block: nearest (the release) or bilinear
    upsample: str = "nearest"

    def __post_init__(self) -> None:
        _at_least("model.stages", self.stages, 1)
        if self.base_size < 16 or self.base_size & (self.base_size - 1):
            raise ConfigError(
                f"model.base_size must be a power of two >= 16 (got {self.base_size})"
            )
        for key in ("gf", "df", "residual_blocks", "z_dim", "condition_dim", "embedding_dim"):
            _at_least(f"model.{key}", getattr(self, key), 1)
        _at_least("model.word_dim", self.word_dim, 1)
        _at_least("model.cnn_channels", self.cnn_channels, 1)
        if self.cnn_size and (self.cnn_size < 16 or self.cnn_size % 16):
            raise ConfigError(
                f"model.cnn_size must be 0 (the last stage's) or a multiple of 16 >= 16 "
                f"(got {self.cnn_size})"
            )
        if self.embedding_dim % 2:
            raise ConfigError(f"model.embedding_dim must be even (got {self.embedding_dim})")
        _choice("model.image_encoder", self.image_encoder, IMAGE_ENCODERS)
        _choice("model.d_norm", self.d_norm, D_NORMS)
        _choice("model.upsample", self.upsample, UPSAMPLE_MODES)

    @property
    def image_sizes(self) -> list[int]:
        """The side of each stage's image, smallest first."""
        return [self.base_size * 2**i for i in range(self.stages)]

    @property
    def cnn_input_size(self) -> int:
        """The side the CNN image encoder takes: ``cnn_size``, else the last stage's."""
        return self.cnn_size or self.image_sizes[-1]


@dataclass
class DAMSMConfig:
    """DAMSM encoder pre-training (SPEC §4)."""

    batch_size: int = 48
    epochs: int = 600
    lr: float = 0.002
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay: float = 0.98  # multiply the learning rate by this after each epoch ...
    min_lr: float = 0.0002  # ... while it is above this
    grad_clip: float = 0.25  # text-encoder gradient-norm clip
    gamma1: float = 4.0  # attention sharpness over regions (Eq. 9)
    gamma2: float = 5.0  # word-score aggregation (Eq. 10)
    gamma3: float = 10.0  # similarity scale in the posterior (Eq. 11)
    inception_weights: str = ""  # ImageNet Inception-v3 weights (.pth) for the Inception encoder
    max_steps: int = 0  # stop after this many steps in all (0: run all epochs)
    checkpoint_every: int = 1000  # steps between checkpoints (one is also written at the end)
    eval_every: int = 1  # epochs between R-precision measurements on the test split
    # hard negatives: each caption also meets its image with one word swapped for another of its
    # family ("circle/disc square star; red blue": families by ';', classes by space, synonyms by
    # '/'), so the encoders must tell those words apart; "" turns it off (the release)
    swap_words: str = ""
    swap_weight: float = 1.0  # weight of the hard-negative terms (word and sentence)
    # Gaussian noise of this spread (of the [-1, 1] range) added to every training image (not in
    # the release, 0: off): an image encoder that must match captions through noise reads shapes
    # rather than faint textures, so its gradient, which the GAN's generator follows, points more
    # at what is seen (randomised smoothing)
    image_noise: float = 0.0
    # adversarial training of the image encoder (not in the release, 0: off): each training image
    # moved, within this distance per pixel (of the [-1, 1] range), to where the DAMSM loss is
    # worst: a random start and one signed-gradient step of 1.25 times it, as in fast adversarial
    # training (Wong et al., 2020). Robust networks' gradients follow what is seen (Santurkar et
    # al., 2019), and the GAN's generator follows this encoder's gradient
    adversarial: float = 0.0
    # with damsm.adversarial: the attack's signed-gradient steps; 1 is fast adversarial training's
    # one step of 1.25 times the distance, more are projected gradient descent (PGD, Madry et al.,
    # 2018: steps of 2.5 / steps times the distance, each projected back), a stronger attack at
    # that many more encoder passes per training step
    adversarial_steps: int = 1

    def __post_init__(self) -> None:
        _at_least("damsm.batch_size", self.batch_size, 2)
        _at_least("damsm.adversarial_steps", self.adversarial_steps, 1)
        _at_least("damsm.image_noise", self.image_noise, 0.0)
        _at_least("damsm.adversarial", self.adversarial, 0.0)
        _at_least("damsm.epochs", self.epochs, 0)
        _at_least("damsm.max_steps", self.max_steps, 0)
        _at_least("damsm.checkpoint_every", self.checkpoint_every, 1)
        _at_least("damsm.eval_every", self.eval_every, 1)
        _at_least("damsm.swap_weight", self.swap_weight, 0.0)


@dataclass
class TrainConfig:
    """GAN training (SPEC §7)."""

    batch_size: int = 20
    epochs: int = 600
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    damsm_lambda: float = (
        5.0  # weight of the DAMSM loss in the generator loss (release SMOOTH.LAMBDA)
    )
    kl_weight: float = 1.0
    # generator hard negatives: weight of a term that scores each fake image's caption above the
    # same caption with one word swapped (damsm.swap_words names the words); 0: off (the release)
    swap_weight: float = 0.0
    # R1 penalty (Mescheder et al., 2018; not in the release, 0: off): gamma/2 times the squared
    # gradient norm of each discriminator's real logits with respect to the real images
    r1_gamma: float = 0.0
    # discriminator hard negatives (not in the release, 0: off): the weight of one more
    # mismatched term, each real image with its own caption with a word swapped
    # (damsm.swap_words), so the conditional heads must check that word, not colour alone
    d_swap_weight: float = 0.0
    # negative data augmentation (not in the release, 0: off): the weight of one more fake term,
    # the real images Gaussian-blurred (sigma 1/48 of the side), so blobs are not "real"
    d_blur_negatives: float = 0.0
    # paired negative data (not in the release, 0: off): the weight of one more fake term, each
    # training image's counterpart in data.negatives (same crop), with the image's own caption
    d_negatives: float = 0.0
    d_negatives_from: int = 0  # the step from which that term is on (a generator that draws
    # nothing yet gets no reward for the coarse layout the negatives keep: let it learn that first)
    # DF-GAN's matching-aware gradient penalty (not in the release, 0: off): weight k of
    # k * E||(grad_image, grad_sentence) D_cond(real, own sentence)||^magp_power
    magp_weight: float = 0.0
    magp_power: float = 6.0
    # the generator's DAMSM term (and swap_weight's) reads its last-stage images moved by up to
    # this many pixels along each axis (each image its own draw, the border reflected in; not in
    # the release, 0: off), so the frozen encoders cannot be met by a pattern tied to exact pixel
    # positions; not with paired_features, whose target is the unmoved real image
    damsm_shift: int = 0
    # DiffAugment cutout for the discriminators (not in the release, 0: off): every image they
    # see, real or fake, has a random square of this fraction of its side zeroed
    d_cutout: float = 0.0
    # instance noise (Sønderby et al., 2016; not in the release, 0: off): the standard deviation
    # of Gaussian noise added to every image the discriminators see, real or fake, in both
    # players' steps (images span [-1, 1]), so a faint noise in flat regions no longer tells a
    # fake; it falls linearly to 0 at step d_noise_until (0: constant)
    d_noise: float = 0.0
    d_noise_until: int = 0
    # MSGAN's mode-seeking term (not in the release, 0: off): its weight; half the batch's
    # captions are drawn a second time with other z, and the generator is rewarded for the
    # image distance per noise distance of the two
    mode_seeking: float = 0.0
    # weight of an L1 term between the last stage downsampled and each earlier stage (not in the
    # release, 0: off): the stages draw one picture, as a real image pyramid does
    stage_consistency: float = 0.0
    # weight of an L1 term between each stage's image and the real image its caption was written
    # for, at that stage's size (pix2pix's reconstruction term; not in the release, 0: off): a
    # direct pixel signal towards what the caption describes, beside the discriminators' verdict
    paired_l1: float = 0.0
    # weight of a perceptual term in the DAMSM image encoder's space (not in the release, 0: off):
    # 1 - cosine between the sub-region features of the last stage's image and of its caption's
    # own real image, averaged over the regions; the encoder, trained to match words to regions,
    # weighs what captions name (objects) above what they leave open (a background's texture)
    paired_features: float = 0.0
    # a discriminator on the frozen DAMSM image encoder's features (Projected GANs' idea, not in
    # the release, 0: off): the generator's weight on its verdict on the last stage; the critic
    # (a small head per encoder map, unconditional and sentence-conditional logits) trains beside
    # the per-stage discriminators with the same loss. Needs the CNN image encoder
    feature_critic: float = 0.0
    feature_critic_width: int = 32  # its heads' channels per encoder map
    # XMC-GAN's sentence-image contrastive loss in the discriminators (Zhang et al., 2021; not in
    # the release, 0: off): each stage's discriminator gets a head that embeds its features
    # (their max over positions, so a small object is not averaged away) in the sentence space;
    # it learns on real images to pick each image's caption among the batch's (cross-entropy of
    # cosines / temperature), and the generator's images must be picked by their captions too,
    # with this weight. Like AC-GAN's classifier, on captions: a text classifier that shares the
    # discriminator's features, so what fools it must also look real
    d_contrastive: float = 0.0
    d_contrastive_temperature: float = 0.1
    # weight of the generator's adversarial terms (the release: 1; 0 is a diagnosis, not a recipe:
    # the generator then learns from DAMSM and the paired terms alone; the discriminators still
    # train, unheard)
    g_adversarial: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)): short runs' EMA is
    # not dragged towards the untrained start (0.999 alone keeps 5 % of it after 3,000 steps)
    seed: int = 0
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 2000  # steps between checkpoints
    keep_checkpoints: int = 3  # the last K checkpoints are kept (DAMSM and GAN runs)
    max_steps: int = 0  # stop after this many steps in all (0: run all epochs)
    log_every: int = 50  # steps between log lines and stats.jsonl rows (DAMSM and GAN runs)
    sample_captions: int = 16  # test captions in every sample grid (fixed for the whole run)
    damsm_model: str = ""  # the DAMSM model (or train-damsm run folder) GAN training uses
    # speed switches (docs/performance.md); all off is the plain float32 path
    precision: str = "fp32"  # fp32, or bf16: autocast of the networks' forward passes
    channels_last: bool = False  # NHWC memory format for the convolutional networks
    compile: bool = False  # torch.compile the generator and discriminator steps
    # their torch.compile mode: default, reduce-overhead (CUDA graphs: for launch-bound GPU
    # steps; a graph per caption length), max-autotune or max-autotune-no-cudagraphs
    compile_mode: str = "default"
    # the same arithmetic in fewer operations, equal to float rounding (so on by default): the
    # generator's up-blocks as stride-2 transposed convolutions made from their 3x3 weights, on
    # the CPU the discriminators' large 4x4-output convolutions as one matrix product each, and
    # the frozen image encoder's BatchNorm folded into its convolutions; false: layer by layer
    # as the release computes them
    fast_layers: bool = True
    sync_batchnorm: bool = False  # under torchrun: BatchNorm statistics over the global batch

    def __post_init__(self) -> None:
        _at_least("train.batch_size", self.batch_size, 2)
        _at_least("train.epochs", self.epochs, 0)
        _at_least("train.max_steps", self.max_steps, 0)
        _at_least("train.d_negatives_from", self.d_negatives_from, 0)
        _at_least("train.d_noise_until", self.d_noise_until, 0)
        weights = ("swap_weight", "r1_gamma", "d_swap_weight", "d_blur_negatives", "magp_weight",
                   "mode_seeking", "stage_consistency", "paired_l1", "d_negatives",
                   "d_noise", "g_adversarial", "paired_features", "feature_critic",
                   "d_contrastive")  # fmt: skip
        for key in weights:  # loss weights: 0 turns a term off, a negative one is a mistake
            _at_least(f"train.{key}", getattr(self, key), 0.0)
        _at_least("train.magp_power", self.magp_power, 1.0)
        _at_least("train.feature_critic_width", self.feature_critic_width, 1)
        if not self.d_contrastive_temperature > 0:
            raise ConfigError(
                "train.d_contrastive_temperature must be > 0 "
                f"(got {self.d_contrastive_temperature})"
            )
        _at_least("train.damsm_shift", self.damsm_shift, 0)
        if self.damsm_shift and self.paired_features:
            raise ConfigError(
                "train.damsm_shift and train.paired_features cannot be used together: the "
                "feature target is the real image unmoved"
            )
        if not 0.0 <= self.d_cutout < 1.0:
            raise ConfigError(f"train.d_cutout must be in [0, 1) (got {self.d_cutout})")
        _at_least("train.log_every", self.log_every, 1)
        _at_least("train.sample_captions", self.sample_captions, 1)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1) (got {self.ema_decay})")
        for key in ("sample_every", "checkpoint_every", "keep_checkpoints"):
            _at_least(f"train.{key}", getattr(self, key), 1)
        _choice("train.precision", self.precision, ("fp32", "bf16"))
        _choice("train.compile_mode", self.compile_mode, COMPILE_MODES)


@dataclass
class Config:
    """Everything a run needs; the resolved copy is written into every run folder."""

    name: str = "birds"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    damsm: DAMSMConfig = field(default_factory=DAMSMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        side = self.model.image_sizes[-1]
        for key, value in (("data.random_shift", self.data.random_shift),
                           ("train.damsm_shift", self.train.damsm_shift)):  # fmt: skip
            if value >= side // 2:
                raise ConfigError(
                    f"{key} must be below half the last stage's side, {side // 2} px (got {value})"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _at_least(key: str, value: int | float, low: int | float) -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low} (got {value})")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)} (got {value!r})")


# --- building from dictionaries


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (an int is accepted for a float)."""
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - guards against a new field type nobody taught this function
        raise TypeError(f"unsupported config type {tp} for {key}")
    raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {_describe(value)}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _unknown_key(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a nested dict, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise _unknown_key(key, [prefix + f for f in fields])
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{key}.")
        else:
            kwargs[name] = _coerce(key, value, tp)
    return cls(**kwargs)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the configuration, e.g. ``train.batch_size``."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += all_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def from_dict(values: dict[str, Any]) -> Config:
    """Build a :class:`Config` from a nested dict (missing keys take their defaults)."""
    return _build(Config, values)


# --- presets, files and overrides


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    folder = resources.files("attngan") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a config file must hold a mapping of keys")
    return values


def _load_values(preset_or_path: str) -> dict[str, Any]:
    """The nested dict of a preset name or a YAML file, following a top-level ``preset:`` key."""
    if preset_or_path in preset_names():
        resource = resources.files("attngan") / "configs" / f"{preset_or_path}.yaml"
        values = _read_yaml(resource.read_text(encoding="utf-8"), f"preset {preset_or_path}")
    else:
        path = Path(preset_or_path)
        if not path.is_file():
            raise ConfigError(
                f"no preset or config file named '{preset_or_path}' "
                f"(presets: {', '.join(preset_names())})"
            )
        values = _read_yaml(path.read_text(encoding="utf-8"), str(path))
    base = values.pop("preset", None)
    if base is not None:
        if base == preset_or_path:
            raise ConfigError(f"{preset_or_path}: a config cannot be based on itself")
        merged = _load_values(str(base))
        _merge(merged, values)
        values = merged
    return values


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``train.batch_size=8`` into the key and its YAML-parsed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.batch_size=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted ``key=value`` in the nested dict; unknown keys are an error naming them."""
    known = all_keys()
    for text in overrides:
        key, value = parse_override(text)
        if key not in known:
            raise _unknown_key(key, known)
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def load_config(preset_or_path: str = "birds", overrides: list[str] | None = None) -> Config:
    """A preset or YAML file plus ``key=value`` overrides, as a validated :class:`Config`."""
    values = _load_values(preset_or_path)
    return from_dict(apply_overrides(values, list(overrides or [])))


def dump_config(config: Config) -> str:
    """The resolved configuration as YAML, loadable again with :func:`load_config`."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved configuration (e.g. ``RUN/config.yaml``)."""
    return write_text_atomic(path, dump_config(config))
