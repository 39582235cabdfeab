"""The evaluation measures on inputs whose answers are known (SPEC §8)."""

import numpy as np
import pytest
import torch

from attngan.metrics import (
    feature_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    r_precision,
)


def _features(n=200, d=16, seed=0, shift=0.0, scale=1.0):
    """``n`` draws of one correlated Gaussian (the same for every ``seed``), shifted and scaled."""
    mixing = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)
    return np.random.default_rng(seed).normal(size=(n, d)) @ mixing * scale + shift


def test_fid_of_a_feature_set_with_itself_is_zero():
    stats = feature_stats(_features())
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_a_scipy_computation():
    linalg = pytest.importorskip("scipy.linalg")
    a, b = feature_stats(_features(seed=1)), feature_stats(_features(seed=2, shift=0.3, scale=1.5))
    root = linalg.sqrtm(a.cov @ b.cov)
    diff = a.mean - b.mean
    want = diff @ diff + np.trace(a.cov + b.cov - 2 * root.real)
    got = frechet_distance(a, b)
    assert got == pytest.approx(want, rel=1e-6)
    assert got > 0.1  # the two sets differ


def test_fid_grows_with_the_shift_and_is_symmetric():
    base = feature_stats(_features(seed=3))
    near = feature_stats(_features(seed=4, shift=0.1))
    far = feature_stats(_features(seed=4, shift=1.0))
    assert frechet_distance(base, near) < frechet_distance(base, far)
    assert frechet_distance(base, far) == pytest.approx(frechet_distance(far, base), rel=1e-9)


def test_fid_of_mismatched_feature_sizes_is_an_error():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(feature_stats(_features(d=4)), feature_stats(_features(d=5)))


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    same = kernel_inception_distance(
        _features(seed=5), _features(seed=6), subsets=20, subset_size=100
    )
    other = kernel_inception_distance(
        _features(seed=5), _features(seed=6, shift=1.0), subsets=20, subset_size=100
    )
    assert abs(same.mean) < 0.2 and other.mean > 10 * max(abs(same.mean), 0.05)


def test_inception_score_of_a_constant_classifier_is_one():
    probs = np.tile(np.array([[0.2, 0.5, 0.3]]), (60, 1))
    score = inception_score(probs, splits=3)
    assert score.mean == pytest.approx(1.0, abs=1e-9) and score.std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_a_perfect_balanced_classifier_is_the_number_of_classes():
    classes = 7
    probs = torch.eye(classes).repeat(10, 1)  # 70 one-hot rows, each class 10 times
    assert inception_score(probs, splits=1).mean == pytest.approx(classes, rel=1e-9)
    assert inception_score(probs, splits=10).mean == pytest.approx(classes, rel=1e-9)


def test_inception_score_rejects_rows_that_are_not_distributions():
    with pytest.raises(ValueError, match="probability distribution"):
        inception_score(np.array([[0.5, 0.2]]))


def test_r_precision_of_a_perfect_encoder_pair_is_one():
    torch.manual_seed(0)
    feats = torch.randn(300, 32)
    result = r_precision(feats, feats.clone(), candidates=100, folds=10)
    assert result.mean == 1.0 and result.std == 0.0 and len(result.folds) == 10


def test_r_precision_of_unrelated_features_is_near_chance():
    torch.manual_seed(0)
    result = r_precision(torch.randn(1000, 32), torch.randn(1000, 32), candidates=100)
    assert result.mean < 0.05


def test_kid_over_whole_sets_is_the_unbiased_mmd_of_the_cubic_kernel():
    x, y = _features(n=30, d=4, seed=7), _features(n=30, d=4, seed=8, shift=0.5)
    k = lambda a, b: (a @ b.T / 4 + 1) ** 3  # noqa: E731
    n = len(x)
    off = n * (n - 1)
    kxx, kyy = k(x, x), k(y, y)
    want = (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
    want -= 2 * k(x, y).mean()
    got = kernel_inception_distance(x, y, subsets=50, subset_size=1000)
    assert got.mean == pytest.approx(want, rel=1e-9) and got.std == 0.0
