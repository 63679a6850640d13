"""Tests for genjax.estimators against exact distributions, gradients and densities
(the densities of genjax.distributions that the samplers must follow).

Every statistical test uses a fixed seed, a threshold that a wrong estimator fails, and
(where cheap) a check that the same test rejects a near-miss alternative, so it has power.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from genjax import distributions as dist
from genjax import estimators as est

N = 20_000
LOGITS5 = jnp.array([1.5, 0.2, -0.7, 0.9, -2.0])
MASKED5 = jnp.array([1.0, -jnp.inf, 0.0, -jnp.inf, 0.5])
BLOGITS = jnp.array([-1.5, 0.0, 0.7, 2.5])
EXTREME = jnp.array([[1e4, -1e4, 0.0, -jnp.inf, 3.0], [-jnp.inf, -1e4, -1e4, 5.0, -jnp.inf], [-1e4] * 5])
EXTREME_B = jnp.array([1e4, -1e4, 0.0, 3.0, -3.0])


def _keys(seed: int, n: int) -> jax.Array:
    return jax.random.split(jax.random.key(seed), n)


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _softmax64(x):
    x = np.asarray(x, np.float64)
    p = np.exp(x - x.max())
    return p / p.sum()


KEYS = _keys(1, N)


@jax.jit
def _categorical_draws(keys, logits, tau):
    """Soft, straight-through Gumbel-softmax and plain straight-through samples, one per key."""

    def one(key):
        return {
            "soft": est.gumbel_softmax(key, logits, temperature=tau),
            "hard": est.gumbel_softmax(key, logits, temperature=tau, hard=True),
            "st": est.straight_through_categorical(key, logits, temperature=tau),
        }

    return jax.vmap(one)(keys)


@jax.jit
def _binary_draws(keys, logits, tau):
    """Relaxed, straight-through relaxed and plain straight-through Bernoulli samples."""

    def one(key):
        return {
            "soft": est.relaxed_bernoulli(key, logits, temperature=tau),
            "hard": est.relaxed_bernoulli(key, logits, temperature=tau, hard=True),
            "st": est.straight_through_bernoulli(key, logits, temperature=tau),
        }

    return jax.vmap(one)(keys)


# 1. Hard samples follow the exact discrete law.


@pytest.mark.parametrize("kind", ["hard", "st"])
def test_categorical_frequencies_match_softmax(kind):
    counts = np.asarray(_categorical_draws(KEYS, LOGITS5, 0.5)[kind].sum(0), np.float64)
    assert counts.sum() == N
    assert stats.chisquare(counts, N * _softmax64(LOGITS5)).pvalue > 1e-3
    assert stats.chisquare(counts, N * _softmax64(0.9 * LOGITS5)).pvalue < 1e-6  # power check
    assert stats.chisquare(counts, np.full(5, N / 5)).pvalue < 1e-6

    masked = np.asarray(_categorical_draws(_keys(2, N), MASKED5, 0.5)[kind].sum(0), np.float64)
    assert masked[1] == masked[3] == 0
    assert stats.chisquare(masked[[0, 2, 4]], N * _softmax64(MASKED5[jnp.array([0, 2, 4])])).pvalue > 1e-3


def _binomial_pvalue(counts, n, probs):
    """Chi-square test of independent binomial counts against success probabilities."""
    chi2 = np.sum((counts - n * probs) ** 2 / (n * probs * (1.0 - probs)))
    return stats.chi2.sf(chi2, df=len(probs))


@pytest.mark.parametrize("kind", ["hard", "st"])
def test_bernoulli_frequencies_match_sigmoid(kind):
    samples = np.asarray(_binary_draws(KEYS, BLOGITS, 0.5)[kind])
    assert set(np.unique(samples)) == {0.0, 1.0}
    counts = samples.sum(0).astype(np.float64)
    assert _binomial_pvalue(counts, N, _sigmoid64(BLOGITS)) > 1e-3
    assert _binomial_pvalue(counts, N, _sigmoid64(0.9 * BLOGITS)) < 1e-6  # power check


# 2. The hard sample is the discretised soft sample of the same key.


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_hard_is_argmax_of_soft(tau):
    for logits in (LOGITS5, MASKED5):
        draws = _categorical_draws(KEYS, logits, tau)
        np.testing.assert_array_equal(np.argmax(draws["soft"], -1), np.argmax(draws["hard"], -1))
        # The hard sample is the exact Gumbel-max draw of the plain ST sampler's path.
        np.testing.assert_array_equal(draws["hard"], draws["st"])
    draws = _binary_draws(KEYS, BLOGITS, tau)
    np.testing.assert_array_equal(np.asarray(draws["soft"]) > 0.5, np.asarray(draws["hard"]) == 1.0)
    np.testing.assert_array_equal(draws["hard"], draws["st"])


# 3. Zero-temperature limit.


def test_soft_sample_approaches_one_hot_as_temperature_falls():
    taus = [2.0, 1.0, 0.5, 0.1, 0.01, 0.001]
    gap = [float(1.0 - jnp.mean(jnp.max(_categorical_draws(KEYS, LOGITS5, t)["soft"], -1))) for t in taus]
    assert np.all(np.diff(gap) < 0), gap
    assert gap[-1] < 1e-3
    gap = [float(jnp.mean(jnp.minimum(y, 1.0 - y))) for y in (_binary_draws(KEYS, BLOGITS, t)["soft"] for t in taus)]
    assert np.all(np.diff(gap) < 0), gap
    assert gap[-1] < 1e-3


# 4. Straight-through gradients.

W = jax.random.normal(jax.random.key(6), (3, 5))
L35 = jax.random.normal(jax.random.key(7), (3, 5))


def _weighted_sum(sampler, key, **kw):
    return lambda logits, tau: jnp.sum(W * sampler(key, logits, temperature=tau, **kw))


@functools.partial(jax.jit, static_argnames="sampler")
def _hard_and_soft_grads(key, logits, tau, sampler):
    """The hard sample, gradients (logits, tau) of sum(W * sample) for hard and soft, and
    the hard sample's Jacobian in forward and reverse mode."""
    hard = lambda l: sampler(key, l, temperature=tau, hard=True)
    g_hard = jax.grad(_weighted_sum(sampler, key, hard=True), argnums=(0, 1))(logits, tau)
    g_soft = jax.grad(_weighted_sum(sampler, key), argnums=(0, 1))(logits, tau)
    return hard(logits), g_hard, g_soft, jax.jacfwd(hard)(logits), jax.jacrev(hard)(logits)


