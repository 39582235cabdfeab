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
        contrastive: also build a head that embeds the features in the sentence space
            (:meth:`embed`, ``train.d_contrastive``; not in the release).
    """

    def __init__(
        self,
        image_size: int,
        df: int = 64,
        embedding_dim: int = 256,
        unconditional: bool = True,
        initialize: bool = True,
        norm: str = "batch",
        contrastive: bool = False,
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
        # built after the release's initialisation, so the other weights draw what they did
        self.contrast = nn.Linear(features, embedding_dim) if contrastive else None
        if initialize and self.contrast is not None:
            release_init(self.contrast)
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

    def embed(self, features: Tensor) -> Tensor:
        """Features ``[B, 8df, 4, 4]`` -> ``[B, D]`` in the sentence space: the contrastive head
        over their maximum over positions (the mean would average a small object away)."""
        if self.contrast is None:
            raise RuntimeError("this discriminator was built without a contrastive head")
        return self.contrast(features.amax((2, 3)))

    def forward(self, images: Tensor, sentence: Tensor) -> DiscriminatorOutput:
        h = self.features(images)
        uncond = self.unconditional(h) if self.uncond_logits is not None else None
        return DiscriminatorOutput(uncond, self.conditional(h, sentence))


class FeatureDiscriminator(nn.Module):
    """A discriminator that sees images through a frozen, trained DAMSM CNN image encoder
    (not in the release; ``train.feature_critic``), after Projected GANs (Sauer et al., 2021),
    whose critics read a pretrained network's features at several scales.

    Each of the encoder's four trunk maps (:meth:`CNNImageEncoder.feature_maps`: side s to s/8,
    s its input size) goes through its own small head of spectral-norm 4x4 stride-2 convs
    (a 3x3 one for the last map) down to ``width`` channels at s/8; the four are concatenated
    (``features``, ``[B, 4 width, s/8, s/8]``). The unconditional head is a 1x1 conv, the
    conditional one a 1x1 conv over the features and the tiled sentence, LeakyReLU, a 1x1 conv;
    each logit is its patch logits' mean. The encoder is held outside the module: it is never
    trained, saved or moved with it, and it stays in eval mode (BatchNorm on its running
    statistics); gradients pass through it to the images.

    Its interface is :class:`Discriminator`'s, so the same losses apply.
    """

    def __init__(self, encoder: nn.Module, embedding_dim: int, width: int = 32) -> None:
        super().__init__()
        if not hasattr(encoder, "feature_maps"):
            raise ValueError(
                "a feature discriminator needs the CNN image encoder (model.image_encoder=cnn)"
            )
        self._encoder = (encoder,)  # a tuple: not a registered submodule
        widths = [encoder.stem.conv.out_channels] + [b.conv.out_channels for b in encoder.down]
        heads = []
        for i, cin in enumerate(widths):  # map i has side s / 2**i; bring each to s/8
            layers: list[nn.Module] = []
            for _ in range(3 - i):
                layers += [spectral_norm(nn.Conv2d(cin, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
                cin = width
            if i == 3:
                layers += [spectral_norm(nn.Conv2d(cin, width, 3, 1, 1)), nn.LeakyReLU(0.2)]
            heads.append(nn.Sequential(*layers))
        self.heads = nn.ModuleList(heads)
        features = 4 * width
        self.features_dim, self.embedding_dim = features, embedding_dim
        self.image_size = encoder.input_size
        self.uncond_logits = spectral_norm(nn.Conv2d(features, 1, 1))
        self.cond_joint = spectral_norm(nn.Conv2d(features + embedding_dim, features, 1))
        self.cond_logits = spectral_norm(nn.Conv2d(features, 1, 1))

    @property
    def encoder(self) -> nn.Module:
        return self._encoder[0]

    def features(self, images: Tensor) -> Tensor:
        check_shape("images", images, None, 3, None, None)
        maps = self.encoder.feature_maps(images)
        return torch.cat([head(m) for head, m in zip(self.heads, maps, strict=True)], dim=1)

    def unconditional(self, features: Tensor) -> Tensor:
        return self.uncond_logits(features).mean((1, 2, 3))

    def conditional(self, features: Tensor, sentence: Tensor) -> Tensor:
        check_shape("sentence", sentence, features.size(0), self.embedding_dim)
        tiled = sentence[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        joint = nn.functional.leaky_relu(self.cond_joint(torch.cat([features, tiled], 1)), 0.2)
        return self.cond_logits(joint).mean((1, 2, 3))

    def forward(self, images: Tensor, sentence: Tensor) -> DiscriminatorOutput:
        h = self.features(images)
        return DiscriminatorOutput(self.unconditional(h), self.conditional(h, sentence))
