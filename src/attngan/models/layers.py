"""Building blocks shared by the networks: shape checks, GLU blocks and the release's init."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_shape(name: str, x: Tensor, *dims: int | None) -> None:
    """Raise a ValueError unless ``x`` has ``len(dims)`` dimensions matching ``dims``
    (``None`` matches any size). Used at every module boundary."""
    if x.dim() != len(dims) or any(d not in (None, s) for d, s in zip(dims, x.shape, strict=True)):
        want = ", ".join("*" if d is None else str(d) for d in dims)
        raise ValueError(f"{name}: expected shape [{want}], got {list(x.shape)}")


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class UpBlock(nn.Module):
    """Nearest x2 -> 3x3 conv to 2*out -> BatchNorm -> GLU: [B, in, H, W] -> [B, out, 2H, 2W]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, 2 * out_channels)
        self.bn = nn.BatchNorm2d(2 * out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.glu(self.bn(self.conv(x)), dim=1)


class ResBlock(nn.Module):
    """x + BN(conv(GLU(BN(conv(x))))), channels kept (SPEC §5)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, 2 * channels)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.glu(self.bn1(self.conv1(x)), dim=1)
        return x + self.bn2(self.conv2(h))


class ConvBlock(nn.Module):
    """Conv (no bias) -> optional BatchNorm -> LeakyReLU(0.2): the discriminators' unit."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: bool = True
    ) -> None:
        super().__init__()
        padding = 1  # 4x4 stride 2 halves the side; 3x3 stride 1 keeps it
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x, 0.2)


@torch.no_grad()
def release_init(module: nn.Module) -> None:
    """The release's initialisation: conv and linear weights orthogonal (gain 1), linear biases 0,
    BatchNorm weights N(1, 0.02) and biases 0. Apply with ``net.apply(release_init)``."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.orthogonal_(module.weight, 1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        module.weight.normal_(1.0, 0.02)
        module.bias.zero_()


# (a conv or linear layer, the BatchNorm right after it) attribute pairs of the blocks above and
# of the generator's first stage
_FOLDABLE = (("conv", "bn"), ("conv1", "bn1"), ("conv2", "bn2"), ("linear", "bn"))


@torch.no_grad()
def _fold_pair(layer: nn.Conv2d | nn.Linear, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """``bn(layer(x))`` with the statistics of eval mode as one layer: ``W' = W·s``, ``b' =
    (b − μ)·s + β`` with ``s = γ / sqrt(σ² + ε)`` per output channel."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else (
        torch.rsqrt(bn.running_var + bn.eps)
    )  # fmt: skip
    shift = bn.bias if bn.affine else torch.zeros_like(scale)
    fused = copy.deepcopy(layer)
    fused.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
    return fused


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` (in eval mode) with every BatchNorm that directly follows a
    conv or linear layer of these blocks folded into that layer: the same outputs as
    ``model.eval()`` to float rounding, with one pass over each feature map fewer."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        for layer_name, bn_name in _FOLDABLE:
            layer, bn = getattr(module, layer_name, None), getattr(module, bn_name, None)
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and isinstance(
                bn, nn.modules.batchnorm._BatchNorm
            ):
                if bn.running_mean is None or bn.running_var is None:
                    continue  # batch statistics only: nothing to fold
                setattr(module, layer_name, _fold_pair(layer, bn))
                setattr(module, bn_name, nn.Identity())
    return model.requires_grad_(False)
