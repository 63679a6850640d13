"""The VAE's math against closed forms and numerical quadrature."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.distributions import normal_log_prob
from genjax.models import vae as V


@pytest.fixture(scope="module")
def small_vae():
    """A VAE with a 1D latent on 2x2 binary images, so log p(x) is computable by quadrature."""
    model = V.VAE(latent_dim=1, data_shape=(2, 2, 1), hidden=(8,), activation="tanh")
    params = model.init(jax.random.key(3), jnp.zeros((1, 2, 2, 1)))
    x = jnp.array([1.0, 0.0, 1.0, 1.0]).reshape(2, 2, 1)
    return model, params, x


def _quadrature(model, params, x, integrand: str) -> float:
    z = jnp.linspace(-10.0, 10.0, 40_001)[:, None]
    dz = float(z[1, 0] - z[0, 0])
    out = model.apply(params, z, method=V.VAE.decode)
    log_px_z = jax.vmap(lambda o: V.decoder_log_prob("bernoulli", x, o))(out)
    log_pz = jnp.sum(normal_log_prob(z, 0.0, 0.0), axis=-1)
    if integrand == "log_px":
        return float(jax.nn.logsumexp(log_px_z + log_pz) + math.log(dz))
    mean, logvar = model.apply(params, x, method=V.VAE.encode)
    q = jnp.exp(jnp.sum(normal_log_prob(z, mean[None], logvar[None]), axis=-1))
    return float(jnp.sum(q * log_px_z) * dz)


def test_importance_sampling_matches_quadrature(small_vae, key):
    model, params, x = small_vae
    exact = _quadrature(model, params, x, "log_px")
    estimate = float(V.log_marginal_likelihood(model, params, x, key, num_samples=5000, chunk_size=500))
    assert abs(estimate - exact) < 0.02, (estimate, exact)
    elbo = float(jnp.mean(jax.vmap(lambda k: V.elbo(model, params, x, k).elbo)(jax.random.split(key, 4000))))
    assert elbo < exact - 0.1, "the ELBO must sit strictly below log p(x) for this non-Gaussian posterior"


def test_iwae_bound_increases_with_k_towards_log_px(small_vae, key):
    model, params, x = small_vae
    exact = _quadrature(model, params, x, "log_px")
    keys = jax.random.split(key, 500)

    def mean_bound(k: int) -> float:
        return float(jnp.mean(jax.vmap(lambda kk: V.iwae_bound(model, params, x, kk, k))(keys)))

    means = [mean_bound(k) for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2] <= exact + 0.01


def test_sgvb_reconstruction_term_is_unbiased(small_vae, key):
    model, params, x = small_vae
    exact = _quadrature(model, params, x, "expected_log_lik")
    terms = V.elbo(model, params, x, key, num_samples=100_000)
    assert abs(float(terms.log_likelihood) - exact) < 0.01
    np.testing.assert_allclose(float(terms.elbo), float(terms.log_likelihood - terms.kl), rtol=1e-6)


def test_chunked_estimate_does_not_depend_on_chunk_size_beyond_noise(small_vae, key):
    model, params, x = small_vae
    a = float(V.log_marginal_likelihood(model, params, x, key, 4000, 4000))
    b = float(V.log_marginal_likelihood(model, params, x, key, 4000, 250))
    assert abs(a - b) < 0.02


def test_log_marginal_likelihood_rejects_bad_chunking(small_vae, key):
    model, params, x = small_vae
    with pytest.raises(ValueError, match="num_samples"):
        V.log_marginal_likelihood(model, params, x, key, 1000, 300)


@pytest.mark.parametrize(("architecture", "likelihood"), [("mlp", "bernoulli"), ("conv", "gaussian")])
def test_loss_shapes_and_gradients_are_finite(architecture, likelihood, key):
    model = V.VAE(latent_dim=3, data_shape=(8, 8, 1), hidden=(4,) if architecture == "conv" else (16,), architecture=architecture, likelihood=likelihood)
    x = jax.random.uniform(key, (5, 8, 8, 1))
    params = model.init(key, x[:1])
    loss_fn = V.make_loss(model, num_samples=2)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, {"image": x}, jax.random.split(key, 5))
    assert loss.shape == () and set(metrics) == {"elbo", "recon", "kl"}
    np.testing.assert_allclose(float(loss), float(metrics["recon"] + metrics["kl"]), rtol=1e-5)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert V.sample(model, params, key, 7).shape == (7, 8, 8, 1)
    assert V.reconstruct(model, params, x).shape == x.shape


def test_gaussian_decoder_log_prob_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    x = rng.random((2, 2, 1)).astype(np.float32)
    out = rng.normal(size=(2, 2, 2)).astype(np.float32)
    mean = 1 / (1 + np.exp(-out[..., :1].astype(np.float64)))
    std = np.exp(0.5 * out[..., 1:].astype(np.float64))
    want = stats.norm.logpdf(x, mean, std).sum()
    np.testing.assert_allclose(float(V.decoder_log_prob("gaussian", jnp.asarray(x), jnp.asarray(out))), want, rtol=1e-5)


def test_iwae_loss_is_the_negative_importance_weighted_bound(small_vae, key):
    model, params, x = small_vae
    batch = jnp.stack([x, 1.0 - x])
    keys = jax.random.split(key, 2)
    loss, metrics = V.make_loss(model, iwae_samples=7)(params, {"image": batch}, keys)
    iwae_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    want = -np.mean([float(V.iwae_bound(model, params, xi, ki, 7)) for xi, ki in zip(batch, iwae_keys)])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert float(loss) < -float(metrics["elbo"]) + 1.0


@pytest.mark.parametrize("keys_of", ["one key", "too few", "raw uint32 keys"])
@pytest.mark.parametrize("jit", [False, True])
def test_loss_rejects_keys_that_are_not_one_typed_key_per_example(keys_of, jit, key):
    model = V.VAE(latent_dim=2, data_shape=(4, 4, 1), hidden=(8,))
    x = jnp.zeros((3, 4, 4, 1))
    params = model.init(key, x[:1])
    keys = {"one key": key, "too few": jax.random.split(key, 2), "raw uint32 keys": jax.random.key_data(jax.random.split(key, 3))}[keys_of]
    loss = jax.jit(V.make_loss(model)) if jit else V.make_loss(model)
    with pytest.raises(ValueError, match=re.escape("keys: expected shape [batch] = (3,) of typed PRNG keys")):
        loss(params, {"image": x}, keys)


def test_bernoulli_likelihood_rejects_data_outside_the_unit_interval(small_vae, key):
    model, params, x = small_vae
    message = "expected values in [0, 1] (binarised or grey levels), got max 255.0"
    with pytest.raises(ValueError, match=re.escape('batch["image"]: ' + message)):
        V.make_loss(model)(params, {"image": 255.0 * x[None]}, jax.random.split(key, 1))
    with pytest.raises(ValueError, match=re.escape("x: " + message)):
        V.elbo(model, params, 255.0 * x, key)
    with pytest.raises(ValueError, match=re.escape("x: " + message)):
        V.iwae_bound(model, params, 255.0 * x, key, 3)
    with pytest.raises(ValueError, match=re.escape("x: expected values in [0, 1] (binarised or grey levels), got min -1.0")):
        V.log_marginal_likelihood(model, params, -x, key, 10, 10)


def test_manifold_covers_a_2d_grid(key):
    model = V.VAE(latent_dim=2, data_shape=(4, 4, 1), hidden=(8,))
    params = model.init(key, jnp.zeros((1, 4, 4, 1)))
    grid = V.latent_manifold(model, params, 5)
    assert grid.shape == (25, 4, 4, 1)
    assert bool(jnp.all((grid >= 0) & (grid <= 1)))
    with pytest.raises(ValueError, match="latent_dim"):
        V.latent_manifold(V.VAE(latent_dim=3, data_shape=(4, 4, 1)), params, 5)
