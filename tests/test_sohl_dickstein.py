"""Tests of the diffusion probabilistic models of Sohl-Dickstein et al. (arXiv:1503.03585)."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.data.toy2d import SwissRoll, sample_toy2d
from genjax.data.toy_sequences import heartbeat_sequences, sample_heartbeat
from genjax.models import sohl_dickstein as sd

ROOT = pathlib.Path(__file__).resolve().parents[1]


@functools.partial(jax.jit, static_argnames="scale")
def _perturb(params, key, scale=0.5):
    """Random parameters: every leaf moved by ``scale`` N(0, 1) noise (the net's last layer starts at 0)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def _mean_se(x):
    x = np.asarray(x, np.float64)
    return x.mean(), x.std(ddof=1) / math.sqrt(x.size)


# ------------------------------------------------------------------ the bound K


def _bound_and_ratio(model, x0, n):
    """A jitted ``f(params, key) -> (K samples, log-ratio samples, one-t estimates)``, n of each."""

    @jax.jit
    def f(params, key):
        k1, k2, k3 = (jax.random.split(k, n) for k in jax.random.split(key, 3))
        bound = jax.vmap(lambda kk: model.bound(params, x0, kk)["k"])(k1)
        ratio = jax.vmap(lambda kk: model.log_ratio(params, x0, kk))(k2)
        stoch = jax.vmap(lambda kk: model.stochastic_bound(params, x0, kk)["k"])(k3)
        return bound, ratio, stoch

    return f


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_bound_equals_monte_carlo_log_ratio_and_is_tight_at_init(key, family):
    """K (closed-form posteriors: eq. 14 + edge terms) = E_q[log p(x_{0:T}) - log q(x_{1:T}|x_0)], and the
    one-t training estimate is unbiased. At initialisation (zero last layer) p(x_{0:T}) = pi(x_0)
    q(x_{1:T}|x_0): every path's log-ratio is log pi(x_0) and K = log pi(x_0)."""
    if family == "gaussian":
        model = sd.GaussianDiffusion(data_dim=2, num_steps=3, beta_1=0.05, final_alpha_bar=0.05, hidden=(16,))
        x0 = jnp.array([0.7, -1.3])
        log_pi = -math.log(2 * math.pi) - 0.5 * float(jnp.sum(x0**2))
    else:
        model = sd.BinomialDiffusion(data_dim=4, num_steps=5, hidden=(16,))
        x0 = jnp.array([1.0, 0.0, 0.0, 1.0])
        log_pi = -4 * math.log(2)
    f = _bound_and_ratio(model, x0, 8000)
    init = model.init(key)
    bound, ratio, stoch = f(init, jax.random.key(1))
    np.testing.assert_allclose(ratio, log_pi, rtol=1e-4)
    (mk, sk), (ms, ss) = _mean_se(bound), _mean_se(stoch)
    assert abs(mk - log_pi) < 4 * sk and abs(ms - log_pi) < 4 * ss, (mk, sk, ms, ss, log_pi)
    bound, ratio, stoch = f(_perturb(init, jax.random.key(2)), jax.random.key(3))
    (mk, sk), (mr, sr), (ms, ss) = _mean_se(bound), _mean_se(ratio), _mean_se(stoch)
    assert abs(mk - mr) < 4 * math.hypot(sk, sr), (mk, sk, mr, sr)
    assert abs(ms - mk) < 4 * math.hypot(sk, ss), (ms, ss, mk, sk)
    assert mk < log_pi - 0.5  # random params: far from the tight initial bound, so the check is not vacuous


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _binomial_exact(model, flip, states):
    """Exact K(x_0) and log p(x_0) for every state of a tiny binomial model whose reverse kernel has
    flip logits ``flip(x_t, t)``, by enumeration (float64)."""
    xs, ts = jnp.asarray(states), jnp.arange(2, model.num_steps + 1)

    @jax.jit
    def logits():
        def per_t(fn):
            return jax.vmap(fn)(ts)

        rev = per_t(lambda t: jax.vmap(lambda x: flip(x, t))(xs))  # [t, x_t, D]
        post = per_t(lambda t: jax.vmap(lambda a: jax.vmap(lambda x: model.posterior_flip_logit(a, x, t))(xs))(xs))  # [t, x_0, x_t, D]
        marg = per_t(lambda t: jax.vmap(lambda a: model.forward_marginal_logit(a, t))(xs))  # [t, x_0, D]
        return rev, post, marg

    rev, post, marg = (np.asarray(v, np.float64) for v in logits())
    x = np.asarray(states, np.float64)
    sign = 1.0 - 2.0 * x  # flip logit -> logit of P(bit = 1)

    def log_rows(rate_logit):  # [i, D] logits of P(bit = 1) -> [i, j] log P(state j)
        return np.sum(np.where(x[None] > 0, _log_sigmoid(rate_logit)[:, None], _log_sigmoid(-rate_logit)[:, None]), -1)

    marginal = np.full(len(x), 2.0**-model.data_dim)  # p(x_T)
    for i in range(len(ts) - 1, -1, -1):  # t = T..2
        marginal = marginal @ np.exp(log_rows(sign * rev[i]))
    step_logit = model.flip_logits()[0][0]
    marginal = marginal @ np.exp(log_rows(sign * step_logit))  # fixed p(x_0 | x_1)
    c = model._constant_terms()
    k = np.full(len(x), c["h_q_T"] - c["h_q_1"] - c["h_p_T"])
    for i in range(len(ts)):
        q_xt = np.exp(log_rows(marg[i]))  # [x_0, x_t]
        lq, lp = post[i], rev[i][None]
        kl = np.sum(np.exp(_log_sigmoid(lq)) * (_log_sigmoid(lq) - _log_sigmoid(lp)) + np.exp(_log_sigmoid(-lq)) * (_log_sigmoid(-lq) - _log_sigmoid(-lp)), -1)
        k -= np.sum(q_xt * kl, axis=1)
    return k, np.log(marginal)


def test_binomial_bound_is_below_the_exact_log_likelihood_for_any_params(key):
    """Heartbeat-like data (4 bins, a 1 every 2nd): K(x_0) <= log p(x_0) for every x_0 and random params,
    so E_data[K] <= E_data[log p] <= -H(data) = -log 2. The oracle kernel (best factorised one) has
    the largest expected bound of all."""
    model = sd.BinomialDiffusion(data_dim=4, num_steps=4, hidden=(16,))
    states = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)
    data = heartbeat_sequences(length=4, period=2)
    beats = [int(np.flatnonzero((states == row).all(1))[0]) for row in data]
    k_oracle, log_p_oracle = _binomial_exact(model, model.oracle_reverse(data), states)
    assert np.all(k_oracle <= log_p_oracle + 1e-5)
    assert np.mean(k_oracle[beats]) <= -math.log(2) + 1e-5
    for seed in range(3):
        params = _perturb(model.init(key), jax.random.key(10 + seed), scale=1.0)
        k, log_p = _binomial_exact(model, lambda x, t, p=params: model.reverse_flip_logit(p, x, t), states)
        np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=1e-5)
        assert np.all(k <= log_p + 1e-5), (k, log_p)
        assert np.mean(k[beats]) <= np.mean(log_p[beats]) + 1e-5 <= -math.log(2) + 2e-5
        assert np.min(log_p - k) > 1e-3  # a real gap: random params are not the exact reversal
        assert np.mean(k[beats]) < np.mean(k_oracle[beats])


