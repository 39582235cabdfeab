"""One discriminator per image scale, each with an unconditional and a sentence-conditional head
(SPEC §6)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from attngan.config import D_NORMS
from attngan.models.layers import ConvBlock, check_shape, release_init


class DiscriminatorOutput(NamedTuple):
    unconditional: Tensor | None  # [B] logits "is this a real image"; None without that head
    conditional: Tensor  # [B] logits "is this a real image matching the sentence"


class Discriminator(nn.Module):
    """Images ``[B, 3, s, s]`` -> features ``[B, 8*df, 4, 4]`` -> logits.

    The trunk halves the side with 4x4 stride-2 convs until 4x4, doubling channels (the first conv
    without BatchNorm): df -> 2df -> 4df -> 8df for 64 px, and on to 16df, 32df for 128 and 256 px,
    whose extra channels 3x3 blocks bring back to 8df. Smaller images start wider so the trunk still
    ends at 8df.

    Args:
        image_size: s, a power of two >= 16.
        df: feature width (release DF_DIM).
        embedding_dim: D, the sentence feature's width.
        unconditional: also build the unconditional head (the release does).
        initialize: apply the release's initialisation (skip it for weights about to be loaded).
        norm: ``"batch"`` (the release: BatchNorm after every conv but the first) or
            ``"spectral"`` (no BatchNorm; every conv, the heads' included, divided by its
            largest singular value, estimated by one power iteration per training forward).
    """

    def __init__(
        self,
        image_size: int,
        df: int = 64,
        embedding_dim: int = 256,
        unconditional: bool = True,
        initialize: bool = True,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"norm must be one of {D_NORMS} (got {norm!r})")
        bn = norm == "batch"
        if image_size < 16 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 16 (got {image_size})")
        downs = int(math.log2(image_size // 4))
        first = 8 * df >> (min(downs, 4) - 1)
        widths = [first << i for i in range(downs)]  # output channels of each down conv
        self.down = nn.ModuleList(
            ConvBlock(3 if i == 0 else widths[i - 1], w, 4, 2, norm=bn and i > 0)
            for i, w in enumerate(widths)
        )
        self.squeeze = nn.ModuleList(
            ConvBlock(widths[-1] >> i, widths[-1] >> (i + 1), 3, 1, norm=bn)
            for i in range(downs - 4)
        )
        features = 8 * df
        self.image_size, self.features_dim, self.embedding_dim = image_size, features, embedding_dim
        self.uncond_logits = nn.Conv2d(features, 1, 4, 4) if unconditional else None
        self.cond_joint = ConvBlock(features + embedding_dim, features, 3, 1, norm=bn)
        self.cond_logits = nn.Conv2d(features, 1, 4, 4)
        if initialize:
            self.apply(release_init)
        self.norm = norm
        if not bn:  # after the initialisation, which then sets the weights to be normalised
            for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
                spectral_norm(conv)

    def features(self, images: Tensor) -> Tensor:
        check_shape("images", images, None, 3, self.image_size, self.image_size)
        x = images
        for block in self.down:
            x = block(x)
        for block in self.squeeze:
            x = block(x)
        return x  # [B, 8df, 4, 4]

    def unconditional(self, features: Tensor) -> Tensor:
        if self.uncond_logits is None:
            raise RuntimeError("this discriminator was built without an unconditional head")
        return self.uncond_logits(features).flatten()

    def conditional(self, features: Tensor, sentence: Tensor) -> Tensor:
        check_shape("sentence", sentence, features.size(0), self.embedding_dim)
        tiled = sentence[:, :, None, None].expand(-1, -1, 4, 4)  # [B, D, 4, 4]
        return self.cond_logits(self.cond_joint(torch.cat([features, tiled], dim=1))).flatten()

    def forward(self, images: Tensor, sentence: Tensor) -> DiscriminatorOutput:
        h = self.features(images)
        uncond = self.unconditional(h) if self.uncond_logits is not None else None
        return DiscriminatorOutput(uncond, self.conditional(h, sentence))