@pytest.mark.parametrize("sampler", [est.gumbel_softmax, est.relaxed_bernoulli])
def test_straight_through_gradient_equals_relaxed_gradient(sampler, key):
    hard, g_hard, g_soft, fwd, rev = _hard_and_soft_grads(key, L35, 0.7, sampler)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    if sampler is est.gumbel_softmax:
        np.testing.assert_array_equal(hard.sum(-1), 1.0)
    for a, b in zip(g_hard, g_soft):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(g_soft[0]).max()) > 1e-3
    np.testing.assert_allclose(fwd, rev, rtol=1e-6, atol=1e-7)


@jax.jit
def _plain_straight_through(key, logits, tau):
    """For both plain straight-through estimators: the sample, the logit-gradient of
    sum(W * sample), and the gradient of sum(W * softmax(logits / tau)) (resp. sigmoid)."""
    out = []
    pairs = [(est.straight_through_categorical, jax.nn.softmax), (est.straight_through_bernoulli, jax.nn.sigmoid)]
    for sampler, relax in pairs:
        grad = jax.grad(_weighted_sum(sampler, key))(logits, tau)
        expected = jax.grad(lambda l, relax=relax: jnp.sum(W * relax(l / tau)))(logits)
        out.append((sampler(key, logits, temperature=tau), grad, expected))
    return out


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_plain_straight_through_gradients(key, tau):
    (one_hot, grad_cat, expected_cat), (bits, grad_bern, expected_bern) = _plain_straight_through(key, L35, tau)
    assert set(np.unique(one_hot)) <= {0.0, 1.0} and set(np.unique(bits)) <= {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(-1), 1.0)
    np.testing.assert_allclose(grad_cat, expected_cat, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad_bern, expected_bern, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(grad_cat).max()) > 1e-3 and float(jnp.abs(grad_bern).max()) > 1e-3


