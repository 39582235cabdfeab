"""The attentional multi-stage generator (SPEC §5): conditioning augmentation, an initial stage and
refinement stages driven by word attention, each with its own to-image layer."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attngan.models.attention import WordAttention
from attngan.models.layers import ResBlock, UpBlock, check_shape, conv3x3, release_init


class Conditioning(NamedTuple):
    code: Tensor  # [B, c] the conditioning vector fed to the initial stage
    mu: Tensor  # [B, c]
    logvar: Tensor  # [B, c]


class GeneratorOutput(NamedTuple):
    images: list[Tensor]  # one [B, 3, s, s] per stage in [-1, 1], smallest first
    attention: list[Tensor]  # one [B, T, s, s] per refinement stage (at its input side)
    mu: Tensor  # [B, c] conditioning mean (for the KL term)
    logvar: Tensor  # [B, c]


class Noise(NamedTuple):
    """Every random input of one generation: with both fixed, the output is fixed."""

    z: Tensor  # [B, z_dim] N(0, I) noise
    ca: Tensor  # [B, condition_dim] the conditioning augmentation's epsilon


def sample_noise(
    batch_size: int,
    z_dim: int,
    condition_dim: int,
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> Noise:
    """Draw z and epsilon on the CPU from ``seed`` (the same numbers on every device)."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    z = torch.randn(batch_size, z_dim, generator=gen)
    ca = torch.randn(batch_size, condition_dim, generator=gen)
    return Noise(z.to(device), ca.to(device))


class ConditioningAugmentation(nn.Module):
    """Sentence ``[B, D]`` -> linear -> GLU -> (mu, log sigma^2); c = mu + sigma * eps."""

    def __init__(
        self, embedding_dim: int, condition_dim: int, sample: bool = True, norm: bool = False
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, 4 * condition_dim)
        self.sample = sample  # False: c = mu always, in training too (not in the release)
        # True: the sentence standardised (layer norm, no parameters) before the linear layer,
        # so mu starts at the noise's scale whatever the text encoder's norm (not in the release)
        self.norm = norm

    def forward(
        self, sentence: Tensor, noise: Tensor | None = None, use_mean: bool = False
    ) -> Conditioning:
        if self.norm:
            sentence = F.layer_norm(sentence, sentence.shape[-1:])
        mu, logvar = F.glu(self.fc(sentence), dim=1).chunk(2, dim=1)
        if use_mean or not self.sample:
            return Conditioning(mu, mu, logvar)
        if noise is None:
            noise = torch.randn_like(mu)
        check_shape("ca noise", noise, *mu.shape)
        return Conditioning(mu + torch.exp(0.5 * logvar) * noise, mu, logvar)


