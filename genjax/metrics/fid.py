"""Sample-quality metrics on classifier features: FID, KID and the Inception score.

* :func:`frechet_distance` — the Frechet (2-Wasserstein) distance between the Gaussians
  fitted to two feature sets, the FID of Heusel et al. (2017, "GANs Trained by a Two
  Time-Scale Update Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500, the
  equation defining the FID; Dowson & Landau 1982 for the closed form):

      d^2 = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}).

* :func:`kernel_inception_distance` — the KID of Binkowski, Sutherland, Arbel & Gretton
  (2018, "Demystifying MMD GANs", arXiv:1801.01401, "Evaluation metrics"): the unbiased
  estimator of the squared MMD (Gretton et al. 2012, JMLR 13, Lemma 6) with the cubic
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets.
* :func:`inception_score` — the IS of Salimans et al. (2016, "Improved Techniques for
  Training GANs", arXiv:1606.03498, Sec. 4):
  ``exp(E_x KL(p(y|x) || p(y)))``, computed on ``splits`` disjoint chunks as in the
  authors' code (``openai/improved-gan``, ``inception_score/model.py``).

"Inception" refers to the features (pool3, 2048-d) and class logits (1008) of the
2015 TensorFlow ImageNet Inception-v3 graph ``inception-2015-12-05``; :mod:`genjax.nn.inception`
computes them. The functions here take any features, run on the host in float64
with numpy/scipy and return Python floats.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "kernel_inception_distance",
]

# Relative size below which a negative eigenvalue of a covariance is round-off (a
# float32-accumulated covariance is off by ~1e-7 of its largest eigenvalue).
_PSD_TOLERANCE = 1e-5
_SYMMETRY_TOLERANCE = 1e-5


def _as_float64(value: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a real numeric array, got {type(value).__name__} ({err})") from err
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or Inf entries of {arr.size}")


def _features(value: object, name: str, *, min_rows: int) -> np.ndarray:
    """Validates a [N, D] feature array with N >= min_rows and returns it as float64."""
    arr = _as_float64(value, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a rank-2 [N, D] feature array, got rank {arr.ndim} (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature dimension, got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} samples (rows), got {arr.shape[0]} (shape {arr.shape})")
    _check_finite(arr, name)
    return arr


def _check_int(value: object, name: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an int {bound}, got {value}")
    return int(value)


def feature_statistics(features: np.ndarray | object) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set, the Gaussian fit of FID.

    Heusel et al. (2017, arXiv:1706.08500) model the Inception features of a
    sample set as a Gaussian with the empirical mean ``mu = (1/N) sum_i x_i`` and
    covariance ``S = (1/(N-1)) sum_i (x_i - mu)(x_i - mu)^T`` (``ddof=1``, as
    ``np.cov`` in the TTUR and pytorch-fid code).

    Args:
      features: [N, D] features, N >= 2, finite.

    Returns:
      ``(mu, sigma)``: float64 numpy arrays of shapes [D] and [D, D].

    Raises:
      ValueError: if ``features`` is not rank 2, has fewer than 2 rows or holds NaN/Inf.
    """
    x = _features(features, "features", min_rows=2)
    mu = x.mean(axis=0)
    centred = x - mu[None, :]
    sigma = centred.T @ centred / (x.shape[0] - 1)
    # Exactly symmetric, so eigh in frechet_distance sees the matrix it is given.
    sigma = 0.5 * (sigma + sigma.T)
    return mu, sigma


def _gaussian(mu: object, sigma: object, suffix: str) -> tuple[np.ndarray, np.ndarray]:
    mu_name, sigma_name = f"mu{suffix}", f"sigma{suffix}"
    m = _as_float64(mu, mu_name)
    s = _as_float64(sigma, sigma_name)
    if m.ndim != 1 or m.shape[0] == 0:
        raise ValueError(f"{mu_name}: expected a non-empty rank-1 [D] mean, got shape {m.shape}")
    d = m.shape[0]
    if s.shape != (d, d):
        raise ValueError(f"{sigma_name}: expected a [D, D] = {(d, d)} covariance matching {mu_name}, got shape {s.shape}")
    _check_finite(m, mu_name)
    _check_finite(s, sigma_name)
    scale = max(float(np.max(np.abs(s))), np.finfo(np.float64).tiny)
    asym = float(np.max(np.abs(s - s.T)))
    if asym > _SYMMETRY_TOLERANCE * scale:
        raise ValueError(f"{sigma_name}: expected a symmetric covariance, got max |S - S^T| = {asym:.3g} (max |S| = {scale:.3g})")
    return m, 0.5 * (s + s.T)


def _psd_sqrt(sigma: np.ndarray, name: str) -> np.ndarray:
    """Symmetric PSD square root by eigendecomposition; tiny negative eigenvalues -> 0."""
    evals, evecs = np.linalg.eigh(sigma)
    largest = max(float(np.max(np.abs(evals))), np.finfo(np.float64).tiny)
    if float(evals.min()) < -_PSD_TOLERANCE * largest:
        raise ValueError(f"{name}: expected a positive semi-definite covariance, got eigenvalue {float(evals.min()):.3g} (largest |eigenvalue| {largest:.3g})")
    root = np.sqrt(np.clip(evals, 0.0, None))
    return (evecs * root[None, :]) @ evecs.T


