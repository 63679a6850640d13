"""Tests for genjax.metrics.fid: Frechet distance (FID), KID and the Inception score."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
from scipy.stats import ortho_group

from genjax.metrics import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kernel_inception_distance,
)


def _sqrtm_reference(mu1, s1, mu2, s2) -> float:
    """The TTUR / pytorch-fid formula with scipy's general matrix square root."""
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _correlated(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) / math.sqrt(d)
    return rng.standard_normal((n, d)) @ mixing + shift + rng.standard_normal(d)


# ------------------------------------------------------------------ FID


def test_feature_statistics_are_mean_and_unbiased_covariance():
    x = _correlated(0, 50, 6).astype(np.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.shape == (6, 6)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, ddof=1), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(sigma, sigma.T)


def test_frechet_distance_matches_scipy_sqrtm():
    a, b = _correlated(1, 400, 8), _correlated(2, 300, 8, shift=0.3)
    stats_a, stats_b = feature_statistics(a), feature_statistics(b)
    ours = frechet_distance(*stats_a, *stats_b)
    ref = _sqrtm_reference(*stats_a, *stats_b)
    assert ref > 0.5
    assert ours == pytest.approx(ref, rel=1e-9)
    assert frechet_distance_from_features(a, b) == pytest.approx(ref, rel=1e-9)
    # Symmetric in its two arguments.
    assert frechet_distance(*stats_b, *stats_a) == pytest.approx(ours, rel=1e-9)


def test_frechet_distance_closed_form_for_commuting_covariances():
    """For S_i = Q diag(s_i) Q^T: d^2 = ||mu1 - mu2||^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    rng = np.random.default_rng(3)
    d = 7
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)
    q = ortho_group.rvs(d, random_state=4)
    rotated = frechet_distance(mu1, q @ np.diag(s1) @ q.T, mu2, q @ np.diag(s2) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-10)
    # Pure mean shift and pure scale.
    assert frechet_distance(mu1, np.eye(d), mu2, np.eye(d)) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-12)
    assert frechet_distance(mu1, 4.0 * np.eye(d), mu1, np.eye(d)) == pytest.approx(d * 1.0, rel=1e-12)


def test_identical_statistics_give_zero_even_when_singular():
    # N < D: a rank-deficient covariance, where sqrtm is ill-conditioned.
    x = _correlated(5, 20, 64)
    mu, sigma = feature_statistics(x)
    assert np.linalg.matrix_rank(sigma) < 64
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu, np.zeros((64, 64)), mu, np.zeros((64, 64))) == 0.0


def test_singular_covariances_give_the_mean_shift_without_round_off_bias():
    """Same rank-deficient covariance on both sides: the distance is exactly ||delta||^2.

    Not protected by the clip at 0: without dropping round-off eigenvalues, each of the
    ~45 null directions adds about sqrt(1e-16) to the trace term.
    """
    x = _correlated(5, 20, 64)
    mu, sigma = feature_statistics(x)
    delta = np.random.default_rng(9).standard_normal(64) * 0.01
    assert frechet_distance(mu, sigma, mu + delta, sigma) == pytest.approx(float(delta @ delta), rel=1e-6)


def test_frechet_distance_of_samples_approaches_the_gaussians_distance():
    """20,000 draws per side in 4-d: the plug-in estimate is within 0.03 of the truth.

    Its bias is about tr(S1 + S2) / N ~ 5e-4 here and its noise a few 1e-3; dropping
    the factor 2 of the cross term would be off by about 5.
    """
    rng = np.random.default_rng(6)
    mu1, mu2 = np.array([0.0, 1.0, -1.0, 0.5]), np.array([0.3, 1.0, -0.5, 0.0])
    s1, s2 = np.array([1.0, 0.5, 2.0, 1.5]), np.array([0.7, 0.5, 1.0, 3.0])
    a = mu1 + rng.standard_normal((20000, 4)) * np.sqrt(s1)
    b = mu2 + rng.standard_normal((20000, 4)) * np.sqrt(s2)
    truth = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert abs(frechet_distance_from_features(a, b) - truth) < 0.03


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3)), "mu1: expected a non-empty rank-1"),
        ((np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), r"sigma1: expected a \[D, D\] = \(3, 3\)"),
        ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "mu2: expected the feature dimension of mu1, 3, got 4"),
        ((np.zeros(3), np.eye(3), np.zeros(3), np.eye(3) * np.nan), "sigma2: expected finite"),
        ((np.zeros(3), np.triu(np.ones((3, 3))), np.zeros(3), np.eye(3)), "sigma1: expected a symmetric"),
        ((np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3)), "sigma2: expected a positive semi-definite"),
    ],
)
def test_frechet_distance_value_errors(args, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(*args)


def test_feature_value_errors():
    with pytest.raises(ValueError, match=r"features: expected at least 2 samples \(rows\), got 1"):
        feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="features: expected a rank-2"):
        feature_statistics(np.zeros((5, 2, 2)))
    with pytest.raises(ValueError, match="features: expected finite values, got 1 NaN"):
        feature_statistics(np.array([[0.0, 1.0], [np.inf, 2.0]]))
    with pytest.raises(ValueError, match="b: expected the feature dimension of a, 4, got 3"):
        frechet_distance_from_features(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="a: expected a rank-2"):
        frechet_distance_from_features(np.zeros(5), np.zeros((5, 3)))


# ------------------------------------------------------------------ KID


def _mmd2_double_loop(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    k = lambda u, v: (float(u @ v) / d + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (m * m)


def test_kid_matches_the_unbiased_estimator_by_double_loop():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((9, 3)), rng.standard_normal((9, 3)) + 0.5
    ref = _mmd2_double_loop(a, b)
    # subset_size >= N uses all rows in a random order; MMD^2 does not see the order.
    mean, std = kernel_inception_distance(a, b, num_subsets=4, subset_size=50, seed=1)
    assert mean == pytest.approx(ref, rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-10)


def test_kid_subset_size_is_capped_by_the_smaller_set():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((12, 3)), rng.standard_normal((5, 3))
    # m = min(1000, 12, 5) = 5: each round is a 5-row subset of a against all of b.
    exhaustive = [_mmd2_double_loop(a[list(rows)], b) for rows in itertools.combinations(range(12), 5)]
    mean, std = kernel_inception_distance(a, b, num_subsets=30, seed=2)
    assert min(exhaustive) <= mean <= max(exhaustive)
    assert std > 0.0  # different subsets of a give different estimates
    values = set(np.round(exhaustive, 10))
    one, _ = kernel_inception_distance(a, b, num_subsets=1, seed=3)
    assert round(one, 10) in values


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    """Seeds 0-4 measured |KID| <= 0.01 (std 0.02) for equal laws and 0.27-0.32 for a 0.3 shift."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((500, 16)), rng.standard_normal((500, 16))
    shifted = rng.standard_normal((500, 16)) + 0.3
    same, _ = kernel_inception_distance(a, b, num_subsets=20, subset_size=100, seed=0)
    different, _ = kernel_inception_distance(a, shifted, num_subsets=20, subset_size=100, seed=0)
    assert abs(same) < 0.04
    assert different > 0.15


