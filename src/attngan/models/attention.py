"""Word attention of the refinement stages (paper Eq. 2; the release's GlobalAttentionGeneral)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attngan.models.layers import check_shape


class WordAttention(nn.Module):
    """Image features ``h [B, C, H, W]`` attend over words ``e [B, D, T]``.

    Returns the word-context ``[B, C, H, W]`` and the attention ``[B, T, H, W]`` (it sums to 1 over
    the words at each pixel; padded words get 0).

    Args:
        channels: C, the image features' channels.
        embedding_dim: D, the word features' width.
        legacy_mask_order: mask padding as the release does (taoxugit/AttnGAN#93): it tiles the
            ``[B, T]`` mask over the ``B*HW`` score rows in the wrong order, so pixel q of sample b
            uses the padding of sample ``(b*HW + q) % B``. Only for parity with released weights.
    """

    def __init__(self, channels: int, embedding_dim: int, legacy_mask_order: bool = False) -> None:
        super().__init__()
        self.word_proj = nn.Linear(embedding_dim, channels, bias=False)  # U in Eq. 2
        self.legacy_mask_order = legacy_mask_order

    def forward(self, h: Tensor, words: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        batch, channels, height, width = h.shape
        check_shape("words", words, batch, self.word_proj.in_features, None)
        steps = words.size(2)
        check_shape("mask", mask, batch, steps)
        e = self.word_proj(words.transpose(1, 2))  # [B, T, C]  e' = U e
        # channels-last features: their [B, HW, C] view is the scores' left factor as it is, and
        # the context comes out channels-last too (no transposed copies either way)
        nhwc = h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous()
        if nhwc:
            query = h.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        else:
            query = h.flatten(2).transpose(1, 2)  # [B, HW, C]
        scores = self._mask_scores(torch.bmm(query, e.transpose(1, 2)), mask)  # [B, HW, T]
        beta = scores.softmax(dim=2)  # Eq. 2: softmax over the words
        if nhwc:
            context = torch.bmm(beta, e).view(batch, height, width, channels).permute(0, 3, 1, 2)
        else:
            context = torch.bmm(e.transpose(1, 2), beta.transpose(1, 2))  # [B, C, HW]
            context = context.view(batch, channels, height, width)
        attention = beta.transpose(1, 2).reshape(batch, steps, height, width)
        return context, attention

    def _mask_scores(self, scores: Tensor, mask: Tensor) -> Tensor:
        """``h^T e'`` scores ``[B, HW, T]`` with the padded words' at -inf."""
        return scores.masked_fill(self._score_mask(mask, scores.size(1)), float("-inf"))

    def _score_mask(self, mask: Tensor, pixels: int) -> Tensor:
        """The ``[B, HW, T]`` (or broadcastable) padding mask for the scores."""
        if not self.legacy_mask_order:
            return mask[:, None, :]
        batch = mask.size(0)
        rows = torch.arange(batch * pixels, device=mask.device) % batch
        return mask[rows].view(batch, pixels, mask.size(1))