def test_binomial_posterior_matches_brute_force():
    """q(x_{t-1} | x_t, x_0) of the binomial chain from Bayes' rule on the enumerated one-bit chain."""
    T = 6
    model = sd.BinomialDiffusion(data_dim=1, num_steps=T, hidden=(4,))
    betas = sd.binomial_betas(T)
    kernels = [np.array([[1 - b / 2, b / 2], [b / 2, 1 - b / 2]]) for b in betas]  # K[x_prev, x_next]
    for x0 in (0, 1):
        marg = [np.eye(2)[x0]]
        for kern in kernels:
            marg.append(marg[-1] @ kern)
        for t in range(2, T + 1):
            for xt in (0, 1):
                joint = marg[t - 1] * kernels[t - 1][:, xt]  # q(x_{t-1}) q(x_t | x_{t-1})
                post_one = joint[1] / joint.sum()
                flip = jax.nn.sigmoid(model.posterior_flip_logit(jnp.array([float(x0)]), jnp.array([float(xt)]), t))
                rate = float(flip[0]) if xt == 0 else 1.0 - float(flip[0])
                np.testing.assert_allclose(rate, post_one, rtol=1e-5, atol=1e-7)
            # the forward marginal q(x_t = 1 | x_0) as well
            np.testing.assert_allclose(float(jax.nn.sigmoid(model.forward_marginal_logit(jnp.array([float(x0)]), t))[0]), marg[t][1], rtol=1e-5)