def test_kid_value_errors():
    a = np.zeros((4, 3))
    with pytest.raises(ValueError, match="b: expected the feature dimension of a, 3, got 2"):
        kernel_inception_distance(a, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"b: expected at least 2 samples \(rows\), got 1"):
        kernel_inception_distance(a, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="num_subsets: expected an int >= 1, got 0"):
        kernel_inception_distance(a, a, num_subsets=0)
    with pytest.raises(ValueError, match="subset_size: expected an int >= 2, got 1"):
        kernel_inception_distance(a, a, subset_size=1)
    with pytest.raises(ValueError, match="subset_size: expected an int"):
        kernel_inception_distance(a, a, subset_size=10.5)
    with pytest.raises(ValueError, match="a: expected finite"):
        kernel_inception_distance(np.full((4, 3), np.nan), a)


# ------------------------------------------------------------------ Inception score


def _is_reference(probs: np.ndarray, splits: int) -> tuple[float, float]:
    """The improved-gan formula, written directly."""
    n = len(probs)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def test_confident_uniform_predictions_score_the_number_of_classes():
    labels = np.arange(100) % 10  # every split of 10 rows holds each class once
    onehot = np.eye(10)[labels]
    mean, std = inception_score(onehot, from_logits=False, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    mean, _ = inception_score(60.0 * onehot, from_logits=True, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-9)


def test_identical_predictions_score_one():
    row = np.random.default_rng(9).dirichlet(np.ones(7))
    mean, std = inception_score(np.tile(row, (40, 1)), from_logits=False, splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    logits = np.tile(np.log(row), (40, 1))
    assert inception_score(logits, from_logits=True, splits=1)[0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("splits", [1, 5, 53])
def test_inception_score_matches_reference_formula(splits):
    rng = np.random.default_rng(10)
    logits = 3.0 * rng.standard_normal((53, 12))  # 53 rows: the splits are ragged
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ref = _is_reference(probs, splits)
    assert inception_score(logits, from_logits=True, splits=splits) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert inception_score(probs, from_logits=False, splits=splits) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert 1.0 <= ref[0] <= 12.0


def test_inception_score_value_errors():
    probs = np.full((6, 3), 1.0 / 3.0)
    with pytest.raises(ValueError, match="splits: expected an int in \\[1, 6\\], got 7"):
        inception_score(probs, from_logits=False, splits=7)
    with pytest.raises(ValueError, match="splits: expected an int in \\[1, 6\\], got 0"):
        inception_score(probs, from_logits=False, splits=0)
    with pytest.raises(ValueError, match="predictions: expected a rank-2"):
        inception_score(probs[0], from_logits=False, splits=1)
    with pytest.raises(ValueError, match="predictions: expected at least 2 classes"):
        inception_score(np.ones((6, 1)), from_logits=False, splits=1)
    with pytest.raises(ValueError, match="predictions: expected rows summing to 1"):
        inception_score(2.0 * probs, from_logits=False, splits=1)
    with pytest.raises(ValueError, match="predictions: expected non-negative"):
        inception_score(probs - 0.5, from_logits=False, splits=1)
    with pytest.raises(ValueError, match="predictions: expected finite"):
        inception_score(np.full((6, 3), np.inf), from_logits=True, splits=1)
    with pytest.raises(ValueError, match="from_logits: expected a bool"):
        inception_score(probs, from_logits=None, splits=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        inception_score(probs, splits=1)  # type: ignore[call-arg]  # from_logits is required