def frechet_distance(mu1: object, sigma1: object, mu2: object, sigma2: object) -> float:
    """Frechet distance between two Gaussians: FID on Inception statistics.

    Heusel et al. (2017, arXiv:1706.08500, the FID equation), the squared 2-Wasserstein
    distance between ``N(mu1, S1)`` and ``N(mu2, S2)`` (Dowson & Landau 1982):

        d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).

    The trace of the matrix square root is computed without ``scipy.linalg.sqrtm``
    (which fails or turns complex on the near-singular covariances of few samples):
    ``S1 S2`` is similar to the symmetric PSD ``M = S1^{1/2} S2 S1^{1/2}`` (``AB`` and
    ``BA`` share eigenvalues with ``A = S1^{1/2}``), so ``tr((S1 S2)^{1/2})`` is the sum
    of the square roots of the eigenvalues of ``M``, all in float64 with symmetric
    eigendecompositions. Eigenvalues below ``1e-12`` of the largest are round-off (each
    would add ``sqrt(round-off)`` to the trace on singular covariances) and are set to
    0. The result is clipped at 0: it is a squared distance, and identical statistics
    otherwise come out as a tiny number of either sign.

    Args:
      mu1: [D] mean of the first set (e.g. generated samples).
      sigma1: [D, D] symmetric PSD covariance of the first set.
      mu2: [D] mean of the second set (e.g. the reference data).
      sigma2: [D, D] covariance of the second set.

    Returns:
      The squared Frechet distance, a Python float (the number reported as "FID").

    Raises:
      ValueError: on mismatched shapes, non-finite values, or a covariance that is not
        symmetric or not positive semi-definite (beyond a 1e-5 relative tolerance).
    """
    m1, s1 = _gaussian(mu1, sigma1, "1")
    m2, s2 = _gaussian(mu2, sigma2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"mu2: expected the feature dimension of mu1, {m1.shape[0]}, got {m2.shape[0]}")
    root1 = _psd_sqrt(s1, "sigma1")
    _psd_sqrt(s2, "sigma2")  # validates sigma2
    middle = root1 @ s2 @ root1
    middle = 0.5 * (middle + middle.T)
    evals = np.linalg.eigvalsh(middle)
    evals = np.where(evals > 1e-12 * max(float(evals.max()), 0.0), evals, 0.0)
    tr_covmean = float(np.sum(np.sqrt(evals)))
    diff = m1 - m2
    value = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * tr_covmean
    return max(value, 0.0)


