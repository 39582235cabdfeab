"""Evaluation measures (SPEC §8). R-precision lives here; the image metrics join it later."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class RPrecision(NamedTuple):
    mean: float  # top-1 accuracy of the true caption among the candidates, mean over folds
    std: float  # standard deviation over folds
    folds: list[float]


def r_precision(
    image: Tensor,
    sentence: Tensor,
    candidates: int = 100,
    folds: int = 10,
    seed: int = 0,
) -> RPrecision:
    """For each image ``i``, rank its own caption ``sentence[i]`` among ``candidates - 1`` captions
    of other images drawn at random, by cosine similarity of the global features (SPEC §8); the
    score is the share ranked first (ties count against). Items are split into ``folds`` folds.

    ``image [N, D]``, ``sentence [N, D]``; needs ``N >= candidates``.
    """
    n = image.size(0)
    if sentence.shape != image.shape:
        raise ValueError(f"image {list(image.shape)} and sentence {list(sentence.shape)} differ")
    if n < candidates:
        raise ValueError(f"R-precision with {candidates} candidates needs >= {candidates} items")
    folds = max(1, min(folds, n))
    gen = torch.Generator().manual_seed(seed)
    image = F.normalize(image.double(), dim=1)
    sentence = F.normalize(sentence.double(), dim=1)
    # candidates - 1 distinct others per item: a random draw from 0..n-2, shifted past item i
    others = torch.stack([torch.randperm(n - 1, generator=gen)[: candidates - 1] for _ in range(n)])
    others = others + (others >= torch.arange(n)[:, None]).long()
    sims_true = (image * sentence).sum(1)  # [N]
    sims_other = torch.einsum("nd,nkd->nk", image, sentence[others])  # [N, candidates - 1]
    hits = (sims_true[:, None] > sims_other).all(dim=1).double()
    scores = [chunk.mean().item() for chunk in hits.tensor_split(folds)]
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    return RPrecision(mean, std, scores)
