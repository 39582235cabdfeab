"""Slow, literal references the fast code is tested against: the release's per-caption loop for the
DAMSM losses (SPEC §4) and its padding-mask tiling (taoxugit/AttnGAN#93)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _posterior_losses(scores: Tensor, class_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    batch = scores.size(0)
    if class_ids is not None:
        masks = []
        for i in range(batch):
            row = class_ids == class_ids[i]
            row[i] = False
            masks.append(row)
        scores = scores.masked_fill(torch.stack(masks), float("-inf"))
    labels = torch.arange(batch)
    return F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)


def word_loss_loop(
    regions: Tensor,
    words: Tensor,
    lengths: Tensor,
    class_ids: Tensor | None = None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """One caption at a time against every image, as the release computes it."""
    batch, dim, height, width = regions.shape
    context = regions.reshape(batch, dim, height * width)  # [B, D, N]
    columns, maps = [], []
    for i in range(batch):
        n = int(lengths[i])
        word = words[i, :, :n].unsqueeze(0).repeat(batch, 1, 1)  # [B, D, n]
        attn = torch.bmm(context.transpose(1, 2), word)  # [B, N, n]
        attn = attn.reshape(-1, n).softmax(dim=1).reshape(batch, -1, n)  # over words
        attn = attn.transpose(1, 2).reshape(-1, height * width)  # [B*n, N]
        attn = (attn * gamma1).softmax(dim=1).reshape(batch, n, -1)  # over regions
        weighted = torch.bmm(context, attn.transpose(1, 2))  # [B, D, n]
        maps.append(attn[i].reshape(n, height, width))
        a = word.transpose(1, 2).reshape(batch * n, dim)
        b = weighted.transpose(1, 2).reshape(batch * n, dim)
        cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-8)
        row = torch.log(torch.exp(cos.reshape(batch, n) * gamma2).sum(dim=1, keepdim=True))
        columns.append(row)  # [B_img, 1]
    scores = torch.cat(columns, dim=1) * gamma3  # [B_img, B_cap]
    loss0, loss1 = _posterior_losses(scores, class_ids)
    return loss0, loss1, maps


def sentence_loss_loop(
    image: Tensor, sentence: Tensor, class_ids: Tensor | None = None, gamma3: float = 10.0
) -> tuple[Tensor, Tensor]:
    batch = image.size(0)
    scores = torch.empty(batch, batch, dtype=image.dtype)
    for j in range(batch):
        for i in range(batch):
            dot = (image[j] * sentence[i]).sum()
            scores[j, i] = dot / (image[j].norm() * sentence[i].norm()).clamp(min=1e-8)
    return _posterior_losses(scores * gamma3, class_ids)


def release_attention(h: Tensor, projected_words: Tensor, mask: Tensor) -> Tensor:
    """The release's GlobalAttentionGeneral softmax with its mask tiling, on already projected
    words ``[B, C, T]``: returns the attention ``[B, T, H, W]``."""
    batch, _, height, width = h.shape
    pixels = height * width
    target = h.reshape(batch, -1, pixels).transpose(1, 2)  # [B, HW, C]
    attn = torch.bmm(target, projected_words).reshape(batch * pixels, -1)
    attn = attn.masked_fill(mask.repeat(pixels, 1), float("-inf")).softmax(dim=1)
    attn = attn.reshape(batch, pixels, -1).transpose(1, 2)
    return attn.reshape(batch, -1, height, width)