# 5. Densities integrate to one and agree with the samplers.

PAIRS = [(0.0, 0.5), (1.5, 1.0), (-2.0, 0.3), (0.7, 2.0)]
S_GRID = np.linspace(-150.0, 150.0, 60_000)  # s = log(y1 / y0); even length, so no point at 0
HALF = len(S_GRID) // 2


@jax.jit
def _logp2(y, logit, tau):
    logits = jnp.stack([jnp.zeros_like(logit), logit], -1)
    return jax.vmap(lambda y: dist.gumbel_softmax_log_prob(y, logits, temperature=tau))(y)


@jax.jit
def _logp_binary(y, logit, tau):
    return dist.relaxed_bernoulli_log_prob(y, jnp.broadcast_to(logit, y.shape), temperature=tau)


def _log_jacobian(s):
    """log |dy/ds| = log y0 + log y1 for y = (sigmoid(-s), sigmoid(s))."""
    return np.log(_sigmoid64(s)) + np.log(_sigmoid64(-s))


def _binary_density_on_grid(logit, tau):
    """The k = 2 Gumbel-softmax density of y = (sigmoid(-s), sigmoid(s)) as a density in s."""
    y = np.stack([_sigmoid64(-S_GRID), _sigmoid64(S_GRID)], -1).astype(np.float32)
    return np.exp(np.asarray(_logp2(y, logit, tau), np.float64) + _log_jacobian(S_GRID))


@pytest.mark.parametrize("logit,tau", PAIRS)
def test_two_class_density_integrates_to_one(logit, tau):
    two_class = _binary_density_on_grid(logit, tau)
    assert abs(np.trapezoid(two_class, S_GRID) - 1.0) < 1e-3
    # Binary Concrete: p_l(y) = p_{-l}(1 - y), so evaluate both halves at y = sigmoid(-|s|) <= 1/2,
    # where y and 1 - y are both accurate in float32.
    y = _sigmoid64(S_GRID[:HALF]).astype(np.float32)
    logp = np.concatenate([_logp_binary(y, logit, tau), _logp_binary(y[::-1], -logit, tau)])
    binary = np.exp(logp.astype(np.float64) + _log_jacobian(S_GRID))
    assert abs(np.trapezoid(binary, S_GRID) - 1.0) < 1e-3
    # The k = 2 Gumbel-softmax density of (1 - t, t) is the Binary Concrete density of t.
    np.testing.assert_allclose(binary, two_class, rtol=1e-3, atol=1e-9)


def _binary_cdf(logit, tau):
    """The CDF in y of the k = 2 density, by cumulative quadrature over S_GRID."""
    cdf = integrate.cumulative_trapezoid(_binary_density_on_grid(logit, tau), S_GRID, initial=0.0)

    def at(y):
        with np.errstate(divide="ignore"):
            return np.interp(np.log(y) - np.log1p(-y), S_GRID, cdf)

    return at


def test_relaxed_bernoulli_samples_follow_the_density():
    logit, tau = float(BLOGITS[2]), 0.5
    y = np.asarray(_binary_draws(_keys(8, N), BLOGITS, tau)["soft"][:, 2], np.float64)
    assert stats.kstest(y, _binary_cdf(logit, tau)).pvalue > 1e-3
    assert stats.kstest(y, _binary_cdf(logit, 1.2 * tau)).pvalue < 1e-6  # power check


LOGITS3_MASKED = jnp.array([0.5, -0.4, 0.0, -jnp.inf, -jnp.inf])


@jax.jit
def _logp5(y, tau):
    return jax.vmap(lambda y: dist.gumbel_softmax_log_prob(y, LOGITS3_MASKED, temperature=tau))(y)


