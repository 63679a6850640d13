"""Tests for genjax.metrics.toy2d: mode coverage, sample quality and sliced Wasserstein."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from genjax.data.toy2d import sample_toy2d, toy2d_mode_std, toy2d_modes
from genjax.metrics.toy2d import ModeMetrics, mode_metrics, sliced_wasserstein

# ------------------------------------------------------------------------- mode_metrics


def test_exact_counts_on_hand_built_samples():
    modes = toy2d_modes("eight_gaussians").astype(np.float64)
    std = toy2d_mode_std("eight_gaussians")
    at = lambda k, dx=0.0, dy=0.0: modes[k] + std * np.array([dx, dy])
    samples = np.stack(
        [
            at(0),
            at(0),
            at(0, 1.0, -1.0),  # three at mode 0
            at(3, 0.6 * 2.9, 0.8 * 2.9),  # 2.9 std from mode 3: high quality
            at(3, -2.99),  # 2.99 std: high quality
            at(3, 3.1),  # 3.1 std: not
            at(5, 2.5, 2.5),  # each coordinate within 3 std, Euclidean 3.54 std: not
            at(6, 0.0, 0.5),  # one at mode 6
            np.zeros(2),  # the centre of the ring, far from every mode
            np.array([5.0, 5.0]),  # far outside
        ]
    )
    res = mode_metrics(samples, modes, std, min_count=2)
    assert res == ModeMetrics(modes_covered=2, num_modes=8, high_quality_fraction=6 / 10, counts=(3, 0, 0, 2, 0, 0, 1, 0))
    # Default min_count: max(1, int(0.1 * 10 / 8)) = 1, so mode 6 counts too.
    assert mode_metrics(samples, modes, std).modes_covered == 3
    # A wider region admits the 3.1 and 3.54 std samples.
    wide = mode_metrics(samples, modes, std, num_std=4.0, min_count=1)
    assert wide.counts == (3, 0, 0, 3, 0, 1, 1, 0) and wide.modes_covered == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.modes_covered = 0  # type: ignore[misc]


def test_samples_go_to_the_nearest_mode():
    modes = np.array([[0.0, 0.0], [1.0, 0.0]])
    samples = np.array([[0.7, 0.0], [0.4, 0.1], [1.2, 0.0], [0.0, 2.9], [0.0, 3.1]])
    res = mode_metrics(samples, modes, 1.0, min_count=1)
    assert res.counts == (2, 2) and res.high_quality_fraction == pytest.approx(4 / 5)


@pytest.mark.parametrize("name", ["eight_gaussians", "twentyfive_gaussians"])
def test_true_samples_cover_all_modes(name, key):
    n = 20000
    samples = sample_toy2d(key, name, n)
    modes, std = toy2d_modes(name), toy2d_mode_std(name)
    res = mode_metrics(samples, modes, std)
    assert res.num_modes == len(modes) and res.modes_covered == len(modes)
    assert sum(res.counts) == round(res.high_quality_fraction * n)
    # ||noise|| / std is Rayleigh in 2D: P(r <= 3) = 1 - exp(-9/2) = 0.98889. Modes are
    # > 25 std apart, so nearest-mode errors are negligible; the binomial std of the
    # fraction is sqrt(p (1 - p) / n) = 7.4e-4, and 0.004 is over 5 of them.
    expected = 1.0 - math.exp(-4.5)
    assert res.high_quality_fraction > 0.97
    assert abs(res.high_quality_fraction - expected) < 0.004
    # Each mode holds about n / K high-quality samples.
    counts = np.asarray(res.counts)
    assert np.all(np.abs(counts - expected * n / len(modes)) < 6 * math.sqrt(n / len(modes)))


def test_collapsed_sampler_covers_one_mode(key):
    name = "twentyfive_gaussians"
    modes, std = toy2d_modes(name), toy2d_mode_std(name)
    samples = modes[7] + std * np.asarray(jax.random.normal(key, (5000, 2)))
    res = mode_metrics(samples, modes, std)
    assert res.modes_covered == 1 and res.counts[7] == sum(res.counts)
    assert res.high_quality_fraction > 0.97


def test_default_min_count_ignores_stray_samples(key):
    name = "eight_gaussians"
    modes, std = toy2d_modes(name), toy2d_mode_std(name)
    half = np.asarray(sample_toy2d(key, name, 10000))
    nearest = np.argmin(np.sum((half[:, None] - modes[None]) ** 2, axis=2), axis=1)
    kept = half[nearest < 4][:3990]  # about 1000 per mode on modes 0-3
    strays = np.repeat(modes[4:5], 10, axis=0)  # 10 samples exactly at mode 4
    samples = np.concatenate([kept, strays])
    assert len(samples) == 4000
    res = mode_metrics(samples, modes, std)  # min_count = int(0.1 * 4000 / 8) = 50
    assert res.counts[4] == 10 and res.modes_covered == 4
    assert mode_metrics(samples, modes, std, min_count=10).modes_covered == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"std": 0.0}, "std"),
        ({"std": -1.0}, "std"),
        ({"std": float("inf")}, "std"),
        ({"std": "0.1"}, "std"),
        ({"num_std": 0.0}, "num_std"),
        ({"min_count": 0}, "min_count"),
        ({"min_count": 2.5}, "min_count"),
        ({"samples": np.zeros((4, 3))}, "samples"),
        ({"samples": np.zeros((0, 2))}, "samples"),
        ({"samples": np.zeros((4,))}, "samples"),
        ({"modes": np.zeros((0, 2))}, "modes"),
        ({"modes": np.array([[0.0, np.nan]])}, "modes"),
    ],
)
def test_mode_metrics_value_errors(kwargs, match):
    args = {"samples": np.zeros((4, 2)), "modes": np.ones((3, 2)), "std": 0.1} | kwargs
    samples, modes, std = args.pop("samples"), args.pop("modes"), args.pop("std")
    with pytest.raises(ValueError, match=match):
        mode_metrics(samples, modes, std, **args)


# ------------------------------------------------------------------ sliced_wasserstein


def test_identical_sets_are_at_distance_zero(key):
    x = np.asarray(sample_toy2d(key, "eight_gaussians", 500))
    assert float(sliced_wasserstein(key, x, x)) < 1e-6


@pytest.mark.parametrize("p", [1, 2, 3])
def test_one_dimensional_shift_is_exact(key, p):
    x = np.random.default_rng(0).standard_normal((300, 1)).astype(np.float32)
    # In 1D every direction is +-1 and W_p of a translate is the shift, for every p.
    assert float(sliced_wasserstein(key, x, x + 0.7, p=p)) == pytest.approx(0.7, rel=1e-5)


def test_translation_in_2d_matches_analytic_value(key):
    """Translating by v shifts each projection by v . theta, so SW_p^p = |v|^p E|cos|^p.

    E[cos^2] = 1/2 and E|cos| = 2/pi for uniform directions. With 4096 directions the
    relative std of the mean of cos^2 is sqrt(1/8 / 4096) / (1/2) = 1.1% (0.55% after the
    square root) and of |cos| 0.75%; the tolerances are about 5 of those.
    """
    x = np.asarray(sample_toy2d(key, "twentyfive_gaussians", 100))
    v = np.array([0.3, -0.4], np.float32)  # |v| = 0.5
    k = jax.random.fold_in(key, 1)
    sw2 = float(sliced_wasserstein(k, x, x + v, num_projections=4096))
    assert sw2 == pytest.approx(0.5 / math.sqrt(2.0), rel=0.03)
    sw1 = float(sliced_wasserstein(k, x, x + v, num_projections=4096, p=1))
    assert sw1 == pytest.approx(0.5 * 2.0 / math.pi, rel=0.04)


def test_unequal_sizes_are_the_exact_empirical_distance(key):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 1)).astype(np.float32)
    y = (rng.standard_normal((5, 1)) + 0.5).astype(np.float32)
    # Repeating each point of x 5 times and of y 7 times leaves both measures unchanged
    # and gives equal sizes, where W_p is the mean over sorted pairs.
    xs, ys = np.sort(np.repeat(x[:, 0], 5)).astype(np.float64), np.sort(np.repeat(y[:, 0], 7)).astype(np.float64)
    for p in (1, 2):
        expected = np.mean(np.abs(xs - ys) ** p) ** (1 / p)
        assert float(sliced_wasserstein(key, x, y, p=p)) == pytest.approx(expected, rel=1e-5)
    assert float(sliced_wasserstein(key, x, y, p=1)) == pytest.approx(wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-5)
    # In 2D the same directions (same key) see the same measures.
    a, b = rng.standard_normal((6, 2)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(
        float(sliced_wasserstein(key, a, b)), float(sliced_wasserstein(key, np.repeat(a, 2, axis=0), np.repeat(b, 3, axis=0))), rtol=1e-5
    )


def test_mode_collapse_is_farther_than_fresh_data(key):
    name = "eight_gaussians"
    k_true, k_fresh, k_collapse, k_proj = jax.random.split(key, 4)
    true = sample_toy2d(k_true, name, 1000)
    fresh = sample_toy2d(k_fresh, name, 1000)
    collapsed = toy2d_modes(name)[2] + toy2d_mode_std(name) * np.asarray(jax.random.normal(k_collapse, (800, 2)))
    d_fresh = float(sliced_wasserstein(k_proj, true, fresh))
    d_collapsed = float(sliced_wasserstein(k_proj, true, collapsed))
    assert d_collapsed > 5 * d_fresh  # measured 1.38 vs 0.135


def test_jit_matches_eager(key):
    x = sample_toy2d(key, "eight_gaussians", 64)
    y = sample_toy2d(jax.random.fold_in(key, 1), "eight_gaussians", 50)
    jitted = jax.jit(lambda k, a, b: sliced_wasserstein(k, a, b, num_projections=32))
    np.testing.assert_allclose(float(jitted(key, x, y)), float(sliced_wasserstein(key, x, y, num_projections=32)), rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": np.zeros((0, 2))}, "x"),
        ({"x": np.zeros((5,))}, "x"),
        ({"y": np.zeros((5, 3))}, "y"),
        ({"y": np.zeros((0, 2))}, "y"),
        ({"num_projections": 0}, "num_projections"),
        ({"p": 0}, "p"),
        ({"p": 1.5}, "p"),
    ],
)
def test_sliced_wasserstein_value_errors(key, kwargs, match):
    args = {"x": np.zeros((5, 2)), "y": np.ones((4, 2))} | kwargs
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(key, x, y, **args)