def test_gaussian_posterior_moments_match_gaussian_conditioning():
    model = sd.GaussianDiffusion(data_dim=1, num_steps=8, beta_1=0.01, final_alpha_bar=0.01, learn_beta=False, hidden=(4,))
    betas = model.base_betas()
    x0, xt = 0.8, -0.3
    for t in range(2, 9):
        abar_prev = np.prod(1 - betas[: t - 1])
        # joint of (x_{t-1}, x_t) given x_0: x_{t-1} = sqrt(abar_prev) x0 + e1, x_t = sqrt(1 - beta_t) x_{t-1} + e2
        m1, v1 = math.sqrt(abar_prev) * x0, 1 - abar_prev
        a = math.sqrt(1 - betas[t - 1])
        m2, v2, c12 = a * m1, a * a * v1 + betas[t - 1], a * v1
        mean_ref, var_ref = m1 + c12 / v2 * (xt - m2), v1 - c12 * c12 / v2
        mean, var = model.posterior(jnp.asarray(betas, jnp.float32), jnp.array([x0]), jnp.array([xt]), t)
        np.testing.assert_allclose(float(mean[0]), mean_ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(var), var_ref, rtol=1e-4)


def test_gaussian_oracle_is_the_exact_reverse_kernel_for_gaussian_data(key):
    """For data N(c, v I) the exact reverse kernel q(x_{t-1} | x_t) is Gaussian; the oracle must equal it."""
    model = sd.GaussianDiffusion(data_dim=2, num_steps=6, beta_1=0.02, final_alpha_bar=0.05, hidden=(4,))
    params = model.init(key)
    betas = np.asarray(model.betas(params), np.float64)
    c, v, x_t = np.array([0.5, -1.0]), 0.3, np.array([0.2, 0.4])
    for centre, var in ((c, v), (np.zeros(2), 1.0)):
        reverse = model.oracle_reverse(params, jnp.asarray(centre[None]), var)
        for t in range(2, 7):
            abar_prev = np.prod(1 - betas[: t - 1])
            a = math.sqrt(1 - betas[t - 1])
            m1, v1 = math.sqrt(abar_prev) * centre, abar_prev * var + 1 - abar_prev
            v2, c12 = a * a * v1 + betas[t - 1], a * v1
            mean, log_var = reverse(jnp.asarray(x_t, jnp.float32), t)
            np.testing.assert_allclose(mean, m1 + c12 / v2 * (x_t - a * m1), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(np.exp(log_var), np.full(2, v1 - c12 * c12 / v2), rtol=1e-4)
            if var == 1.0:  # stationary data: the kernel is the forward step's reversal
                np.testing.assert_allclose(mean, a * x_t, rtol=1e-4)
                np.testing.assert_allclose(np.exp(log_var), betas[t - 1], rtol=1e-4)
    # evaluate_bound draws example i's x_t from split(key, num)[i] whatever the chunking, so two
    # evaluations (learned and oracle kernels) see the same x_t and their difference is paired.
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    k3, k7 = (sd.evaluate_bound(model, params, x, key, chunk=c, reverse=reverse)["k"] for c in (3, 7))
    np.testing.assert_allclose(k3, k7, rtol=1e-6)


def test_gaussian_bound_is_below_the_exact_log_likelihood(key):
    """1D, T = 3: log p(x_0) by quadrature over x_1, x_2, x_3; K(x_0) <= log p(x_0) for random params."""
    model = sd.GaussianDiffusion(data_dim=1, num_steps=3, beta_1=0.05, final_alpha_bar=0.1, hidden=(16,))
    params = _perturb(model.init(key), jax.random.key(5), scale=0.7)
    betas = model.betas(params)
    grid = jnp.linspace(-7.0, 7.0, 1401)
    w = float(grid[1] - grid[0])

    @jax.jit
    def kernel(t):  # [x_t, x_{t-1}] density of the learned p(x_{t-1} | x_t) on the grid
        mean, log_var = jax.vmap(lambda x: model.reverse(params, betas, x[None], t))(grid)
        return jnp.exp(-0.5 * (grid[None, :] - mean) ** 2 / jnp.exp(log_var) - 0.5 * log_var - 0.5 * math.log(2 * math.pi))

    dens = jnp.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)  # p(x_3)
    for t in (3, 2):
        dens = (dens * w) @ kernel(t)
    np.testing.assert_allclose(float(jnp.sum(dens) * w), 1.0, rtol=1e-2)  # (a deficit only lowers log p)
    x0s = jnp.array([-1.5, 0.0, 0.4, 2.0])
    b1 = float(betas[0])
    kern = jnp.exp(-0.5 * (x0s[:, None] - math.sqrt(1 - b1) * grid[None, :]) ** 2 / b1) / math.sqrt(2 * math.pi * b1)
    log_p = np.log(np.asarray(kern @ (dens * w)))
    n = 8000
    keys = jax.random.split(key, (4, n))
    ks = jax.jit(jax.vmap(jax.vmap(lambda x, kk: model.bound(params, x[None], kk)["k"], in_axes=(None, 0))))(x0s, keys)
    for x0, k_samples, lp in zip(x0s, ks, log_p):
        k, se = _mean_se(k_samples)
        assert k < lp + 3 * se, (float(x0), k, se, lp)


