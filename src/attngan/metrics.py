"""Evaluation measures (SPEC §8): R-precision, the Frechet and kernel Inception distances and the
Inception Score. They take features or class probabilities; the networks that make those live in
:mod:`attngan.evaluation`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
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


class FeatureStats(NamedTuple):
    """The mean and covariance of a feature set, in float64 (the Frechet distance's inputs)."""

    mean: np.ndarray  # [D]
    cov: np.ndarray  # [D, D]
    count: int


def feature_stats(features: Tensor | np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance of ``features [N, D]`` (N >= 2)."""
    x = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features)
    x = x.astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got {list(x.shape)}")
    return FeatureStats(x.mean(axis=0), np.cov(x, rowvar=False), x.shape[0])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al. 2017).

    ``tr (S_a S_b)^(1/2)`` is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix ``S_a^(1/2) S_b S_a^(1/2)``, which has the same eigenvalues as ``S_a S_b``
    and, unlike a general matrix square root, never turns complex from rounding."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    root_a = _psd_sqrt(a.cov)
    middle = root_a @ b.cov @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = a.mean - b.mean
    value = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_root
    return float(max(value, 0.0))


class MeanStd(NamedTuple):
    mean: float
    std: float


def kernel_inception_distance(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> MeanStd:
    """The unbiased squared MMD between two feature sets under the cubic polynomial kernel
    ``k(x, y) = (x.y / D + 1)^3`` (Binkowski et al. 2018), averaged over ``subsets`` random subsets
    of ``min(subset_size, N_a, N_b)`` items of each (one subset, std 0, when that is both sets
    whole)."""
    x = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    y = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sets must be [N, D] alike: {list(x.shape)}, {list(y.shape)}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 items in each set")
    if m == x.shape[0] == y.shape[0]:
        subsets = 1  # every subset would be the whole of both sets: one estimate, no spread
    rng = np.random.default_rng(seed)
    dim = x.shape[1]
    scores = []
    for _ in range(subsets):
        xs = x[rng.choice(x.shape[0], m, replace=False)]
        ys = y[rng.choice(y.shape[0], m, replace=False)]
        kxx = (xs @ xs.T / dim + 1) ** 3
        kyy = (ys @ ys.T / dim + 1) ** 3
        kxy = (xs @ ys.T / dim + 1) ** 3
        off = m * (m - 1)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / off
        scores.append(within - 2 * kxy.mean())
    values = np.asarray(scores)
    return MeanStd(float(values.mean()), float(values.std()))


def inception_score(probs: Tensor | np.ndarray, splits: int = 10) -> MeanStd:
    """``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` equal parts of ``probs [N, C]`` (rows are
    class distributions), mean and standard deviation over the parts (Salimans et al. 2016)."""
    p = np.asarray(probs.detach().cpu() if isinstance(probs, Tensor) else probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probs must be [N, C], got {list(p.shape)}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1, atol=1e-4):
        raise ValueError("each row of probs must be a probability distribution")
    splits = max(1, min(splits, p.shape[0]))
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    values = np.asarray(scores)
    return MeanStd(float(values.mean()), float(values.std()))
