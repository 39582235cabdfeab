"""The networks of AttnGAN (SPEC §3, §5, §6) and factories that build them from a ModelConfig."""

from __future__ import annotations

from torch import nn

from attngan.config import ModelConfig
from attngan.models.attention import WordAttention
from attngan.models.discriminator import Discriminator, DiscriminatorOutput
from attngan.models.generator import (
    Conditioning,
    ConditioningAugmentation,
    Generator,
    GeneratorOutput,
    Noise,
    sample_noise,
)
from attngan.models.image_encoder import CNNImageEncoder, ImageFeatures, InceptionImageEncoder
from attngan.models.text_encoder import TextEncoder, TextFeatures

ImageEncoder = InceptionImageEncoder | CNNImageEncoder

__all__ = [
    "CNNImageEncoder", "Conditioning", "ConditioningAugmentation", "Discriminator",
    "DiscriminatorOutput", "Generator", "GeneratorOutput", "ImageEncoder", "ImageFeatures",
    "InceptionImageEncoder", "Noise", "TextEncoder", "TextFeatures", "WordAttention",
    "build_discriminators", "build_generator", "build_image_encoder", "build_text_encoder",
    "sample_noise",
]  # fmt: skip


def build_generator(m: ModelConfig, initialize: bool = True) -> Generator:
    return Generator(
        stages=m.stages,
        base_size=m.base_size,
        gf=m.gf,
        residual_blocks=m.residual_blocks,
        z_dim=m.z_dim,
        condition_dim=m.condition_dim,
        embedding_dim=m.embedding_dim,
        legacy_mask_order=m.legacy_mask_order,
        word_attention=m.word_attention,
        initialize=initialize,
        conditional=m.conditional,
        ca_sample=m.ca_sample,
        initial_attention=m.initial_attention,
        upsample=m.upsample,
        ca_norm=m.ca_norm,
    )


def build_text_encoder(m: ModelConfig, vocab_size: int) -> TextEncoder:
    return TextEncoder(vocab_size, word_dim=m.word_dim, embedding_dim=m.embedding_dim)


def build_image_encoder(m: ModelConfig) -> InceptionImageEncoder | CNNImageEncoder:
    """The Inception encoder, or the small CNN fed the last stage's images."""
    if m.image_encoder == "inception":
        return InceptionImageEncoder(m.embedding_dim, align_corners=m.inception_align_corners)
    return CNNImageEncoder(m.embedding_dim, input_size=m.cnn_input_size, channels=m.cnn_channels)


def build_discriminators(
    m: ModelConfig, initialize: bool = True, contrastive: bool = False
) -> nn.ModuleList:
    """One discriminator per stage, smallest first; ``contrastive`` gives each the sentence-space
    head of ``train.d_contrastive``."""
    return nn.ModuleList(
        Discriminator(
            s, m.df, m.embedding_dim, initialize=initialize, norm=m.d_norm, contrastive=contrastive
        )
        for s in m.image_sizes
    )