def _three_class_grid(tau, h=0.2):
    """Quadrature points y and weights p(y) |dy/ds| h^2 in additive-logistic coordinates s,
    y = softmax(s0, s1, 0); the Jacobian |d(y0, y1)/d(s0, s1)| is y0 y1 y2."""
    loc = np.asarray(LOGITS3_MASKED[:2] - LOGITS3_MASKED[2], np.float64) / tau
    s0, s1 = np.meshgrid(np.arange(-40.0, 40.0, h) + loc[0], np.arange(-40.0, 40.0, h) + loc[1], indexing="ij")
    s = np.stack([s0, s1, np.zeros_like(s0)], -1).reshape(-1, 3)
    y = np.exp(s - s.max(-1, keepdims=True))
    y /= y.sum(-1, keepdims=True)
    y_padded = np.concatenate([y, np.zeros_like(y[:, :2])], -1).astype(np.float32)
    return y, np.exp(np.asarray(_logp5(y_padded, tau), np.float64) + np.log(y).sum(-1)) * h**2


def test_three_class_density_normalised_and_matches_samples():
    """Two masked classes (logit -inf, y = 0) must leave the density of the three finite ones
    unchanged: counting k = 5 would change Gamma(k) tau^(k-1) and break normalisation."""
    tau = 0.5
    y, weight = _three_class_grid(tau)
    assert abs(weight.sum() - 1.0) < 1e-3
    samples = np.asarray(_categorical_draws(_keys(9, N), LOGITS3_MASKED, tau)["soft"], np.float64)
    np.testing.assert_array_equal(samples[:, 3:], 0.0)
    concentration = lambda y: np.sum(y[:, :3] ** 2, -1)
    for f in (lambda y: y[:, 0], lambda y: np.max(y, -1) > 0.9, concentration):
        values = f(samples)
        se = values.std() / np.sqrt(N)
        assert abs(values.mean() - np.sum(weight * f(y))) < 5 * se
    y_wrong, weight_wrong = _three_class_grid(1.1 * tau)  # power check: a 10% wrong temperature
    assert abs(values.mean() - np.sum(weight_wrong * concentration(y_wrong))) > 10 * se


# 6. The score-function estimator is unbiased.

THETA = jnp.array([0.5, -0.3, 0.1])
COST = jnp.array([1.0, 3.0, -2.0])
N_SF = 50_000


def _categorical_cost(z, theta):
    return 10.0 + jnp.dot(COST, z) + 0.5 * jnp.sum(theta**2)


def _bernoulli_cost(z, theta):
    return 10.0 + jnp.dot(COST, z) + 4.0 * z[0] * z[1] + 0.5 * jnp.sum(theta**2)


def _sf_grad(theta, key, baseline, binary):
    def surrogate(theta):
        if binary:
            z = jax.lax.stop_gradient(est.straight_through_bernoulli(key, theta))
            cost, log_q = _bernoulli_cost(z, theta), jnp.sum(dist.bernoulli_log_prob(z, theta))
        else:
            z = jax.lax.stop_gradient(est.straight_through_categorical(key, theta))
            cost, log_q = _categorical_cost(z, theta), dist.categorical_log_prob(z, theta)
        out = est.score_function_surrogate(cost, log_q, baseline)
        assert out.shape == ()
        return out

    return jax.grad(surrogate)(theta)


_sf_grads = jax.jit(jax.vmap(_sf_grad, in_axes=(None, 0, None, None)), static_argnums=3)


def _exact_gradient_and_mean_cost(binary):
    """d/dtheta E[cost] and E[cost], in closed form (float64)."""
    theta, c = np.asarray(THETA, np.float64), np.asarray(COST, np.float64)
    if binary:
        p = _sigmoid64(theta)
        mean = c @ p + 4.0 * p[0] * p[1]
        grad = p * (1.0 - p) * (c + 4.0 * np.array([p[1], p[0], 0.0]))
    else:
        p = _softmax64(theta)
        mean = c @ p
        grad = p * (c - mean)
    return grad + theta, float(10.0 + mean + 0.5 * theta @ theta)


