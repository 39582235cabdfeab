"""The generator's inference copy, what :class:`~attngan.pipeline.Pipeline` samples with: the
eval-mode generator's images to float rounding (~1e-6), in less time and memory traffic.

:func:`inference_copy` makes it from a generator; the generator's own ``forward`` runs on it, with
these layers swapped in:

- BatchNorm folded into the convolution or linear layer before it (:func:`fold_batchnorm`);
- every up-block's nearest x2 upsampling and 3x3 convolution as one stride-2 4x4 transposed
  convolution (:func:`transposed_upsample_conv`): 4/9 of the multiply-adds, and no upsampled copy
  of its input (the birds config's 256 px up-block: 68.6 ms on one CPU core, 19.8 ms so);
- channels-last (NHWC) memory format: oneDNN's 3x3 convolutions of 64 output channels ran 1.5x
  faster in it on the CPU (docs/performance.md, "Generation at 256 px");
- word attention in that layout (:class:`ChannelsLastWordAttention`, no transposed copies);
- on the CPU, each refinement stage on slices of the batch whose feature maps stay small
  (:class:`RowChunks`): a 16-image batch's 256 px maps are hundreds of MB that the allocator
  takes fresh from the kernel on every call, page fault by page fault.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attngan.models.attention import WordAttention
from attngan.models.layers import UpBlock, fold_batchnorm, upsample_conv_weight

# Feature-map elements per slice of a refinement stage on the CPU (see RowChunks): one 256 px
# image of the birds config per slice, several of the smaller stages.
CPU_CHUNK_ELEMENTS = 2**19


@torch.no_grad()
def transposed_upsample_conv(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """``conv(F.interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3 convolution with
    padding 1, as one stride-2 transposed convolution of ``x``: the same outputs to float
    rounding, with 16 multiply-adds per input pixel and channel pair instead of 36."""
    if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1):
        raise ValueError(f"need a 3x3 convolution with padding 1 and stride 1 (got {conv})")
    if conv.groups != 1 or conv.dilation != (1, 1):
        raise ValueError(f"need an ungrouped, undilated convolution (got {conv})")
    weight = conv.weight
    up = nn.ConvTranspose2d(
        conv.in_channels, conv.out_channels, 4, stride=2, padding=1, bias=conv.bias is not None
    ).to(device=weight.device, dtype=weight.dtype)
    up.weight.copy_(upsample_conv_weight(weight))  # the kernel's taps combined per phase
    if conv.bias is not None:
        up.bias.copy_(conv.bias)
    return up


class TransposedUpBlock(nn.Module):
    """A folded :class:`~attngan.models.layers.UpBlock` (its BatchNorm in ``conv``): GLU of the
    transposed convolution of ``x``. Tiny inputs (the first stage's 4x4 map at batch < 4) keep
    the upsampling and the 3x3 convolution: there, reading the transposed kernel (16/9 of the
    weights) costs more than the multiply-adds it saves."""

    def __init__(self, conv: nn.Conv2d, min_pixels: int = 64) -> None:
        super().__init__()
        self.conv = conv
        self.up = transposed_upsample_conv(conv)
        self.min_pixels = min_pixels  # batch x height x width from which `up` runs

    def forward(self, x: Tensor) -> Tensor:
        if x.size(0) * x.size(2) * x.size(3) < self.min_pixels:
            return F.glu(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")), dim=1)
        return F.glu(self.up(x), dim=1)


class ChannelsLastWordAttention(WordAttention):
    """:class:`~attngan.models.attention.WordAttention` for the inference copy's channels-last
    image features (which its forward computes without transposed copies): an all-False mask
    (no padding, what the pipeline's batches have) on the CPU skips the masking."""

    @classmethod
    def from_attention(cls, attention: WordAttention) -> ChannelsLastWordAttention:
        proj = attention.word_proj
        new = cls(proj.out_features, proj.in_features, attention.legacy_mask_order)
        new.load_state_dict(attention.state_dict())
        return new.to(device=proj.weight.device, dtype=proj.weight.dtype)

    def _mask_scores(self, scores: Tensor, mask: Tensor) -> Tensor:
        if mask.device.type != "cpu" or bool(mask.any()):
            return super()._mask_scores(scores, mask)
        return scores


class RowChunks(nn.Module):
    """``module`` run on slices of the batch of at most ``max(1, elements // row)`` rows, ``row``
    being the elements of one row of the first input; the outputs (tensors or tuples of them) are
    concatenated. The rows of a batch must be independent: with the release's mask order
    (``legacy_mask_order``) they are not where there is padding, and such batches run whole."""

    def __init__(self, module: nn.Module, elements: int) -> None:
        super().__init__()
        self.module = module
        self.elements = elements
        self.legacy = any(getattr(m, "legacy_mask_order", False) for m in module.modules())

    def forward(self, *args: Tensor):
        batch = args[0].size(0)
        rows = max(1, self.elements // max(1, args[0][0].numel()))
        if rows >= batch or (self.legacy and any(a.dtype == torch.bool and a.any() for a in args)):
            return self.module(*args)
        parts = [self.module(*chunk) for chunk in zip(*(a.split(rows) for a in args), strict=True)]
        if isinstance(parts[0], Tensor):
            return torch.cat(parts)
        joined = [torch.cat(p) for p in zip(*parts, strict=True)]
        return tuple(joined) if type(parts[0]) is tuple else type(parts[0])(*joined)


@torch.no_grad()
def inference_copy(
    generator: nn.Module,
    transposed: bool = True,
    channels_last: bool = True,
    chunk_elements: int | None = None,
) -> nn.Module:
    """An eval-mode, gradient-free copy of ``generator`` with BatchNorm folded and the layers of
    this module's docstring swapped in (each switch off gives the folded copy without it;
    ``chunk_elements=None`` runs whole batches). ``generator`` itself is not changed."""
    model = fold_batchnorm(generator)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if (
                transposed
                and isinstance(child, UpBlock)
                and child.mode == "nearest"
                and isinstance(child.bn, nn.Identity)
            ):
                setattr(module, name, TransposedUpBlock(child.conv))
            elif channels_last and type(child) is WordAttention:
                setattr(module, name, ChannelsLastWordAttention.from_attention(child))
    stages = getattr(model, "stages", None)
    if chunk_elements is not None and isinstance(stages, nn.ModuleList):
        for i in range(1, len(stages)):  # the refinement stages
            stages[i] = RowChunks(stages[i], chunk_elements)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)
