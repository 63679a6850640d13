"""Tests for genjax.metrics.parzen: the Parzen-window log-likelihood of Goodfellow et al. 2014."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from genjax.metrics.parzen import (
    DEFAULT_SIGMAS,
    ParzenResult,
    _parzen_core,
    parzen_log_density,
    parzen_log_likelihood,
)


def _reference(x: np.ndarray, samples: np.ndarray, sigmas) -> np.ndarray:
    """Direct float64 evaluation of the formula, [S, N]."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    samples = np.asarray(samples, np.float64).reshape(len(samples), -1)
    d2 = np.sum((x[:, None, :] - samples[None, :, :]) ** 2, axis=2)
    m, dims = samples.shape
    return np.stack([logsumexp(-d2 / (2 * s * s), axis=1) - math.log(m) - 0.5 * dims * math.log(2 * math.pi * s * s) for s in np.atleast_1d(sigmas)])


def _data(seed: int = 0, n: int = 37, m: int = 53, dims: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, dims), dtype=np.float32), rng.random((m, dims), dtype=np.float32)


def test_matches_float64_reference_with_ragged_chunks():
    x, samples = _data()
    sigmas = np.array([0.05, 0.2, 0.7, 3.0])
    out = parzen_log_density(x, samples, sigmas, chunk_size=8)  # 37 = 4 * 8 + 5
    assert out.shape == (4, 37) and out.dtype == jnp.float32
    ref = _reference(x, samples, sigmas)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=2e-5, atol=2e-4)
    # sigma = 0.05 makes most kernels underflow in a naive sum; values stay finite.
    assert np.all(np.isfinite(np.asarray(out)))


