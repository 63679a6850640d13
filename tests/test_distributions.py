"""genjax.distributions against scipy, closed forms, Monte Carlo and brute force."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax import distributions as dist


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _softmax64(x):
    x = np.asarray(x, np.float64)
    p = np.exp(x - x.max())
    return p / p.sum()


# ------------------------------------------------------------------- Gaussian


def test_normal_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    x, mean, log_var = (rng.normal(size=(3, 5)).astype(np.float32) for _ in range(3))
    got = dist.normal_log_prob(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(log_var))
    want = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_normal_kl_matches_closed_form_with_covariance_matrices():
    rng = np.random.default_rng(0)
    m1, lv1, m2, lv2 = (rng.normal(size=(4, 6)).astype(np.float32) for _ in range(4))
    got = np.asarray(jnp.sum(dist.normal_kl(*map(jnp.asarray, (m1, lv1, m2, lv2))), axis=-1))
    for i in range(4):
        s1, s2 = np.diag(np.exp(lv1[i]).astype(np.float64)), np.diag(np.exp(lv2[i]).astype(np.float64))
        d = (m2[i] - m1[i]).astype(np.float64)
        inv2 = np.linalg.inv(s2)
        # KL(N(m1, S1) || N(m2, S2)) = 1/2 (tr(S2^-1 S1) + d' S2^-1 d - k + log det S2 - log det S1)
        want = 0.5 * (np.trace(inv2 @ s1) + d @ inv2 @ d - 6 + np.linalg.slogdet(s2)[1] - np.linalg.slogdet(s1)[1])
        np.testing.assert_allclose(got[i], want, rtol=1e-5)


def test_standard_normal_kl_matches_closed_form_with_covariance_matrices():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 6)).astype(np.float32)
    logvar = rng.normal(size=(4, 6)).astype(np.float32)
    got = np.asarray(jnp.sum(dist.standard_normal_kl(jnp.asarray(mean), jnp.asarray(logvar)), axis=-1))
    for i in range(4):
        cov = np.diag(np.exp(logvar[i]).astype(np.float64))
        # KL(N(m, S) || N(0, I)) = 1/2 (tr S + m'm - k - log det S)
        want = 0.5 * (np.trace(cov) + mean[i] @ mean[i] - 6 - np.linalg.slogdet(cov)[1])
        np.testing.assert_allclose(got[i], want, rtol=1e-5)


def test_standard_normal_kl_equals_kingma_welling_closed_form_to_round_off():
    """The general KL against zeros and eq. 10's -1/2 sum(1 + log s^2 - m^2 - s^2) agree in float32
    on a batch of 100 examples with 50 latents, to a few ulps of the summed KL."""
    k1, k2 = jax.random.split(jax.random.key(0))
    mean = 2.0 * jax.random.normal(k1, (100, 50))
    logvar = 3.0 * jax.random.normal(k2, (100, 50)) - 1.0
    general = jnp.sum(dist.standard_normal_kl(mean, logvar), axis=-1)
    closed = -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), axis=-1)
    np.testing.assert_allclose(general, closed, rtol=4 * np.finfo(np.float32).eps)


def test_standard_normal_kl_matches_monte_carlo(key):
    mean, logvar = jnp.array([0.5, -1.0]), jnp.array([-0.3, 0.4])
    z = mean[None] + jnp.exp(0.5 * logvar)[None] * jax.random.normal(key, (200_000, 2))
    log_q = jnp.sum(dist.normal_log_prob(z, mean[None], logvar[None]), axis=-1)
    log_p = jnp.sum(dist.normal_log_prob(z, 0.0, 0.0), axis=-1)
    mc = jnp.mean(log_q - log_p)
    assert abs(float(mc) - float(jnp.sum(dist.standard_normal_kl(mean, logvar)))) < 0.01


def test_normal_entropy_matches_scipy():
    log_var = np.array([-9.0, -1.0, 0.0, 2.5], np.float32)
    want = stats.norm.entropy(scale=np.exp(0.5 * log_var.astype(np.float64)))
    np.testing.assert_allclose(dist.normal_entropy(jnp.asarray(log_var)), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("log_scale", [-4.0, -1.0, 0.5])
def test_discretized_decoder_is_normalised(log_scale):
    x = jnp.asarray(np.arange(256) / 127.5 - 1, jnp.float32)
    for mean in (-0.95, 0.1, 0.9):
        probs = jnp.exp(dist.discretized_gaussian_log_likelihood(x, jnp.float32(mean), jnp.float32(log_scale)))
        assert float(jnp.sum(probs)) == pytest.approx(1.0, abs=2e-4)


def test_discretized_decoder_bins_match_scipy_cdf():
    """Every level's probability is the N(mean, e^(2 log_scale)) mass of its bin, end bins open."""
    levels = np.arange(256) / 127.5 - 1
    mean, log_scale = 0.1, math.log(0.3)
    sd = math.exp(log_scale)
    edges = np.concatenate([[-np.inf], levels[:-1] + 1 / 255, [np.inf]])
    want = np.log(stats.norm.cdf(edges[1:], mean, sd) - stats.norm.cdf(edges[:-1], mean, sd))
    got = dist.discretized_gaussian_log_likelihood(jnp.asarray(levels, jnp.float32), jnp.float32(mean), jnp.float32(log_scale))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_decoder_upper_tail_is_not_lost_to_cancellation():
    """A level well above the mean: the bin mass from float64 CDFs, not 1 - 1."""
    mean, log_scale = 0.0, math.log(0.0074)
    x = 5 / 127.5  # five levels (5.3 standard deviations) above the mean: mass about 1e-6
    sd = math.exp(log_scale)
    expected = math.log(stats.norm.sf((x - 1 / 255) / sd) - stats.norm.sf((x + 1 / 255) / sd))
    got = float(dist.discretized_gaussian_log_likelihood(jnp.float32(x), jnp.float32(mean), jnp.float32(log_scale)))
    assert got == pytest.approx(expected, rel=1e-3)


