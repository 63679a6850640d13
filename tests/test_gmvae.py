"""The categorical GMVAE (Dilokthanakul et al. 2016, arXiv 1611.02648): its bound and the family end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import experiment
from genjax.distributions import normal_log_prob
from genjax.experiment.clustering_vae import grid_clusters
from genjax.models import gmvae

CONFIG = "experiments/cluster_mnist/config.py"
SHAPE = (4, 4, 1)
MODEL = gmvae.GMVAE(data_shape=SHAPE, hidden=(8,), latent_dim=2, num_clusters=3)


@pytest.fixture(scope="module")
def params():
    return MODEL.init(jax.random.key(0), jnp.zeros((1,) + SHAPE))


def _monte_carlo_elbo(params, x, key):
    """One draw of log p(x, y, z) - log q(y, z | x) with y ~ q(y|x), z ~ q(z|x, y): no closed forms."""
    ky, kz = jax.random.split(key)
    logits = MODEL.apply(params, x[None], method=gmvae.GMVAE.classify)[0]
    y = jax.random.categorical(ky, logits)
    one_hot = jax.nn.one_hot(y, 3)[None]
    mean, log_var = MODEL.apply(params, x[None], one_hot, method=gmvae.GMVAE.encode)
    z = mean[0] + jnp.exp(0.5 * log_var[0]) * jax.random.normal(kz, (2,))
    prior_mean, prior_log_var = MODEL.apply(params, method=gmvae.GMVAE.prior_params)
    out = MODEL.apply(params, z[None], method=gmvae.GMVAE.decode)[0]
    p = jax.nn.sigmoid(out)
    flat = x.reshape(-1)
    log_px = jnp.sum(flat * jnp.log(p) + (1 - flat) * jnp.log1p(-p))
    log_pz = jnp.sum(normal_log_prob(z, prior_mean[y], prior_log_var[y]))
    log_qz = jnp.sum(normal_log_prob(z, mean[0], log_var[0]))
    log_qy = jax.nn.log_softmax(logits)[y]
    return log_px + log_pz + jnp.log(1.0 / 3.0) - log_qz - log_qy


def test_marginal_elbo_matches_monte_carlo(params):
    x = jax.random.uniform(jax.random.key(1), SHAPE)
    n = 20_000
    exact = jax.jit(jax.vmap(lambda k: gmvae.elbo(MODEL, params, x, k).elbo))(jax.random.split(jax.random.key(2), n))
    mc = jax.jit(jax.vmap(lambda k: _monte_carlo_elbo(params, x, k)))(jax.random.split(jax.random.key(3), n))
    se = np.sqrt(np.var(exact) / n + np.var(mc) / n)
    assert abs(float(jnp.mean(exact) - jnp.mean(mc))) < 4 * se, (float(jnp.mean(exact)), float(jnp.mean(mc)), se)
    # The sum over y lowers the variance below that of sampling y.
    assert np.var(exact) < np.var(mc)


def test_terms_add_up_and_kl_y_is_the_uniform_kl(params):
    x = jax.random.uniform(jax.random.key(1), SHAPE)
    t = gmvae.elbo(MODEL, params, x, jax.random.key(4))
    np.testing.assert_allclose(t.elbo, t.log_likelihood - t.kl_z - t.kl_y, rtol=1e-6)
    q = jax.nn.softmax(MODEL.apply(params, x[None], method=gmvae.GMVAE.classify)[0])
    np.testing.assert_allclose(t.kl_y, jnp.sum(q * jnp.log(q * 3)), rtol=1e-5)


@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_relaxed_estimators_run_with_finite_gradients(params, estimator):
    x = jax.random.uniform(jax.random.key(1), (4,) + SHAPE)
    keys = jax.random.split(jax.random.key(5), 4)

    def loss(p):
        return -jnp.mean(jax.vmap(lambda xi, ki: gmvae.elbo(MODEL, p, xi, ki, estimator=estimator, temperature=0.5).elbo)(x, keys))

    value, grad = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
    assert float(jnp.abs(grad["params"]["classifier"]["out"]["kernel"]).sum()) > 0
    with pytest.raises(ValueError, match="model.estimator"):
        gmvae.check_estimator("reinforce", 1.0)


def test_assign_and_per_cluster_samples(params):
    x = jax.random.uniform(jax.random.key(1), (5,) + SHAPE)
    assert gmvae.assign(MODEL, params, x).shape == (5,)
    images = gmvae.sample_cluster(MODEL, params, jax.random.key(6), jnp.asarray(grid_clusters(9, 3)))
    assert images.shape == (9,) + SHAPE
    np.testing.assert_array_equal(grid_clusters(9, 2), [0, 0, 0, 1, 1, 1, 0, 0, 0])


@pytest.mark.parametrize("k", [1, 5000])
def test_bad_num_clusters_is_named(k):
    config = experiment.load_config(f"{CONFIG}:gmvae_tiny", [f"model.num_clusters={k}"])
    with pytest.raises(ValueError, match="model.num_clusters"):
        experiment.build(config)


def test_gmvae_tiny_clusters_the_synthetic_data(tmp_path):
    metrics = experiment.train(experiment.load_config(f"{CONFIG}:gmvae_tiny"), tmp_path / "gmvae")
    assert metrics["acc"] >= 0.99 and metrics["test_acc"] >= 0.99, metrics
    assert np.isfinite(metrics["test_elbo"])