# -------------------------------------------------------------- forward chains


def test_binomial_forward_chain_ends_at_bernoulli_half(key):
    model = sd.BinomialDiffusion(data_dim=20, num_steps=2000, hidden=(4,))
    x0 = jnp.asarray(heartbeat_sequences()[np.arange(400) % 5])
    path = jax.jit(model.forward_trajectory)(x0, key)
    n = x0.size
    assert abs(float(path[-1].mean()) - 0.5) < 4 * math.sqrt(0.25 / n)
    # the signal decays linearly: P(x_t != x_0) = t / (2T)
    for t in (200, 1000, 1999):
        frac = float(jnp.mean(jnp.abs(path[t] - x0)))
        assert abs(frac - t / 4000) < 4 * math.sqrt(0.25 / n), (t, frac)
    _, marg = model.flip_logits()
    np.testing.assert_allclose(1 / (1 + np.exp(-marg[1:])), np.arange(1, 2001) / 4000, rtol=1e-9)


def test_binomial_schedule_is_the_papers():
    np.testing.assert_allclose(sd.binomial_betas(4), [1 / 4, 1 / 3, 1 / 2, 1.0])


def test_gaussian_schedule_and_forward_marginal(key):
    model = sd.GaussianDiffusion(data_dim=2, num_steps=40)
    betas = model.base_betas()
    assert betas[0] == 1e-4 and np.all((betas > 0) & (betas < 1))
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(abar[-1], 1e-3, rtol=1e-6)
    log_snr = np.log(abar / (1 - abar))  # falls linearly in t
    np.testing.assert_allclose(np.diff(log_snr), np.full(39, (log_snr[-1] - log_snr[0]) / 39), rtol=1e-6)
    # the simulated chain has the closed-form marginals q(x_t | x_0)
    x0 = jnp.full((2000, 2), 1.5)
    params = model.init(key)
    path = jax.jit(model.forward_trajectory)(params, x0, key)
    for t in (5, 40):
        mean, var = model.forward_marginal(model.betas(params), x0[0], t)
        np.testing.assert_allclose(np.mean(path[t], 0), mean, atol=4 * math.sqrt(float(var) / 2000) + 1e-4)
        np.testing.assert_allclose(np.var(path[t], 0), var, rtol=0.1)