# ------------------------------------------------------------------ Bernoulli


def test_bernoulli_log_prob_matches_scipy_and_grey_levels():
    logits = np.array([-3.0, -0.5, 0.0, 1.7, 4.0])
    p = _sigmoid64(logits)
    for x in (0.0, 1.0):
        got = dist.bernoulli_log_prob(jnp.full(5, x, jnp.float32), jnp.asarray(logits, jnp.float32))
        np.testing.assert_allclose(got, stats.bernoulli.logpmf(x, p), rtol=1e-5)
    grey = np.array([0.2, 0.5, 0.9, 0.0, 0.3])
    got = dist.bernoulli_log_prob(jnp.asarray(grey, jnp.float32), jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(got, grey * np.log(p) + (1 - grey) * np.log1p(-p), rtol=1e-5)


def test_bernoulli_log_prob_is_finite_and_exact_for_extreme_logits():
    x = jnp.array([[[1.0], [0.0]], [[1.0], [0.0]]])
    logits = jnp.array([[[50.0], [-50.0]], [[0.0], [0.0]]])
    got = float(jnp.sum(dist.bernoulli_log_prob(x, logits)))
    assert math.isfinite(got)
    np.testing.assert_allclose(got, 2 * math.log(0.5), atol=1e-6)


def test_bernoulli_kl_and_log_probs_brute_force():
    logits, prior = np.array([-3.0, -0.5, 0.0, 1.7]), 0.4
    p, q = _sigmoid64(logits), _sigmoid64(prior)
    expected = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    np.testing.assert_allclose(dist.bernoulli_kl(jnp.asarray(logits, jnp.float32), prior), expected, rtol=1e-5)
    np.testing.assert_allclose(dist.bernoulli_kl(jnp.array([1e4, -1e4]), 0.0), [np.log(2.0)] * 2, rtol=1e-6)
    z = np.array([1.0, 0.0, 1.0, 0.0])
    log_q = dist.bernoulli_log_prob(jnp.asarray(z, jnp.float32), jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(log_q, np.log(np.where(z == 1, p, 1 - p)), rtol=1e-5)
    cat_logits = np.array([[0.3, -1.2, 2.0, 0.0], [1.0, 0.1, 0.5, -0.7]])
    log_q = dist.categorical_log_prob(jax.nn.one_hot(jnp.array([2, 0]), 4), jnp.asarray(cat_logits, jnp.float32))
    expected = [np.log(_softmax64(cat_logits[0])[2]), np.log(_softmax64(cat_logits[1])[0])]
    np.testing.assert_allclose(log_q, expected, rtol=1e-5)


def test_bernoulli_kl_between_two_logits_matches_scipy_entropy():
    """KL(q || p) = -H(q) - E_q[log p], with scipy's entropy and log-pmf."""
    lq, lp = np.array([-2.0, 0.3, 5.0]), np.array([1.0, -0.7, 2.0])
    q, p = _sigmoid64(lq), _sigmoid64(lp)
    want = -stats.bernoulli.entropy(q) - (q * stats.bernoulli.logpmf(1, p) + (1 - q) * stats.bernoulli.logpmf(0, p))
    got = dist.bernoulli_kl(jnp.asarray(lq, jnp.float32), jnp.asarray(lp, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bernoulli_entropy_matches_scipy_and_is_stable():
    logits = np.array([-8.3, -1.0, 0.0, 2.0, 12.0])
    np.testing.assert_allclose(dist.bernoulli_entropy(jnp.asarray(logits, jnp.float32)), stats.bernoulli.entropy(_sigmoid64(logits)), rtol=1e-5)
    extreme = dist.bernoulli_entropy(jnp.array([1e4, -1e4]))
    assert np.all(np.isfinite(extreme)) and np.all(np.asarray(extreme) >= 0)
    np.testing.assert_allclose(extreme, 0.0, atol=1e-6)
    np.testing.assert_allclose(dist.bernoulli_entropy(jnp.float32(0.0)), math.log(2.0), rtol=1e-7)


def test_bernoulli_functions_keep_bfloat16():
    logits = jnp.array([-1.0, 0.5], jnp.bfloat16)
    for out in (dist.bernoulli_log_prob(jnp.array([1.0, 0.0], jnp.bfloat16), logits), dist.bernoulli_kl(logits, 0.0), dist.bernoulli_entropy(logits)):
        assert out.dtype == jnp.bfloat16


@pytest.mark.parametrize("name,call", [
    ("logits_q", lambda: dist.bernoulli_kl(jnp.zeros(3, jnp.int32), 0.0)),
    ("logits", lambda: dist.bernoulli_entropy(jnp.zeros(3, jnp.int32))),
    ("x", lambda: dist.bernoulli_log_prob(jnp.zeros(3, jnp.int32), jnp.zeros(3))),
])  # fmt: skip
def test_bernoulli_bad_input_names_the_argument(name, call):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()


# ---------------------------------------------------------------- categorical


def test_categorical_kl_uniform_brute_force():
    logits = np.array([[0.3, -1.2, 2.0, 0.0], [1.0, -np.inf, 0.5, -np.inf]], np.float32)
    for row, kl in zip(logits, np.asarray(dist.categorical_kl_uniform(jnp.asarray(logits)))):
        finite = row[np.isfinite(row)].astype(np.float64)
        p = np.exp(finite - finite.max())
        p /= p.sum()
        assert kl == pytest.approx(np.sum(p * np.log(p / (1.0 / len(p)))), rel=1e-5)
    np.testing.assert_allclose(dist.categorical_kl_uniform(jnp.array([1e4, -1e4, 0.0])), np.log(3.0), rtol=1e-6)
    np.testing.assert_allclose(dist.categorical_kl_uniform(jnp.zeros((2, 3)), axis=0), 0.0, atol=1e-7)


def test_log_prob_of_masked_class_is_minus_inf():
    logits = jnp.array([0.0, -jnp.inf, 1.0])
    assert float(dist.categorical_log_prob(jnp.array([0.0, 1.0, 0.0]), logits)) == -np.inf
    log_q = dist.categorical_log_prob(jnp.array([0.0, 0.0, 1.0]), logits)
    np.testing.assert_allclose(log_q, -np.log1p(np.exp(-1.0)), rtol=1e-6)


def test_masked_log_softmax_normalises_over_the_unmasked_classes():
    x = jnp.array([[0.3, 5.0, -1.0, 2.0]])
    mask = jnp.array([[True, False, True, True]])
    got = np.asarray(dist.masked_log_softmax(x, mask, axis=-1, temperature=0.5))
    want = np.log(_softmax64(np.array([0.3, -1.0, 2.0]) / 0.5))
    np.testing.assert_allclose(got[0, [0, 2, 3]], want, rtol=1e-5, atol=1e-6)
    assert got[0, 1] == 0.0
