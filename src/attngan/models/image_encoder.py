"""DAMSM image encoders: region features ``[B, D, h, w]`` and a global feature ``[B, D]`` (SPEC §3).

:class:`InceptionImageEncoder` is the paper's: a frozen Inception-v3 trunk with two trained
projections. :class:`CNNImageEncoder` is a small network trained from scratch with the same output
contract, for small images or machines without Inception weights (an addition, not in the paper).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attngan.errors import ModelError
from attngan.models.layers import ConvBlock, check_shape

# Inception-v3 layers up to the region features (Mixed_6e, 768 x 17 x 17) and after them.
# A 3x3 stride-2 max pool follows the two marked layers.
INCEPTION_LOW = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
)  # fmt: skip
INCEPTION_HIGH = ("Mixed_7a", "Mixed_7b", "Mixed_7c")
_POOL_AFTER = ("Conv2d_2b_3x3", "Conv2d_4a_3x3")


class ImageFeatures(NamedTuple):
    regions: Tensor  # [B, D, h, w] sub-region features (17 x 17 for Inception)
    image: Tensor  # [B, D] global feature


class InceptionImageEncoder(nn.Module):
    """Images ``[B, 3, H, W]`` in [-1, 1] -> :class:`ImageFeatures` with 17x17 regions.

    Args:
        embedding_dim: D, the joint word/region space.
        align_corners: the 299x299 bilinear resize's ``align_corners`` (the release's is uncertain:
            PyTorch 0.3 behaved as True, 0.4 as False).
        freeze_trunk: Inception's parameters get no gradient (the release); its BatchNorm statistics
            still follow the data in train mode, as the release's did.
    """

    def __init__(
        self, embedding_dim: int = 256, align_corners: bool = False, freeze_trunk: bool = True
    ) -> None:
        super().__init__()
        from torchvision.models.inception import Inception3  # costs seconds: import when used

        trunk = Inception3(aux_logits=False, init_weights=False)
        layers = INCEPTION_LOW + INCEPTION_HIGH
        self.inception = nn.ModuleDict({name: getattr(trunk, name) for name in layers})
        self.region_proj = nn.Conv2d(768, embedding_dim, 1, bias=False)
        self.global_proj = nn.Linear(2048, embedding_dim)
        self.embedding_dim = embedding_dim
        self.align_corners = align_corners
        with torch.no_grad():
            self.region_proj.weight.uniform_(-0.1, 0.1)
            self.global_proj.weight.uniform_(-0.1, 0.1)
        if freeze_trunk:
            self.inception.requires_grad_(False)

    def forward(self, images: Tensor) -> ImageFeatures:
        check_shape("images", images, None, 3, None, None)
        size, corners = (299, 299), self.align_corners
        x = F.interpolate(images, size=size, mode="bilinear", align_corners=corners)
        for name in INCEPTION_LOW:
            x = self.inception[name](x)
            if name in _POOL_AFTER:
                x = F.max_pool2d(x, kernel_size=3, stride=2)
        regions = self.region_proj(x)  # [B, 768, 17, 17] -> [B, D, 17, 17]
        for name in INCEPTION_HIGH:
            x = self.inception[name](x)
        x = F.avg_pool2d(x, kernel_size=8).flatten(1)  # [B, 2048, 8, 8] -> [B, 2048]
        return ImageFeatures(regions, self.global_proj(x))

    def load_inception_weights(self, path: str | Path) -> None:
        """Load an ImageNet Inception-v3 state dict (torchvision's layout, e.g.
        ``inception_v3_google-0cc3c7bd.pth``) into the trunk; its classifier keys are ignored."""
        from attngan.checkpoints import load_state_dict_file

        state = load_state_dict_file(path)
        wanted = self.inception.state_dict()
        for key, value in wanted.items():  # absent from files saved before PyTorch 0.4.1
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = torch.zeros_like(value)
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ModelError(
                f"{path}: not an Inception-v3 state dict ({len(missing)} trunk keys missing, "
                f"e.g. '{missing[0]}')"
            )
        for key, value in wanted.items():
            if state[key].shape != value.shape:
                raise ModelError(
                    f"{path}: '{key}' has shape {list(state[key].shape)}, "
                    f"expected {list(value.shape)}"
                )
        self.inception.load_state_dict({k: state[k] for k in wanted})


class CNNImageEncoder(nn.Module):
    """A small from-scratch encoder: images (resized to ``input_size``) -> regions at 1/8 of
    ``input_size`` and a global feature, the Inception encoder's contract.

    Args:
        embedding_dim: D.
        input_size: images are resized to this side first (averaged down by an integer factor, else
            bilinear), so any stage can be encoded.
        channels: width of the first block; it doubles at each of the three down-steps.
    """

    def __init__(self, embedding_dim: int = 256, input_size: int = 64, channels: int = 32) -> None:
        super().__init__()
        if input_size < 16 or input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, >= 16 (got {input_size})")
        c = channels
        self.input_size = input_size
        self.embedding_dim = embedding_dim
        self.stem = ConvBlock(3, c, 3, 1)
        self.down = nn.Sequential(
            ConvBlock(c, 2 * c, 4, 2), ConvBlock(2 * c, 4 * c, 4, 2), ConvBlock(4 * c, 8 * c, 4, 2)
        )
        self.region_proj = nn.Conv2d(8 * c, embedding_dim, 1, bias=False)
        self.head = ConvBlock(8 * c, 8 * c, 4, 2)
        # the global feature keeps where things are (captions name positions): a linear map of
        # the whole s/16 x s/16 head map, not a spatial average
        self.global_proj = nn.Linear(8 * c * (input_size // 16) ** 2, embedding_dim)

    def resize(self, images: Tensor) -> Tensor:
        """``images`` at ``input_size`` (averaged down by an integer factor, else bilinear)."""
        check_shape("images", images, None, 3, None, None)
        side = images.shape[-1]
        if images.shape[-2] == side and side > self.input_size and side % self.input_size == 0:
            return F.avg_pool2d(images, side // self.input_size)  # = bilinear at 2x, no aliasing
        if images.shape[-2:] != (self.input_size, self.input_size):
            size = (self.input_size, self.input_size)
            return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """The trunk's four maps: the stem's ``[B, c, s, s]``, then each down-step's
        ``[B, 2c, s/2, s/2]``, ``[B, 4c, s/4, s/4]``, ``[B, 8c, s/8, s/8]`` (s = input_size)."""
        maps = [self.stem(self.resize(images))]
        for block in self.down:
            maps.append(block(maps[-1]))
        return maps

    def forward(self, images: Tensor) -> ImageFeatures:
        x = self.down(self.stem(self.resize(images)))  # [B, 8c, s/8, s/8]
        regions = self.region_proj(x)  # [B, D, s/8, s/8]
        head = self.head(x).flatten(1)  # [B, 8c * (s/16)^2]
        return ImageFeatures(regions, self.global_proj(head))
