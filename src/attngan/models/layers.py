"""Building blocks shared by the networks: shape checks, GLU blocks and the release's init."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from attngan.config import UPSAMPLE_MODES


def check_shape(name: str, x: Tensor, *dims: int | None) -> None:
    """Raise a ValueError unless ``x`` has ``len(dims)`` dimensions matching ``dims``
    (``None`` matches any size). Used at every module boundary."""
    if x.dim() != len(dims) or any(d not in (None, s) for d, s in zip(dims, x.shape, strict=True)):
        want = ", ".join("*" if d is None else str(d) for d in dims)
        raise ValueError(f"{name}: expected shape [{want}], got {list(x.shape)}")


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


def _glu_grad(x: Tensor, grad: Tensor, out: Tensor) -> Tensor:
    """The gradient of ``F.glu(x, 1)`` for ``grad``, written into ``out`` (``x`` itself may be
    ``out``), in ``out``'s layout."""
    a, b = x.chunk(2, 1)
    gate = torch.sigmoid(b)
    grad_a, grad_b = out.chunk(2, 1)
    torch.mul(grad, a, out=grad_b)  # d/db a·σ(b) = a·σ(b)·(1 − σ(b)), before a is overwritten
    grad_b.mul_(gate).addcmul_(grad_b, gate, value=-1.0)
    torch.mul(grad, gate, out=grad_a)  # d/da a·σ(b) = σ(b)
    return out


class _ChannelsLastGLU(torch.autograd.Function):
    """``F.glu(x, 1)`` whose gradient keeps ``x``'s channels-last layout. ATen's ``glu_backward``
    returns a contiguous (NCHW) gradient, and the BatchNorm backward before it then runs its
    mixed-layout path: on the CPU 8x slower than either layout alone (the birds generator's
    BatchNorm + GLU at 256 px: 1.86 s instead of 0.19 s, forward and backward)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return F.glu(x, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return _glu_grad(x, grad, torch.empty_like(x))


def glu(x: Tensor) -> Tensor:
    """``F.glu(x, dim=1)``; for a channels-last map, with a channels-last gradient too."""
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    if nhwc and x.requires_grad and not x.is_contiguous():
        return _ChannelsLastGLU.apply(x)
    return F.glu(x, dim=1)


class _BatchNormGLU(torch.autograd.Function):
    """``F.glu(bn(x), 1)`` of a BatchNorm in training mode, ATen's kernels both ways, keeping
    only ``x`` (and the batch statistics) for the backward pass, which normalises ``x`` again:
    the normalised map, the GLU's input, is not held from the forward to the backward pass
    (the birds generator at batch 8: 0.34 GB less at the step's peak)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor,
                running_var: Tensor, momentum: float, eps: float) -> Tensor:  # fmt: skip
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps = eps
        return F.glu(y, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        scale = weight * invstd
        shift = (bias - mean * scale).view(1, -1, 1, 1)
        y = torch.addcmul(shift, x, scale.view(1, -1, 1, 1))  # in x's layout
        grad_y = _glu_grad(y, grad, y)
        mask = list(ctx.needs_input_grad[:3])
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True, ctx.eps, mask
        )
        return grad_x, grad_w, grad_b, None, None, None, None


def batchnorm_glu(bn: nn.Module, x: Tensor, fused: bool = False) -> Tensor:
    """``glu(bn(x))``; with ``fused``, a plain ``nn.BatchNorm2d`` in training mode with running
    statistics runs as :class:`_BatchNormGLU` (not under autocast or torch.compile, whose own
    fusion decides what to keep): the same values, and its running statistics and batch count
    updated as ``bn`` updates them."""
    if (
        fused
        and type(bn) is nn.BatchNorm2d
        and bn.training
        and bn.affine
        and bn.track_running_stats
        and bn.momentum is not None
        and x.dim() == 4
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled(x.device.type)
        and not torch.compiler.is_compiling()
    ):
        bn.num_batches_tracked.add_(1)
        return _BatchNormGLU.apply(
            x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps
        )
    return glu(bn(x))


# Taps of the stride-2 transposed kernel along one axis, from the 3x3 kernel's taps W0, W1, W2:
# after nearest x2 upsampling, output row 2i reads input rows i-1 (W0) and i (W1, W2), row 2i+1
# reads i (W0, W1) and i+1 (W2); a transposed conv (stride 2, padding 1) writes input row i into
# output rows 2i-1+k, so its taps k = 0..3 are W2, W1+W2, W0+W1, W0.
UPSAMPLE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def upsample_conv_weight(weight: Tensor) -> Tensor:
    """The ``[in, out, 4, 4]`` kernel of the stride-2 transposed convolution (padding 1) that
    equals nearest x2 upsampling followed by the 3x3 convolution (padding 1) of ``weight [out,
    in, 3, 3]``: 16 multiply-adds per input pixel and channel pair instead of 36. Differentiable
    in ``weight``, and summed in its own dtype even under autocast."""
    taps = torch.tensor(UPSAMPLE_TAPS, dtype=weight.dtype, device=weight.device)
    with torch.autocast(weight.device.type, enabled=False):
        return torch.einsum("ka,lb,oiab->iokl", taps, taps, weight)