# ----------------------------------------------------------- training and data


def test_heartbeat_data_and_null_model():
    seqs = heartbeat_sequences()
    assert seqs.shape == (5, 20) and np.all(seqs.sum(1) == 4) and np.all(seqs.sum(0) == 1)
    x = seqs[np.arange(1000) % 5]
    h = -(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8))
    np.testing.assert_allclose(sd.independent_bernoulli_log_likelihood(x) / math.log(2), -20 * h, rtol=1e-9)
    # the paper's two numbers are consistent with this null model: -2.414 - (-20 H(0.2)) = 12.024
    assert abs(-2.414 + 20 * h - 12.024) < 2e-3
    s = sample_heartbeat(np.random.default_rng(0), 500)
    assert {tuple(r) for r in s} <= {tuple(r) for r in seqs}


def _script():
    path = ROOT / "experiments" / "diffusion_toy" / "run.py"
    spec = importlib.util.spec_from_file_location("diffusion_toy_run", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_swiss_roll_standardisation_and_density_match_toy2d(key):
    """The standardised swiss roll is toy2d's: same moments, and its quadrature density is the density
    of toy2d's sampler: E_{y ~ toy2d}[phi(y) / p(y)] = 1 for any density phi."""
    data = SwissRoll(grid=2000)
    x = np.asarray(sample_toy2d(key, "swiss_roll", 100000), np.float64)
    np.testing.assert_allclose(x.mean(0), data.mean, atol=0.01)
    np.testing.assert_allclose(math.sqrt(np.mean((x - x.mean(0)) ** 2)), data.scale, rtol=0.01)
    ours = data.sample(key, 100000).astype(np.float64)
    np.testing.assert_allclose(np.mean(ours**2, 0), np.mean(((x - data.mean) / data.scale) ** 2, 0), rtol=0.02)
    assert abs(np.mean(ours**2) - 1.0) < 0.01  # the isotropic fit is N(0, I)
    y = (x[:4000] - data.mean) / data.scale
    log_phi = -0.5 * np.sum(y**2, 1) - math.log(2 * math.pi)
    ratio = np.exp(log_phi - data.log_density(y))
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / math.sqrt(y.shape[0]) + 0.01, (ratio.mean(), ratio.std())


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
    run = _script()
    out, work = tmp_path / "out", tmp_path / "work"
    assert run.main(["--tiny", "--out", str(out), "--workdir", str(work)]) == 0
    results = json.loads((out / "results.json").read_text())
    m = results["metrics"]
    for name in (
        "swiss_roll_K_bits",
        "swiss_roll_K_bits_stderr",
        "swiss_roll_K_minus_isotropic_bits",
        "heartbeat_K_bits",
        "heartbeat_K_bits_stderr",
        "heartbeat_K_minus_independent_bits",
    ):
        assert math.isfinite(m[name]), name
    assert m["swiss_roll_K_bits"] <= m["swiss_roll_data_log_likelihood_bits"] + 5 * m["swiss_roll_K_bits_stderr"]
    assert m["heartbeat_K_bits"] <= -math.log2(5) + 5 * m["heartbeat_K_bits_stderr"]
    assert results["wall_time_s"] > 0 and "--tiny" in results["command"]
    for fig in ("trajectories.png", "heartbeat.png", "training.png"):
        assert (out / fig).is_file()
    assert (work / "swiss_roll" / "checkpoints").is_dir()
    report = tmp_path / "RESULTS.md"
    report.write_text("intro\n<!-- table:begin -->\nold\n<!-- table:end -->\nend\n")
    run.update_results_md(report, m)
    text = report.read_text()
    assert "old" not in text and "| heartbeat (bits per sequence) | " in text and text.endswith("<!-- table:end -->\nend\n")


# ------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error_naming_the_argument(key):
    with pytest.raises(ValueError, match="beta_1"):
        sd.GaussianDiffusion(beta_1=1.5)
    with pytest.raises(ValueError, match="beta_1"):
        sd.GaussianDiffusion(beta_1=0.0)
    with pytest.raises(ValueError, match="betas_override"):
        sd.BinomialDiffusion(data_dim=2, num_steps=2, betas_override=(0.5, 1.2))
    with pytest.raises(ValueError, match="betas"):
        sd.check_betas([0.1, 1.0], allow_one=False)
    with pytest.raises(ValueError, match="num_steps"):
        sd.GaussianDiffusion(num_steps=0)
    with pytest.raises(ValueError, match="num_steps"):
        sd.BinomialDiffusion(num_steps=0)
    with pytest.raises(ValueError, match="num_steps"):
        sd.binomial_betas(-3)
    model = sd.GaussianDiffusion(data_dim=2, num_steps=3, hidden=(4,))
    params = model.init(key)
    with pytest.raises(ValueError, match="x0"):
        model.bound(params, jnp.zeros((3,)), key)
    with pytest.raises(ValueError, match="x0"):
        sd.evaluate_bound(model, params, np.zeros((4, 3)), key)
    with pytest.raises(ValueError, match='batch\\["x0"\\]'):
        sd.make_loss(model)(params, {"x0": jnp.zeros((4, 5))}, jax.random.split(key, 4))
    with pytest.raises(ValueError, match="num"):
        model.sample(params, key, 0)


# ------------------------------------------------------- the family in the CLI

SD_CONFIG = str(ROOT / "experiments" / "diffusion_toy" / "config.py")


def test_family_trains_resumes_and_evaluates_through_the_cli(tmp_path, capsys):
    from genjax import cli

    workdir = tmp_path / "run"
    args = ["train", "--config", f"{SD_CONFIG}:heartbeat,tiny", "--workdir", str(workdir), "--config.train.checkpoint_every=5"]
    assert cli.main([*args, "--config.train.num_steps=5"]) == 0
    assert cli.main(args) == 0  # resumes at step 5 and trains to 10
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10]
    capsys.readouterr()
    assert cli.main(["eval", "--workdir", str(workdir)]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["step"] == 10 and evaluation["K_bits"] <= -math.log2(5) + 5 * evaluation["K_bits_stderr"]
    assert (workdir / "heartbeat.png").is_file() and (workdir / "samples.png").is_file()
    assert cli.main(["train", "--config", f"{SD_CONFIG}:heartbeat,tiny", "--workdir", str(tmp_path / "bad"), "--config.data.name=spiral"]) == 1
    assert "data.name: expected one of ('swiss_roll', 'heartbeat')" in capsys.readouterr().err


def test_loss_names_keys_when_given_one_key_instead_of_one_per_example(key):
    model = sd.GaussianDiffusion(data_dim=2, num_steps=3, beta_1=0.05, final_alpha_bar=0.05, hidden=(4,))
    params = model.init(key)
    with pytest.raises(ValueError, match=r"keys: expected shape \[batch\] = \(5,\) of typed PRNG keys"):
        sd.make_loss(model)(params, {"x0": jnp.zeros((5, 2))}, key)
