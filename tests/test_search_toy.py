"""The search_toy experiment and the search benchmark: the closed forms they rest on, and
smoke runs of both scripts checking their JSON."""

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import samplers as S

ROOT = pathlib.Path(__file__).resolve().parents[1]
ABAR = np.cumprod(1.0 - np.linspace(1e-3, 0.2, 50)).astype(np.float32)


def _load(relative):
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_")[:-3], ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _mixture():
    means = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.2]])
    return S.GaussianMixture(means, 0.3, np.log([0.5, 0.3, 0.2]))


def test_tilted_mixture_matches_a_numerical_normalisation_on_a_grid():
    p, centre, tau, lam = _mixture(), np.array([0.8, 0.3]), 0.7, 1.5
    tilted = p.tilted(centre, tau, lam)
    reward = S.gaussian_log_reward(centre, tau)
    h = 0.02
    g = np.arange(-4.0, 4.0, h) + h / 2
    grid = jnp.asarray(np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), jnp.float32)
    log_unnorm = np.asarray(p.log_prob(grid) + lam * jax.vmap(lambda x: reward(x, None))(grid), np.float64)
    log_z = np.logaddexp.reduce(log_unnorm) + 2 * np.log(h)
    closed = np.asarray(tilted.log_prob(grid), np.float64)
    mass = np.exp(closed) > 1e-3
    np.testing.assert_allclose(log_unnorm[mass] - log_z, closed[mass], atol=5e-3)
    assert abs(np.exp(np.logaddexp.reduce(closed) + 2 * np.log(h)) - 1.0) < 1e-3
    # The uniform-weight default, and a tilt towards a mode gives that mode more weight.
    assert np.allclose(S.GaussianMixture(p.means, 0.3).weights, 1 / 3)
    assert tilted.weights[0] > p.weights[0]


def test_mixture_denoiser_is_the_exact_noise_prediction():
    """eps*(x_t) = -sqrt(1 - abar) grad log p_t(x_t), with p_t the mixture of the scaled
    means and variance abar s^2 + 1 - abar (autodiff of log_prob)."""
    p = _mixture()
    denoise = p.denoiser(ABAR)
    x = jnp.array([0.4, -0.2])
    for t in (7.5, 49.0):
        a = float(S.abar_at(ABAR, t))
        marginal = S.GaussianMixture(np.sqrt(a) * p.means, np.sqrt(a * p.std**2 + 1 - a), p.log_weights)
        expected = -np.sqrt(1 - a) * np.asarray(jax.jit(jax.grad(marginal.log_prob))(x))
        np.testing.assert_allclose(np.asarray(jax.jit(denoise)(x, jnp.float32(t)).eps), expected, rtol=2e-4, atol=1e-5)


def test_mixture_rejects_bad_arguments():
    with pytest.raises(ValueError, match="means"):
        S.GaussianMixture(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="std"):
        S.GaussianMixture(np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="tau"):
        _mixture().tilted(np.zeros(2), -1.0, 1.0)
    with pytest.raises(ValueError, match="centre"):
        _mixture().tilted(np.zeros(3), 1.0, 1.0)


ROW_KEYS = {"method", "nfe", "budget_multiple", "target_mode_fraction", "verifier_score", "kl", "sliced_wasserstein", "seeds", "cross_entropy"}


def test_run_quick_writes_the_results_schema(tmp_path):
    run = _load("experiments/search_toy/run.py")
    results = run.main(["--quick", "--out", str(tmp_path), "--methods", "fk_max"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "metrics.png").stat().st_size > 0 and "| fk_max |" in (tmp_path / "tables.md").read_text()
    assert {"rows", "command", "wall_time_s", "hardware", "setup"} <= set(on_disk)
    assert on_disk["rows"] == json.loads(json.dumps(results["rows"]))
    methods = [r["method"] for r in on_disk["rows"]]
    assert methods == ["exact_tilted_target", "exact_data", "fk_max"]
    for row in on_disk["rows"]:
        assert ROW_KEYS <= set(row), row
        assert 0.0 <= row["target_mode_fraction"] <= 1.0 and row["kl"] >= 0.0 and row["sliced_wasserstein"] >= 0.0
    searched = [r for r in on_disk["rows"] if r["nfe"] > 0]
    assert all(r["nfe"] <= r["budget"] and r["seeds"] == 2 for r in searched)
    # The exact tilted target's mode fraction is its closed-form weight of the target mode, within sampling error.
    exact = on_disk["rows"][0]
    assert abs(exact["target_mode_fraction"] - on_disk["setup"]["tilted_weights"][0]) < 0.35


def test_benchmark_quick_writes_its_json(tmp_path):
    bench = _load("benchmarks/search.py")
    out = tmp_path / "search.json"
    bench.main(["--quick", "--methods", "random,fk", "--json", str(out)])
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == ["random", "fk"]
    for r in records:
        assert {"compile_s", "nfe_per_s", "candidates_per_s", "nfe", "budget", "device", "seconds_median"} <= set(r)
        assert r["nfe"] <= r["budget"] and r["nfe_per_s"] > 0