class UpBlock(nn.Module):
    """Nearest x2 -> 3x3 conv to 2*out -> BatchNorm -> GLU: [B, in, H, W] -> [B, out, 2H, 2W].
    With ``mode="bilinear"`` (``model.upsample``, not in the release) the upsampling is bilinear
    (half-pixel centres), which does not repeat each pixel into a 2x2 block.

    With ``transposed`` (``train.fast_layers``), the upsampling and the convolution run as one
    stride-2 transposed convolution whose kernel is computed from ``conv.weight`` on every call
    (:func:`upsample_conv_weight`): the same outputs and gradients to float rounding, 4/9 of the
    multiply-adds, no upsampled copy of the input; the parameters and their keys are unchanged.
    With ``fused`` (``train.fast_layers`` too), BatchNorm and GLU run as :func:`batchnorm_glu`.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest") -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"mode must be one of {UPSAMPLE_MODES} (got {mode!r})")
        self.conv = conv3x3(in_channels, 2 * out_channels)
        self.bn = nn.BatchNorm2d(2 * out_channels)
        self.mode = mode
        self.transposed = self.fused = False

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "bilinear":  # no transposed form: the kernel identity is nearest's
            x = self.conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        elif self.transposed:
            weight = upsample_conv_weight(self.conv.weight)
            if self.conv.weight.is_contiguous(memory_format=torch.channels_last):
                weight = weight.contiguous(memory_format=torch.channels_last)  # the model's layout
            x = F.conv_transpose2d(x, weight, self.conv.bias, stride=2, padding=1)
        else:
            x = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return batchnorm_glu(self.bn, x, self.fused)


class ResBlock(nn.Module):
    """x + BN(conv(GLU(BN(conv(x))))), channels kept (SPEC §5). With ``fused``
    (``train.fast_layers``), the first BatchNorm and the GLU run as :func:`batchnorm_glu`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, 2 * channels)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.fused = False

    def forward(self, x: Tensor) -> Tensor:
        h = batchnorm_glu(self.bn1, self.conv1(x), self.fused)
        return x + self.bn2(self.conv2(h))


# A convolution runs as one matrix product (:func:`conv2d_gemm`, ConvBlock.gemm) on the CPU when
# its output has at most this many pixels per image and its weight at least this many elements:
# the discriminators' deep layers (4x4 outputs of 4-33 M weights) at the birds and coco widths,
# where oneDNN ran 40-60 % slower than MKL's matrix product (docs/performance.md)
GEMM_MAX_PIXELS = 16
GEMM_MIN_WEIGHT = 2**22


def conv2d_gemm(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int
) -> Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` as one matrix product of the input's patches
    (``[B * pixels, in * k * k]``, in the weight's own element order, so a weight of either memory
    format is read in place) and the weight: the same outputs and gradients to float rounding.
    The output keeps ``x``'s memory format."""
    batch, nhwc = x.size(0), x.is_contiguous(memory_format=torch.channels_last)
    out_channels, _, kh, kw = weight.shape
    if padding:
        x = F.pad(x, (padding,) * 4)
    # [B, rows, cols, in, kh, kw]: every output pixel's patch, a view of the (padded) input
    patches = x.permute(0, 2, 3, 1).unfold(1, kh, stride).unfold(2, kw, stride)
    rows, cols = patches.size(1), patches.size(2)
    if weight.is_contiguous():
        matrix = weight.view(out_channels, -1)  # [out, in*kh*kw]
    else:  # channels-last: [out, kh*kw*in]
        matrix = weight.permute(0, 2, 3, 1).reshape(out_channels, -1)
        patches = patches.permute(0, 1, 2, 4, 5, 3)
    # F.linear, whose weight gradient comes out [out, in*k*k] as the weight is laid out (a
    # product with matrix.t() would give it transposed, and a copy into .grad)
    out = F.linear(patches.reshape(batch * rows * cols, -1), matrix, bias)
    out = out.view(batch, rows, cols, out_channels).permute(0, 3, 1, 2)  # channels-last strides
    return out if nhwc else out.contiguous()


class ConvBlock(nn.Module):
    """Conv (no bias) -> optional BatchNorm -> LeakyReLU(0.2): the discriminators' unit.

    With ``gemm`` (``train.fast_layers``), on the CPU a convolution with a small output and a large
    weight (``GEMM_MAX_PIXELS``, ``GEMM_MIN_WEIGHT``) runs as :func:`conv2d_gemm`.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: bool = True
    ) -> None:
        super().__init__()
        padding = 1  # 4x4 stride 2 halves the side; 3x3 stride 1 keeps it
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.gemm = False

    def _use_gemm(self, x: Tensor) -> bool:
        if not self.gemm or x.device.type != "cpu" or x.dim() != 4:
            return False
        conv = self.conv
        (kh, kw), (s, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
        pixels = ((x.size(2) + 2 * p - kh) // s + 1) * ((x.size(3) + 2 * p - kw) // s + 1)
        weight = conv.out_channels * conv.in_channels * kh * kw
        return pixels <= GEMM_MAX_PIXELS and weight >= GEMM_MIN_WEIGHT and conv.groups == 1

    def forward(self, x: Tensor) -> Tensor:
        if self._use_gemm(x):
            conv = self.conv
            x = conv2d_gemm(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0])
        else:
            x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.leaky_relu(x, 0.2)


def use_fast_layers(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch ``train.fast_layers`` for every block of ``model``: up-blocks as transposed
    convolutions (:class:`UpBlock`), BatchNorm + GLU keeping one map for the backward pass
    (:func:`batchnorm_glu`), large deep convolutions as one matrix product on the CPU
    (:class:`ConvBlock`). The same outputs and gradients to float rounding; returns ``model``."""
    for module in model.modules():
        if isinstance(module, UpBlock):
            module.transposed = module.fused = on
        elif isinstance(module, ResBlock):
            module.fused = on
        elif isinstance(module, ConvBlock):
            module.gemm = on
    return model


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