@pytest.mark.parametrize("binary", [False, True])
def test_score_function_gradient_is_unbiased(binary):
    exact, mean_cost = _exact_gradient_and_mean_cost(binary)
    keys, se = _keys(10, N_SF), {}
    for baseline in (0.0, mean_cost):
        grads = np.asarray(_sf_grads(THETA, keys, baseline, binary), np.float64)
        se[baseline] = grads.std(0) / np.sqrt(N_SF)
        np.testing.assert_array_less(np.abs(grads.mean(0) - exact), 5 * se[baseline])
        assert np.all(np.abs(exact - np.asarray(THETA)) > 10 * se[baseline])  # the score term is resolvable
    assert np.all(se[mean_cost] < 0.5 * se[0.0])  # the baseline reduces variance


def test_surrogate_value_and_baseline_update():
    cost, log_q = jnp.array([1.5, -2.0]), jnp.array([-0.3, -1.2])
    np.testing.assert_array_equal(est.score_function_surrogate(cost, log_q, 0.5), cost)
    grad = jax.grad(lambda lq: est.score_function_surrogate(cost, lq, 0.5).sum())(log_q)
    np.testing.assert_allclose(grad, cost - 0.5)
    new = est.ema_baseline_update(jnp.float32(2.0), jnp.float32(4.0), decay=0.9)
    np.testing.assert_allclose(new, 2.2, rtol=1e-6)
    assert float(jax.grad(lambda v: est.ema_baseline_update(2.0, v, decay=0.9))(4.0)) == 0.0


# 7. Temperature schedule.


def test_temperature_schedule():
    kw = dict(tau0=1.0, tau_min=0.5, rate=1e-3, every=500)
    steps = jnp.array([0, 1, 499, 500, 999, 1000, 10**6])
    taus = np.asarray(jax.jit(lambda s: est.temperature_schedule(s, **kw))(steps))
    assert taus.dtype == np.float32
    np.testing.assert_allclose(taus, [1.0, 1.0, 1.0, np.exp(-0.5), np.exp(-0.5), 0.5, 0.5], rtol=1e-6)
    assert float(jax.jit(lambda s: est.temperature_schedule(s, rate=1e-4))(jnp.int32(7))) == pytest.approx(np.exp(-7e-4), rel=1e-6)


# 8. Transformations, dtypes and extreme logits.


def test_pmap_matches_single_device_calls():
    logits = L35[None] + jnp.arange(8.0)[:, None, None]
    f = functools.partial(est.gumbel_softmax, temperature=0.5, hard=True)
    out = jax.pmap(f)(KEYS[:8], logits)
    assert out.shape == (8, 3, 5)
    for i in (0, 5):
        np.testing.assert_array_equal(out[i], f(KEYS[i], logits[i]))


def test_legacy_uint32_key_matches_typed_key(key):
    # (A traced temperature is exercised by every jitted draw above: tau is an argument.)
    legacy = jax.random.key_data(key)
    assert legacy.dtype == jnp.uint32 and legacy.shape == (2,)
    sample = est.gumbel_softmax(legacy, L35, temperature=0.5)
    np.testing.assert_array_equal(sample, est.gumbel_softmax(key, L35, temperature=0.5))


SAMPLERS = {
    "gumbel_softmax": functools.partial(est.gumbel_softmax, temperature=0.5),
    "gumbel_softmax_hard": functools.partial(est.gumbel_softmax, temperature=0.5, hard=True),
    "straight_through_categorical": functools.partial(est.straight_through_categorical, temperature=0.5),
    "relaxed_bernoulli": functools.partial(est.relaxed_bernoulli, temperature=0.5),
    "relaxed_bernoulli_hard": functools.partial(est.relaxed_bernoulli, temperature=0.5, hard=True),
    "straight_through_bernoulli": functools.partial(est.straight_through_bernoulli, temperature=0.5),
}