def frechet_distance_from_features(a: object, b: object) -> float:
    """FID between two feature sets: :func:`frechet_distance` of their statistics.

    Heusel et al. (2017, arXiv:1706.08500, the FID equation) with the Gaussians fitted by
    :func:`feature_statistics`. FID is biased upward for small N (Binkowski et al.
    2018, arXiv:1801.01401); published numbers use 50,000 samples (or the
    whole training set) per side, and numbers with different N are not comparable.

    Args:
      a: [N, D] features, N >= 2.
      b: [M, D] features, M >= 2, same D.

    Returns:
      The FID as a Python float.

    Raises:
      ValueError: on non-rank-2 inputs, mismatched D, fewer than 2 rows or NaN/Inf.
    """
    fa = _features(a, "a", min_rows=2)
    fb = _features(b, "b", min_rows=2)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"b: expected the feature dimension of a, {fa.shape[1]}, got {fb.shape[1]} (shape {fb.shape})")
    return frechet_distance(*feature_statistics(fa), *feature_statistics(fb))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between equal-size [m, d] sets with k(x, y) = (x.y / d + 1)^3."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    # The within-set sums drop the diagonal (i = j), the cross sum keeps every pair.
    sum_xx = float(k_xx.sum() - np.trace(k_xx))
    sum_yy = float(k_yy.sum() - np.trace(k_yy))
    return (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * float(k_xy.sum()) / (m * m)


def kernel_inception_distance(
    a: object,
    b: object,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: the unbiased squared MMD with a cubic polynomial kernel.

    Binkowski et al. (2018, arXiv:1801.01401, "Evaluation metrics") use the kernel
    ``k(x, y) = (x.y / d + 1)^3`` on d-dimensional features and the unbiased estimator
    (Gretton et al. 2012, JMLR 13, Lemma 6, for equal sizes m):

        MMD^2_u = sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1))
                  - 2 sum_{i, j} k(x_i, y_j) / m^2.

    As in the authors' code (``polynomial_mmd_averages``), each of ``num_subsets``
    rounds draws ``m`` rows of ``a`` and ``m`` rows of ``b`` uniformly without
    replacement (independently between rounds). ``m = min(subset_size, len(a),
    len(b))``, as clean-fid caps it: when a set is smaller than ``subset_size`` the
    subset size shrinks to it, and a round then uses all of the smaller set (in a random
    order). The estimate
    is unbiased for every m, can be negative, and is usually reported x 1e3.
    Computed in float64; each round costs three [m, D] x [D, m] products.

    Args:
      a: [N, D] features of the first set, N >= 2.
      b: [M, D] features of the second set, M >= 2, same D.
      num_subsets: rounds to average, >= 1 (100 as in torch-fidelity and clean-fid;
        the authors' code used 50).
      subset_size: rows per round before capping, >= 2 (1000 in the paper's setup).
      seed: seed of the ``numpy.random.default_rng`` that draws the subsets.

    Returns:
      ``(mean, std)`` of the per-round MMD^2 estimates; ``std`` is the population
      standard deviation (``ddof=0``, as the authors' code reports).

    Raises:
      ValueError: on non-rank-2 inputs, mismatched D, fewer than 2 rows, NaN/Inf, or
        ``num_subsets < 1`` / ``subset_size < 2``.
    """
    fa = _features(a, "a", min_rows=2)
    fb = _features(b, "b", min_rows=2)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"b: expected the feature dimension of a, {fa.shape[1]}, got {fb.shape[1]} (shape {fb.shape})")
    num_subsets = _check_int(num_subsets, "num_subsets", low=1)
    subset_size = _check_int(subset_size, "subset_size", low=2)
    _check_int(seed, "seed", low=0)
    m = min(subset_size, fa.shape[0], fb.shape[0])
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_subsets, np.float64)
    for i in range(num_subsets):
        x = fa[rng.choice(fa.shape[0], m, replace=False)]
        y = fb[rng.choice(fb.shape[0], m, replace=False)]
        estimates[i] = _polynomial_mmd2(x, y)
    return float(estimates.mean()), float(estimates.std())


def inception_score(predictions: object, *, from_logits: bool, splits: int = 10) -> tuple[float, float]:
    """Inception score of class predictions for generated samples.

    Salimans et al. (2016, arXiv:1606.03498, Sec. 4): ``IS = exp(E_x KL(p(y|x) || p(y)))``
    with the marginal ``p(y) = E_x p(y|x)``. Following the authors' code, the N rows are
    cut into ``splits`` contiguous chunks (chunk ``i`` holds rows
    ``[i N // splits, (i + 1) N // splits)``), the score is computed with each chunk's
    own marginal, and the mean and population std (``ddof=0``) over chunks are
    returned. The paper's setting is 50,000 samples in 10 splits. ``0 log 0 = 0``, so
    one-hot probabilities are allowed. The score lies in ``[1, K]`` for K classes.

    The reference code takes the softmax over all 1008 outputs of the Inception graph
    of logits ``pool3 @ W`` without the classifier's bias; that is
    :attr:`genjax.nn.inception.InceptionOutput.logits_unbiased`.

    Args:
      predictions: [N, K] logits (``from_logits=True``) or class probabilities
        (``from_logits=False``, non-negative rows summing to 1 within 1e-3).
      from_logits: whether ``predictions`` are logits (a softmax is applied, in
        float64) or probabilities. Required: applying a softmax to probabilities
        silently gives a score near 1.
      splits: number of chunks, ``1 <= splits <= N``.

    Returns:
      ``(mean, std)`` of the per-chunk scores.

    Raises:
      ValueError: on a non-rank-2 input, fewer than 2 classes, NaN/Inf, rows that are
        not probability vectors (``from_logits=False``), or ``splits`` out of range.
    """
    if not isinstance(from_logits, bool):
        raise ValueError(f"from_logits: expected a bool, got {from_logits!r}")
    preds = _features(predictions, "predictions", min_rows=1)
    n, k = preds.shape
    if k < 2:
        raise ValueError(f"predictions: expected at least 2 classes (columns), got shape {preds.shape}")
    splits = _check_int(splits, "splits", low=1, high=n)
    if from_logits:
        log_p = scipy.special.log_softmax(preds, axis=1)
        probs = np.exp(log_p)
    else:
        if np.any(preds < 0.0):
            raise ValueError(f"predictions: expected non-negative probabilities (from_logits=False), got min {preds.min():.3g}")
        row_sums = preds.sum(axis=1)
        worst = float(np.max(np.abs(row_sums - 1.0)))
        if worst > 1e-3:
            raise ValueError(
                f"predictions: expected rows summing to 1 (from_logits=False), got row sums off by up to {worst:.3g}; pass from_logits=True for logits"
            )
        probs = preds
        with np.errstate(divide="ignore"):
            log_p = np.log(probs)
    scores = np.empty(splits, np.float64)
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p, lp = probs[lo:hi], log_p[lo:hi]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_marginal = np.log(p.mean(axis=0))
            # Where p = 0 the term is 0 (0 * -inf would be NaN), whatever the marginal.
            terms = np.where(p > 0.0, p * (lp - log_marginal[None, :]), 0.0)
        scores[i] = math.exp(float(terms.sum(axis=1).mean()))
    return float(scores.mean()), float(scores.std())
