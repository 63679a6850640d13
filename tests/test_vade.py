"""VaDE (Jiang et al. 2017, arXiv 1611.05148): the responsibilities, the ELBO, the family end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from genjax import experiment
from genjax.models import vade
from genjax.models import vae as vae_lib

CONFIG = "experiments/cluster_mnist/config.py"
SHAPE = (4, 4, 1)


def _prior(key, k, d):
    a, b, c = jax.random.split(key, 3)
    return {"logits": jax.random.normal(a, (k,)), "mean": 2.0 * jax.random.normal(b, (k, d)), "log_var": 0.5 * jax.random.normal(c, (k, d))}


def test_responsibilities_are_bayes_rule():
    prior = _prior(jax.random.key(0), 4, 3)
    z = jax.random.normal(jax.random.key(1), (5, 3)) * 2.0
    gamma = np.asarray(jax.vmap(vade.responsibilities, in_axes=(0, None))(z, prior))
    np.testing.assert_allclose(gamma.sum(-1), 1.0, rtol=1e-6)
    p = {k: np.asarray(v, np.float64) for k, v in prior.items()}
    pi = np.exp(p["logits"]) / np.exp(p["logits"]).sum()
    for i, zi in enumerate(np.asarray(z, np.float64)):
        joint = pi * np.prod(norm.pdf(zi[None], p["mean"], np.exp(0.5 * p["log_var"])), axis=-1)
        np.testing.assert_allclose(gamma[i], joint / joint.sum(), rtol=1e-4, atol=1e-7)


def test_one_component_elbo_is_the_vae_elbo():
    vae = vae_lib.VAE(latent_dim=3, data_shape=SHAPE, hidden=(8,), activation="relu")
    vp = vae.init(jax.random.key(0), jnp.zeros((1,) + SHAPE))
    model = vade.VaDE(data_shape=SHAPE, dims=(8, 3), num_clusters=1)
    params = model.init(jax.random.key(1), jnp.zeros((1,) + SHAPE))
    enc = vp["params"]["encoder"]
    out = enc["out"]
    ours = {
        "encoder": {
            "hidden_0": enc["hidden_0"],
            "out": {"kernel": out["kernel"][:, :3], "bias": out["bias"][:3]},
            "log_var": {"kernel": out["kernel"][:, 3:], "bias": out["bias"][3:]},
        },
        "decoder": vp["params"]["decoder"],
        "prior": {"logits": jnp.zeros((1,)), "mean": jnp.zeros((1, 3)), "log_var": jnp.zeros((1, 3))},
    }
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, params["params"])
    params = {"params": ours}
    x = jax.random.uniform(jax.random.key(2), (6,) + SHAPE)
    keys = jax.random.split(jax.random.key(3), 6)
    theirs = jax.jit(jax.vmap(lambda xi, ki: vae_lib.elbo(vae, vp, xi, ki, 1)))(x, keys)
    mine = jax.jit(jax.vmap(lambda xi, ki: vade.elbo(model, params, xi, ki)))(x, keys)
    np.testing.assert_allclose(mine.elbo, theirs.elbo, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mine.log_likelihood, theirs.log_likelihood, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mine.kl_z, theirs.kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mine.kl_c, 0.0, atol=1e-6)


def test_elbo_gradient_is_finite_and_assign_samples_have_their_shapes():
    model = vade.VaDE(data_shape=SHAPE, dims=(8, 3), num_clusters=4)
    params = model.init(jax.random.key(0), jnp.zeros((1,) + SHAPE))
    x = jax.random.uniform(jax.random.key(1), (2,) + SHAPE)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(jax.vmap(lambda xi, ki: vade.elbo(model, p, xi, ki).elbo)(x, jax.random.split(jax.random.key(2), 2)))))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
    assert vade.assign(model, params, x).shape == (2,)
    images = vade.sample_cluster(model, params, jax.random.key(3), jnp.array([0, 1, 3]))
    assert images.shape == (3,) + SHAPE and float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_elbo_with_several_components_is_eq_5_term_by_term():
    model = vade.VaDE(data_shape=SHAPE, dims=(8, 3), num_clusters=4)
    params = model.init(jax.random.key(0), jnp.zeros((1,) + SHAPE))
    params = vade.with_prior(params, {k: np.asarray(v) for k, v in _prior(jax.random.key(5), 4, 3).items()})
    x = jax.random.uniform(jax.random.key(1), SHAPE)
    key = jax.random.key(2)
    got = vade.elbo(model, params, x, key)
    # Eq. 5 of arXiv 1611.05148 with L = 1, written out from the encoder's and decoder's outputs.
    mean, log_var = (np.asarray(a[0], np.float64) for a in model.apply(params, x[None], method=vade.VaDE.encode))
    z = mean + np.exp(0.5 * log_var) * np.asarray(jax.random.normal(key, (1, 3))[0], np.float64)
    logits = np.asarray(model.apply(params, jnp.asarray(z[None], jnp.float32), method=vade.VaDE.decode)[0], np.float64)
    xs = np.asarray(x, np.float64).reshape(-1)
    log_px = np.sum(xs * -np.logaddexp(0, -logits) + (1 - xs) * -np.logaddexp(0, logits))
    p = {k: np.asarray(v, np.float64) for k, v in vade.prior_of(params).items()}
    pi = np.exp(p["logits"]) / np.exp(p["logits"]).sum()
    var_c = np.exp(p["log_var"])
    joint = pi * np.prod(norm.pdf(z[None], p["mean"], np.sqrt(var_c)), axis=-1)
    gamma = joint / joint.sum()
    term_z = -0.5 * np.sum(gamma[:, None] * (p["log_var"] + np.exp(log_var)[None] / var_c + (mean[None] - p["mean"]) ** 2 / var_c))
    eq5 = log_px + term_z + np.sum(gamma * np.log(pi / gamma)) + 0.5 * np.sum(1 + log_var)
    np.testing.assert_allclose(float(got.elbo), eq5, rtol=1e-4)
    np.testing.assert_allclose(float(got.log_likelihood), log_px, rtol=1e-4)


def test_vade_refuses_an_autoencoder_pretrained_with_squared_error(tmp_path):
    ae = tmp_path / "ae"
    experiment.train(experiment.load_config(f"{CONFIG}:ae_tiny", ["train.num_steps=1"]), ae)
    with pytest.raises(ValueError, match="model.pretrained: VaDE reads the decoder's outputs as Bernoulli logits"):
        experiment.build(experiment.load_config(f"{CONFIG}:vade_tiny", [f"model.pretrained={ae}"]))


@pytest.mark.parametrize("k", [1, 5000])
def test_bad_num_clusters_is_named(k):
    config = experiment.load_config(f"{CONFIG}:vade_tiny", [f"model.num_clusters={k}"])
    with pytest.raises(ValueError, match="model.num_clusters"):
        experiment.build(config)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ae_tiny")
    experiment.train(experiment.load_config(f"{CONFIG}:ae_bce_tiny"), workdir)
    return workdir


def test_vade_tiny_clusters_the_synthetic_data(ae_run, tmp_path):
    config = experiment.load_config(f"{CONFIG}:vade_tiny", [f"model.pretrained={ae_run}"])
    metrics = experiment.train(config, tmp_path / "vade")
    assert metrics["acc"] >= 0.99 and metrics["test_acc"] >= 0.99, metrics
    assert np.isfinite(metrics["test_elbo"])
    assert (tmp_path / "vade" / "samples.png").exists() and (tmp_path / "vade" / "latent.png").exists()