@jax.jit
def _bfloat16_run(key):
    """Per sampler: the bf16 sample, the float32 sample of the same logits, and the bf16 gradient."""
    logits, weights = L35.astype(jnp.bfloat16), W.astype(jnp.bfloat16)
    out = {}
    for name, fn in SAMPLERS.items():
        grad = jax.grad(lambda l, fn=fn: jnp.sum(weights * fn(key, l)))(logits)
        out[name] = (fn(key, logits), fn(key, logits.astype(jnp.float32)), grad)
    return out


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_bfloat16_in_bfloat16_out(name, key):
    out, out32, grad = _bfloat16_run(key)[name]
    assert out.dtype == jnp.bfloat16 and out32.dtype == jnp.float32
    # Arithmetic runs in float32, so bf16 logits give the float32 result rounded once.
    np.testing.assert_array_equal(out, out32.astype(jnp.bfloat16))
    assert grad.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.any(grad != 0))


def _sample(key, logits, tau, **kw):
    return est.gumbel_softmax(key, logits, temperature=tau, **kw)


def _bits(key, logits, tau, **kw):
    return est.relaxed_bernoulli(key, logits, temperature=tau, **kw)


# name -> (uses EXTREME_B rather than EXTREME, fn(key, logits, tau)); each is differentiated in logits and tau.
EXTREME_CASES = {
    "gumbel_softmax": (False, _sample),
    "gumbel_softmax_hard": (False, functools.partial(_sample, hard=True)),
    "straight_through_categorical": (False, lambda k, l, t: est.straight_through_categorical(k, l, temperature=t)),
    "gumbel_softmax_log_prob": (
        False,
        lambda k, l, t: dist.gumbel_softmax_log_prob(_sample(k, l, t), l, temperature=t),
    ),
    "categorical_kl_uniform": (False, lambda k, l, t: dist.categorical_kl_uniform(l) * t),
    "categorical_log_prob": (False, lambda k, l, t: dist.categorical_log_prob(_sample(k, l, t, hard=True), l)),
    "relaxed_bernoulli": (True, _bits),
    "relaxed_bernoulli_hard": (True, functools.partial(_bits, hard=True)),
    "straight_through_bernoulli": (True, lambda k, l, t: est.straight_through_bernoulli(k, l, temperature=t)),
    "relaxed_bernoulli_log_prob": (
        True,
        lambda k, l, t: dist.relaxed_bernoulli_log_prob(_bits(k, l, t), l, temperature=t),
    ),
    "bernoulli_kl": (True, lambda k, l, t: dist.bernoulli_kl(l, 0.3) * t),
    "bernoulli_log_prob": (True, lambda k, l, t: dist.bernoulli_log_prob(_bits(k, l, t, hard=True), l)),
}


def _weighted_total(y):
    """A weighted sum, so that no gradient vanishes by symmetry (a softmax sums to 1)."""
    return jnp.sum(jnp.linspace(1.0, 2.0, y.size).reshape(y.shape) * y)


@jax.jit
def _extreme_run(key, tau):
    """Values and (logits, tau)-gradients of every case, compiled as one program."""
    out = {}
    for name, (binary, fn) in EXTREME_CASES.items():
        x = EXTREME_B if binary else EXTREME
        weighted = lambda l, t, fn=fn: _weighted_total(fn(key, l, t))
        out[name] = (fn(key, x, tau), jax.grad(weighted, argnums=(0, 1))(x, tau))
    return out


@functools.cache
def _extreme_results(tau):
    return _extreme_run(jax.random.key(0), tau)


@pytest.mark.parametrize("name", sorted(EXTREME_CASES))
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_extreme_logits_give_finite_values_and_gradients(name, tau):
    value, (grad_logits, grad_tau) = _extreme_results(tau)[name]
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad_logits)) and np.isfinite(grad_tau)


# 9. Bad input.