def test_scalar_sigma_and_image_shapes():
    x, samples = _data(n=10, m=12, dims=12)
    full = np.asarray(parzen_log_density(x, samples, np.array([0.3])))
    scalar = parzen_log_density(x, samples, 0.3)
    assert scalar.shape == (10,)
    np.testing.assert_allclose(np.asarray(scalar), full[0], rtol=1e-6)
    images = parzen_log_density(x.reshape(10, 2, 3, 2), samples.reshape(12, 2, 3, 2), 0.3, chunk_size=3)
    np.testing.assert_allclose(np.asarray(images), full[0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(scalar), _reference(x, samples, 0.3)[0], rtol=2e-5)


def test_chunk_size_does_not_change_result():
    x, samples = _data(seed=1, n=50, m=40, dims=9)
    sigmas = np.array([0.1, 0.4, 1.5])
    base = np.asarray(parzen_log_density(x, samples, sigmas, chunk_size=256))
    for chunk in (1, 7, 16, 49, 50, 51):
        np.testing.assert_allclose(np.asarray(parzen_log_density(x, samples, sigmas, chunk_size=chunk)), base, rtol=1e-5, atol=1e-5)


def test_many_samples_of_a_gaussian_approach_its_log_density():
    """A KDE of M = 20000 draws of N(mu, I) in 2D tends to the analytic log density.

    With sigma = 0.2 the estimate's expectation is the density of N(mu, (1 + sigma^2) I),
    whose mean log-likelihood under N(mu, I) test points differs from the true one by
    log(1.04) - (1 - 1/1.04) = 8e-4 nats; the finite-M Jensen bias and noise of the mean
    over 2000 test points measured -0.004 +- 0.003 nats over 8 seeds. A wrong
    normaliser is off by >= 0.3 nats (e.g. sigma vs sigma^2: log 5), missing log M by 9.9.
    """
    rng = np.random.default_rng(0)
    mu = np.array([0.5, -1.0])
    samples = mu + rng.standard_normal((20000, 2))
    test = mu + rng.standard_normal((2000, 2))
    est = np.asarray(parzen_log_density(test, samples, 0.2, chunk_size=512), np.float64)
    true = -math.log(2 * math.pi) - 0.5 * np.sum((test - mu) ** 2, axis=1)
    assert abs(est.mean() - true.mean()) < 0.02
    # The entropy of N(mu, I) in 2D is log(2 pi) + 1 nats.
    assert abs(true.mean() + math.log(2 * math.pi) + 1.0) < 0.1


def _split_gaussian(seed: int, m: int = 400, n_valid: int = 150, n_test: int = 90):
    rng = np.random.default_rng(seed)
    draw = lambda n: rng.standard_normal((n, 3)).astype(np.float32)
    return draw(n_test), draw(n_valid), draw(m)


def test_sigma_selection_maximises_validation_mean():
    test, valid, samples = _split_gaussian(0)
    grid = np.logspace(-2, 1, 13)
    res = parzen_log_likelihood(test, valid, samples, sigmas=grid, chunk_size=64)
    brute = []
    for s in grid:  # brute force, float64, one sigma at a time
        total = 0.0
        for v in valid.astype(np.float64):
            d2 = np.sum((samples - v) ** 2, axis=1)
            total += logsumexp(-d2 / (2 * s * s)) - math.log(len(samples)) - 1.5 * math.log(2 * math.pi * s * s)
        brute.append(total / len(valid))
    best = int(np.argmax(brute))
    assert 0 < best < len(grid) - 1  # an interior optimum, so no warning is involved
    assert res.sigma == pytest.approx(grid[best])
    np.testing.assert_allclose(res.valid_means, brute, rtol=1e-5, atol=1e-4)
    assert res.sigma_grid == tuple(float(s) for s in grid)


def test_result_mean_and_stderr():
    test, valid, samples = _split_gaussian(1)
    res = parzen_log_likelihood(test, valid, samples, sigmas=[0.1, 0.3, 0.6, 1.2, 2.4])
    assert isinstance(res, ParzenResult)
    per_example = _reference(test, samples, res.sigma)[0]
    assert res.mean == pytest.approx(per_example.mean(), rel=1e-5)
    assert res.stderr == pytest.approx(per_example.std() / math.sqrt(len(test)), rel=1e-4)
    assert (res.num_test, res.num_samples) == (90, 400)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.mean = 0.0  # type: ignore[misc]


def test_default_grid_is_the_reference_codes():
    assert np.allclose(DEFAULT_SIGMAS, np.logspace(-1, 0, 10))
    rng = np.random.default_rng(2)
    images = lambda n: rng.random((n, 4, 4, 1), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = parzen_log_likelihood(images(20), images(30), images(50))
    assert res.sigma_grid == DEFAULT_SIGMAS and len(res.valid_means) == 10


def test_edge_of_grid_warns():
    test, valid, samples = _split_gaussian(3)
    with pytest.warns(UserWarning, match="largest"):
        res = parzen_log_likelihood(test, valid, samples, sigmas=[0.001, 0.002, 0.004])
    assert res.sigma == pytest.approx(0.004)
    with pytest.warns(UserWarning, match="smallest"):
        res = parzen_log_likelihood(test, valid, samples, sigmas=[20.0, 40.0, 80.0])
    assert res.sigma == pytest.approx(20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parzen_log_likelihood(test, valid, samples, sigmas=[0.05, 0.4, 5.0])
        parzen_log_likelihood(test, valid, samples, sigmas=[50.0])  # one width: nothing to widen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": 0.0}, "sigmas"),
        ({"sigmas": np.array([0.1, -1.0])}, "sigmas"),
        ({"sigmas": float("nan")}, "sigmas"),
        ({"sigmas": np.zeros((0,))}, "sigmas"),
        ({"sigmas": np.ones((2, 2))}, "sigmas"),
        ({"samples": np.zeros((0, 6), np.float32)}, "samples"),
        ({"samples": np.zeros((5, 7), np.float32)}, "samples"),
        ({"x": np.zeros((6,), np.float32)}, "x"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_parzen_log_density_value_errors(kwargs, match):
    x, samples = _data(n=4, m=5)
    args = {"x": x, "samples": samples, "sigmas": 0.5} | kwargs
    chunk = args.pop("chunk_size", 256)
    with pytest.raises(ValueError, match=match):
        parzen_log_density(args["x"], args["samples"], args["sigmas"], chunk_size=chunk)


def test_parzen_log_likelihood_value_errors():
    test, valid, samples = _split_gaussian(4, m=10, n_valid=5, n_test=5)
    with pytest.raises(ValueError, match="sigmas"):
        parzen_log_likelihood(test, valid, samples, sigmas=[0.1, 0.0])
    with pytest.raises(ValueError, match="samples"):
        parzen_log_likelihood(test, valid, samples[:, :2])
    with pytest.raises(ValueError, match="samples"):
        parzen_log_likelihood(test, valid, samples[:0])
    with pytest.raises(ValueError, match="valid"):
        parzen_log_likelihood(test, valid[:, :2], samples)
    with pytest.raises(ValueError, match="test"):
        parzen_log_likelihood(test[:0], valid, samples)


def test_memory_is_bounded_for_mnist_scale():
    """10,000 x 10,000 x 784 with 10 sigmas compiles to O(chunk * M) scratch, not O(N * M)."""
    shape = jax.ShapeDtypeStruct((10000, 784), jnp.float32)
    compiled = _parzen_core.lower(shape, shape, jax.ShapeDtypeStruct((10,), jnp.float32), 256).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("backend reports no memory analysis")
    # N * M float32 distances alone would be 400 MB (4 GB for all sigmas); the padded,
    # centred copies of the inputs are 2 x 31 MB and a [256, 10000] block is 10 MB.
    assert analysis.temp_size_in_bytes < 200 * 2**20
