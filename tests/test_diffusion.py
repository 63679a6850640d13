"""The DDPM process (genjax.models.diffusion) and its likelihood bound against closed
forms and an independent Monte-Carlo computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.distributions import discretized_gaussian_log_likelihood
from genjax.metrics import bits_per_dim, vlb_terms
from genjax.models import diffusion as D


def _schedule(kind="linear", T=1000, **kw):
    return D.make_schedule(D.beta_schedule(kind, T, **kw))


def test_beta_schedules_match_their_definitions():
    lin = D.beta_schedule("linear", 1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(lin), (0.02 - 1e-4) / 999, rtol=1e-9)
    quad = D.beta_schedule("quadratic", 10, beta_start=1e-4, beta_end=0.04)
    np.testing.assert_allclose(np.sqrt(quad), np.linspace(0.01, 0.2, 10), rtol=1e-12)
    cos = D.beta_schedule("cosine", 100)
    f = np.cos((np.arange(101) / 100 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(np.cumprod(1 - cos)[:-1], (f / f[0])[1:-1], rtol=1e-9)
    assert cos[-1] == 0.999  # the final beta is clipped (arXiv 2102.09672 sec. 3.2)
    s = D.make_schedule(lin)
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - lin), rtol=1e-5)
    assert s.alphas_cumprod.dtype == jnp.float32 and s.num_timesteps == 1000


@pytest.mark.parametrize(
    "betas, match",
    [(np.array([0.1, 1.0]), "betas"), (np.array([0.0, 0.1]), "betas"), (np.array([[0.1]]), "betas"), (np.array([0.1, -0.2]), "betas")],
)
def test_bad_betas_raise(betas, match):
    with pytest.raises(ValueError, match=match):
        D.make_schedule(betas)


def test_bad_schedule_arguments_raise():
    with pytest.raises(ValueError, match="schedule"):
        D.beta_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="num_timesteps"):
        D.beta_schedule("linear", 0)
    with pytest.raises(ValueError, match=r"t: expected timesteps in \[0, 10\)"):
        D.check_timesteps(np.array([0, 10]), 10)
    with pytest.raises(ValueError, match=r"t: expected timesteps in \[0, 10\)"):
        D.check_timesteps(-1, 10)
    D.check_timesteps(np.array([0, 9]), 10)
    s = _schedule(T=10)
    for kw, match in [
        ({"parameterization": "score"}, "parameterization"),
        ({"variance": "free"}, "variance"),
        ({"loss": "l1"}, "loss"),
        ({"vlb_weight": -1.0}, "vlb_weight"),
    ]:
        with pytest.raises(ValueError, match=match):
            D.Diffusion(schedule=s, **kw)


def test_q_sample_moments(key):
    s = _schedule()
    x0 = jnp.array([0.7, -0.3, 0.0])
    t = 300
    noise = jax.random.normal(key, (200_000, 3))
    xt = np.asarray(jax.vmap(lambda n: D.q_sample(s, x0, t, n))(noise), np.float64)
    abar = float(np.prod(1 - D.beta_schedule("linear", 1000)[: t + 1]))
    se = math.sqrt((1 - abar) / 200_000)
    np.testing.assert_allclose(xt.mean(0), math.sqrt(abar) * np.asarray(x0), atol=5 * se)
    np.testing.assert_allclose(xt.var(0), 1 - abar, rtol=0.02)


@pytest.mark.parametrize("t", [1, 5, 500, 999])
def test_posterior_mean_and_variance_by_gaussian_conditioning(t):
    """q(x_{t-1} | x_t, x_0) from the joint of (x_{t-1}, x_t) given x_0, in float64."""
    betas = D.beta_schedule("linear", 1000)
    s = D.make_schedule(betas)
    abar = np.cumprod(1 - betas)
    x0, xt = np.array([0.4, -0.9]), np.array([1.3, 0.2])
    m_prev, v_prev = math.sqrt(abar[t - 1]) * x0, 1 - abar[t - 1]
    m_t, v_t = math.sqrt(abar[t]) * x0, 1 - abar[t]
    cov = math.sqrt(1 - betas[t]) * v_prev
    mean = m_prev + cov / v_t * (xt - m_t)
    var = v_prev - cov**2 / v_t
    got_mean, got_log_var = D.q_posterior(s, jnp.asarray(x0, jnp.float32), jnp.asarray(xt, jnp.float32), t)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(math.exp(float(got_log_var)), var, rtol=1e-4)


@pytest.mark.parametrize("param", D.PARAMETERIZATIONS)
def test_parameterizations_are_consistent(param, key):
    s = _schedule()
    x0 = jax.random.uniform(key, (4, 4, 1), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.fold_in(key, 1), x0.shape)
    for t in (0, 250, 999):
        xt = D.q_sample(s, x0, t, noise)
        eps, x0_hat = D.prediction_to_eps_x0(s, param, D.regression_target(s, param, x0, noise, t), xt, t)
        np.testing.assert_allclose(eps, noise, atol=2e-3 if t == 0 else 1e-4)
        np.testing.assert_allclose(x0_hat, x0, atol=2e-4 if t == 999 and param == "eps" else 1e-4, rtol=2e-2 if t == 999 and param == "eps" else 0)


def test_to_model_scale_reads_both_8bit_encodings():
    levels = np.arange(256)
    a = D.to_model_scale((levels / 256.0).astype(np.float32))
    b = D.to_model_scale((levels / 255.0).astype(np.float32))
    np.testing.assert_allclose(a, levels / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(b, levels / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(D.from_model_scale(b), levels / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        D.to_model_scale(np.array([1.5]))


# A fixed non-linear "network" for the bound tests: its output depends on x and t.
def _toy_apply(channels_out):
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, channels_out)) * 0.7, jnp.float32)

    def apply(params, x, t, dropout_key):
        del params, dropout_key
        h = jnp.tanh(x @ w + 0.05 * t[:, None, None, None].astype(jnp.float32))
        return h

    return apply


@pytest.mark.parametrize("variance", ["small", "large", "learned"])
def test_vlb_equals_monte_carlo_log_ratio(variance, key):
    """L_vlb from the analytic terms equals E_q[log q(x_{1:T}|x_0) - log p(x_{0:T})]."""
    T = 4
    betas = np.array([0.05, 0.2, 0.4, 0.6])
    diffusion = D.Diffusion(schedule=D.make_schedule(betas), variance=variance, loss="hybrid" if variance == "learned" else "simple")
    apply = _toy_apply(6 if variance == "learned" else 3)
    x0 = jnp.asarray(np.array([[[[-1.0, 3 / 127.5 - 1, 200 / 127.5 - 1]]]]), jnp.float32)  # [1, 1, 1, 3]
    n = 40_000
    keys = jax.random.split(key, n)
    terms, prior = jax.jit(lambda k: vlb_terms(diffusion, apply, None, jnp.broadcast_to(x0, (n,) + x0.shape[1:]), k, t_chunk=3))(keys)
    analytic = np.asarray(terms.sum(1) + prior, np.float64)
    assert terms.shape == (n, T)

    def log_normal(x, mean, log_var):
        return jnp.sum(-0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * jnp.exp(-log_var)))

    def log_ratio(k):
        x = x0[0]
        path = []
        log_q = 0.0
        for t in range(T):
            k, sub = jax.random.split(k)
            nxt = jnp.sqrt(1 - betas[t]) * x + jnp.sqrt(betas[t]) * jax.random.normal(sub, x.shape)
            log_q += log_normal(nxt, jnp.sqrt(1 - betas[t]) * x, jnp.log(betas[t]) * jnp.ones_like(x))
            path.append(nxt)
            x = nxt
        log_p = log_normal(path[-1], jnp.zeros_like(x), jnp.zeros_like(x))
        for t in range(T - 1, -1, -1):
            out = apply(None, path[t][None], jnp.array([t]), None)[0]
            step = D.reverse_step(diffusion, out, path[t], t, clip_x0=False)
            log_var = step.log_variance * jnp.ones_like(x)
            if t > 0:
                log_p += log_normal(path[t - 1], step.mean, log_var)
            else:
                log_p += jnp.sum(discretized_gaussian_log_likelihood(x0[0], step.mean, 0.5 * log_var))
        return log_q - log_p

    mc = np.asarray(jax.jit(jax.vmap(log_ratio))(jax.random.split(jax.random.fold_in(key, 7), n)), np.float64)
    se = math.sqrt(analytic.var() / n + mc.var() / n)
    assert abs(analytic.mean() - mc.mean()) < 4 * se, (analytic.mean(), mc.mean(), se)
    assert se < 0.02 * abs(mc.mean())  # the comparison is sharp enough to catch a wrong term


def test_bits_per_dim_does_not_depend_on_chunking(key):
    diffusion = D.Diffusion(schedule=_schedule(T=10, beta_end=0.3))
    apply = _toy_apply(3)
    images = np.asarray(jax.random.randint(key, (5, 2, 2, 3), 0, 256) / 127.5 - 1, np.float32)
    a = bits_per_dim(diffusion, apply, None, images, key, batch_size=2, t_chunk=3)
    b = bits_per_dim(diffusion, apply, None, images, key, batch_size=5, t_chunk=10)
    assert a.mean == pytest.approx(b.mean, rel=1e-5)
    assert a.terms_bpd.shape == (10,) and a.num_examples == 5
    total = a.terms_bpd.sum() + a.prior_bpd
    assert total == pytest.approx(a.mean, rel=1e-5)
    with pytest.raises(ValueError, match=r"images: expected model scale \[-1, 1\]"):
        bits_per_dim(diffusion, apply, None, (images + 1) * 127.5, key)


def test_simple_loss_is_the_eps_regression_of_algorithm_1(key):
    """L_simple for one example with the t and noise that example_loss draws."""
    s = _schedule(T=50)
    diffusion = D.Diffusion(schedule=s)
    apply = _toy_apply(3)
    x0 = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 2, 3)), jnp.float32)
    terms = D.example_loss(diffusion, apply, None, x0, key)
    t_key, noise_key, _ = jax.random.split(key, 3)
    t = jax.random.randint(t_key, (), 0, 50)
    noise = jax.random.normal(noise_key, x0.shape)
    abar = float(np.cumprod(1 - D.beta_schedule("linear", 50))[int(t)])
    xt = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise
    expected = jnp.mean((noise - apply(None, xt[None], t[None], None)[0]) ** 2)
    assert float(terms.loss) == pytest.approx(float(expected), rel=1e-4)
    assert float(terms.mse) == float(terms.loss)
    loss_fn = D.make_loss(D.Diffusion(schedule=s, loss="hybrid"), apply)
    loss, metrics = loss_fn(None, {"image": x0[None]}, key[None])
    assert float(loss) == pytest.approx(float(metrics["mse"]) + 0.001 * float(metrics["vlb_bpd"]) * math.log(2), rel=1e-5)


def test_out_of_range_timesteps_and_untrainable_variance_are_refused():
    s = _schedule(T=10)
    x = jnp.zeros((2, 2, 1))
    with pytest.raises(ValueError, match=r"t: expected timesteps in \[0, 10\)"):
        D.q_sample(s, x, 10, x)
    with pytest.raises(ValueError, match=r"t: expected timesteps in \[0, 10\)"):
        D.q_posterior(s, x, x, -1)
    with pytest.raises(ValueError, match="loss: a learned variance is trained only by L_vlb"):
        D.Diffusion(schedule=s, variance="learned", loss="simple")


def test_evaluation_loss_runs_the_network_without_dropout(key):
    """example_loss(train=False) hands the network no dropout key."""
    seen = []

    def apply(params, x, t, dropout_key):
        seen.append(dropout_key is None)
        return jnp.zeros_like(x)

    diffusion = D.Diffusion(schedule=_schedule(T=10))
    D.example_loss(diffusion, apply, None, jnp.zeros((2, 2, 1)), key, train=False)
    D.example_loss(diffusion, apply, None, jnp.zeros((2, 2, 1)), key)
    assert seen == [True, False]