class InitialStage(nn.Module):
    """[c, z] -> linear -> BN -> GLU -> [B, gf*2^n, 4, 4] -> n up-blocks -> [B, gf, base, base],
    with n = log2(base / 4): 16*gf channels at 4x4 for the release's 64 px.

    With ``embedding_dim`` set (``model.initial_attention``, not in the paper), the map at half the
    base size also attends over the words (Eq. 2) and the last up-block sees [h, word context]:
    the stage that lays out each object's outline reads the words themselves, not only the
    sentence vector through the conditioning augmentation.
    """

    def __init__(
        self,
        in_dim: int,
        gf: int,
        base_size: int,
        embedding_dim: int | None = None,
        legacy_mask_order: bool = False,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        steps = int(math.log2(base_size // 4))
        self.channels = gf * 2**steps
        self.linear = nn.Linear(in_dim, self.channels * 16 * 2, bias=False)
        self.bn = nn.BatchNorm1d(self.channels * 16 * 2)
        widths = [self.channels >> i for i in range(steps + 1)]  # at 4, 8, ... base px
        self.attention = None
        if embedding_dim is not None:
            self.attention = WordAttention(widths[-2], embedding_dim, legacy_mask_order)
            widths[-2] *= 2  # the last up-block's input: [h, context]
        self.up = nn.ModuleList(
            UpBlock(widths[i], self.channels >> (i + 1), upsample) for i in range(steps)
        )

    def forward(
        self, code: Tensor, words: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        h = F.glu(self.bn(self.linear(code)), dim=1).view(-1, self.channels, 4, 4)
        for i, block in enumerate(self.up):
            if self.attention is not None and i == len(self.up) - 1:
                context, _ = self.attention(h, words, mask)  # Eq. 2 at half the base size
                h = torch.cat([h, context], dim=1)
            h = block(h)
        return h


class RefinementStage(nn.Module):
    """[h, word context] -> residual blocks -> up-block: [B, gf, s, s] -> [B, gf, 2s, 2s].

    With ``word_attention=False`` (the paper's ablation) the context is the sentence vector,
    projected to ``gf`` channels and tiled over the map, and the returned attention is uniform
    over the caption's words.
    """

    def __init__(
        self,
        gf: int,
        embedding_dim: int,
        residual_blocks: int,
        legacy_mask_order: bool,
        word_attention: bool = True,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        if word_attention:
            self.attention = WordAttention(gf, embedding_dim, legacy_mask_order)
        else:
            self.sentence = nn.Linear(embedding_dim, gf, bias=False)
        self.word_attention = word_attention
        self.residual = nn.Sequential(*(ResBlock(2 * gf) for _ in range(residual_blocks)))
        self.up = UpBlock(2 * gf, gf, upsample)

    def forward(
        self, h: Tensor, words: Tensor, mask: Tensor, sentence: Tensor
    ) -> tuple[Tensor, Tensor]:
        if self.word_attention:
            context, attention = self.attention(h, words, mask)  # Eq. 2
        else:
            b, _, s, _ = h.shape
            context = self.sentence(sentence)[:, :, None, None].expand(-1, -1, s, s)
            keep = (~mask).to(h.dtype)
            uniform = keep / keep.sum(1, keepdim=True).clamp(min=1)
            attention = uniform[:, :, None, None].expand(-1, -1, s, s)
        h = self.up(self.residual(torch.cat([h, context], dim=1)))  # Eq. 1, F_i
        return h, attention


class Generator(nn.Module):
    """Text features and noise -> one image per stage, and per-word attention maps.

    Args:
        stages: number of stages (>= 1); stage i makes ``base_size * 2**i`` pixels.
        base_size: the first stage's side, a power of two >= 16 (64 in the release).
        gf: feature width (release GF_DIM).
        residual_blocks: residual blocks per refinement stage (release R_NUM).
        z_dim, condition_dim, embedding_dim: noise, conditioning and text-feature widths.
        legacy_mask_order: see :class:`~attngan.models.attention.WordAttention`.
        word_attention: False conditions the refinement stages on the sentence vector only
            (the paper's ablation, see :class:`RefinementStage`).
        initialize: apply the release's initialisation (skip it for weights about to be loaded:
            orthogonal init of the large layers takes seconds).
        conditional: False ignores the text (zero sentence and words): an unconditional GAN of
            the same networks, to tell whether they learn the images at all.
        ca_sample: False conditions on the conditioning augmentation's mean, in training and at
            inference (the release samples ``mu + sigma * eps``).
        ca_norm: standardise the sentence vector (layer norm without parameters) before the
            conditioning augmentation, so the caption's share of ``c`` does not start at the text
            encoder's scale (not in the release; no new weights).
        initial_attention: word attention inside the initial stage too (see
            :class:`InitialStage`); not in the paper.
        upsample: the up-blocks' x2 upsampling, ``"nearest"`` (the release) or ``"bilinear"``
            (see :class:`~attngan.models.layers.UpBlock`).
    """

    def __init__(
        self,
        stages: int = 3,
        base_size: int = 64,
        gf: int = 32,
        residual_blocks: int = 2,
        z_dim: int = 100,
        condition_dim: int = 100,
        embedding_dim: int = 256,
        legacy_mask_order: bool = False,
        word_attention: bool = True,
        initialize: bool = True,
        conditional: bool = True,
        ca_sample: bool = True,
        initial_attention: bool = False,
        upsample: str = "nearest",
        ca_norm: bool = False,
    ) -> None:
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1 (got {stages})")
        if base_size < 16 or base_size & (base_size - 1):
            raise ValueError(f"base_size must be a power of two >= 16 (got {base_size})")
        self.z_dim, self.condition_dim, self.embedding_dim = z_dim, condition_dim, embedding_dim
        self.image_sizes = [base_size * 2**i for i in range(stages)]
        self.conditional = conditional
        self.ca = ConditioningAugmentation(embedding_dim, condition_dim, ca_sample, ca_norm)
        refine = (
            RefinementStage(
                gf, embedding_dim, residual_blocks, legacy_mask_order, word_attention, upsample
            )
            for _ in range(stages - 1)
        )
        initial = InitialStage(
            z_dim + condition_dim, gf, base_size,
            embedding_dim if initial_attention else None, legacy_mask_order, upsample,
        )  # fmt: skip
        self.stages = nn.ModuleList([initial, *refine])
        self.to_image = nn.ModuleList(conv3x3(gf, 3) for _ in range(stages))
        if initialize:
            self.apply(release_init)

    def forward(
        self,
        z: Tensor,
        sentence: Tensor,
        words: Tensor,
        mask: Tensor,
        ca_noise: Tensor | None = None,
        use_mean: bool = False,
    ) -> GeneratorOutput:
        """``z [B, z_dim]``, ``sentence [B, D]``, ``words [B, D, T]``, ``mask [B, T]`` (True at
        padding). ``ca_noise`` fixes the conditioning's epsilon (drawn when None); ``use_mean``
        uses mu itself, so the output depends on z alone."""
        batch = z.size(0)
        check_shape("z", z, batch, self.z_dim)
        check_shape("sentence", sentence, batch, self.embedding_dim)
        check_shape("words", words, batch, self.embedding_dim, None)
        check_shape("mask", mask, batch, words.size(2))
        if not self.conditional:
            sentence, words = torch.zeros_like(sentence), torch.zeros_like(words)
        cond = self.ca(sentence, ca_noise, use_mean)
        h = self.stages[0](torch.cat([cond.code, z], dim=1), words, mask)
        images, attention = [torch.tanh(self.to_image[0](h))], []
        for stage, to_image in zip(self.stages[1:], self.to_image[1:], strict=True):
            h, att = stage(h, words, mask, sentence)
            images.append(torch.tanh(to_image(h)))
            attention.append(att)
        return GeneratorOutput(images, attention, cond.mu, cond.logvar)