_K, _L = jax.random.key(0), jnp.zeros((2, 3))
BAD_INPUTS = [
    ("temperature", lambda: est.gumbel_softmax(_K, _L, temperature=0.0)),
    ("temperature", lambda: est.gumbel_softmax(_K, _L, temperature=jnp.array(-1.0), hard=True)),
    ("temperature", lambda: est.relaxed_bernoulli(_K, _L, temperature=0.0)),
    ("temperature", lambda: est.straight_through_categorical(_K, _L, temperature=-1.0)),
    ("temperature", lambda: est.straight_through_bernoulli(_K, _L, temperature=0.0)),
    ("temperature", lambda: dist.gumbel_softmax_log_prob(_L, _L, temperature=0.0)),
    ("temperature", lambda: dist.relaxed_bernoulli_log_prob(_L, _L, temperature=-2.0)),
    ("temperature", lambda: jax.jit(lambda l: est.gumbel_softmax(_K, l, temperature=0.0))(_L)),
    ("temperature", lambda: est.gumbel_softmax(_K, _L, temperature=jnp.ones(2))),
    ("logits", lambda: est.gumbel_softmax(_K, jnp.zeros((3, 1)), temperature=1.0)),
    ("logits", lambda: est.straight_through_categorical(_K, jnp.zeros((1,)))),
    ("logits", lambda: dist.gumbel_softmax_log_prob(jnp.ones((3, 1)), jnp.zeros((3, 1)), temperature=1.0)),
    ("logits", lambda: dist.categorical_kl_uniform(jnp.zeros((4, 1)))),
    ("logits", lambda: dist.categorical_log_prob(jnp.ones((4, 1)), jnp.zeros((4, 1)))),
    ("logits", lambda: est.gumbel_softmax(_K, jnp.zeros(3, jnp.int32), temperature=1.0)),
    ("logits", lambda: est.relaxed_bernoulli(_K, jnp.zeros(3, bool), temperature=1.0)),
    ("logits_q", lambda: dist.bernoulli_kl(jnp.zeros(3, jnp.int32), 0.0)),
    ("logits", lambda: dist.categorical_kl_uniform(jnp.float32(0.0))),
    ("key", lambda: est.gumbel_softmax(jax.random.split(_K, 4), _L, temperature=1.0)),
    ("key", lambda: est.relaxed_bernoulli(jnp.zeros((4, 2), jnp.uint32), _L, temperature=1.0)),
    ("key", lambda: est.straight_through_categorical(jnp.zeros(3, jnp.uint32), _L)),
    ("key", lambda: est.sample_gumbel(0, (3,))),
    ("axis", lambda: est.gumbel_softmax(_K, _L, temperature=1.0, axis=2)),
    ("axis", lambda: dist.categorical_kl_uniform(_L, axis=-3)),
    ("axis", lambda: dist.gumbel_softmax_log_prob(_L, _L, temperature=1.0, axis=5)),
    ("y", lambda: dist.gumbel_softmax_log_prob(jnp.ones((2, 4)), _L, temperature=1.0)),
    ("one_hot", lambda: dist.categorical_log_prob(jnp.ones(3), _L)),
    ("dtype", lambda: est.sample_gumbel(_K, (3,), jnp.int32)),
    ("tau0", lambda: est.temperature_schedule(0, tau0=0.0, rate=1.0)),
    ("tau_min", lambda: est.temperature_schedule(0, tau_min=-1.0, rate=1.0)),
    ("rate", lambda: est.temperature_schedule(0, rate=-0.1)),
    ("every", lambda: est.temperature_schedule(0, rate=0.1, every=0)),
    ("every", lambda: est.temperature_schedule(0, rate=0.1, every=2.5)),
    ("log_q", lambda: est.score_function_surrogate(jnp.zeros(3), jnp.zeros(4), 0.0)),
    ("axis", lambda: est.straight_through_categorical(_K, _L, axis=(0, 1))),
    ("decay", lambda: est.ema_baseline_update(0.0, 1.0, decay=1.0)),
    ("decay", lambda: est.ema_baseline_update(0.0, 1.0, decay=-0.1)),
]


@pytest.mark.parametrize("name,call", BAD_INPUTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_value_error_naming_argument(name, call):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
