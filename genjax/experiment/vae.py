"""The VAE family (``model.family = "vae"``): Kingma & Welling, arXiv 1312.6114."""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import viz
from genjax.experiment.base import Experiment, batched_mean, binarizer, check_common, eval_images, image_shape, loss_update, train_batcher
from genjax.experiment.config import base_config
from genjax.models import vae as vae_lib
from genjax.types import Params


def default_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the VAE family's fields at Kingma & Welling's MNIST setup.

    ``model``: an MLP encoder and decoder (``hidden`` units, ``activation``) around a
    ``latent_dim``-dimensional Gaussian latent with a Bernoulli likelihood (Appendix C),
    ``num_samples`` samples of the ELBO per example, or the IWAE bound of Burda et al.
    (arXiv 1509.00519) with ``iwae_samples > 0``. ``eval``: the importance-sampled
    log-likelihood with ``is_samples`` samples in chunks of ``is_chunk`` (0: skipped).
    """
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "vae"
    c.model.architecture = "mlp"
    c.model.latent_dim = 50
    c.model.hidden = (200, 200)
    c.model.likelihood = "bernoulli"
    c.model.activation = "tanh"
    c.model.num_samples = 1
    c.model.iwae_samples = 0
    c.train.num_steps = 6000
    c.train.checkpoint_every = 2000
    c.eval.is_samples = 500
    c.eval.is_chunk = 500
    return c


def build(config: ml_collections.ConfigDict) -> Experiment:
    """The VAE family (``model.family = "vae"``); see ``genjax.models.vae``.

    ``Experiment.model`` is the ``genjax.models.vae.VAE`` module.
    """
    m = config.model
    shape = image_shape(config)
    check_common(config)
    ev = config.eval
    if ev.is_samples < 0 or (ev.is_samples and (ev.is_chunk <= 0 or ev.is_samples % ev.is_chunk)):
        raise ValueError(f"eval.is_samples: expected 0 or a positive multiple of eval.is_chunk={ev.is_chunk}, got {ev.is_samples}")
    model = vae_lib.VAE(
        latent_dim=m.latent_dim,
        data_shape=shape,
        hidden=tuple(m.hidden),
        architecture=m.architecture,
        likelihood=m.likelihood,
        activation=m.activation,
    )
    batcher = train_batcher(config, transform=binarizer(config.data.binarize))
    eval_cache: dict[str, np.ndarray] = {}

    def test_images() -> np.ndarray:
        if "images" not in eval_cache:
            eval_cache["images"] = eval_images(config)
        return eval_cache["images"]

    elbo_fn = jax.jit(jax.vmap(lambda p, x, k: vae_lib.elbo(model, p, x, k, 1).elbo, in_axes=(None, 0, 0)))
    is_fn = jax.jit(
        jax.vmap(
            lambda p, x, k: vae_lib.log_marginal_likelihood(model, p, x, k, config.eval.is_samples, config.eval.is_chunk),
            in_axes=(None, 0, 0),
        )
    )

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        images = test_images()
        bs = config.eval.batch_size
        split = config.eval.split
        elbo, elbo_se = batched_mean(lambda x, k: elbo_fn(params, x, k), images, key, bs, "eval elbo")
        out = {f"{split}_elbo": elbo, f"{split}_elbo_stderr": elbo_se, "num_examples": int(images.shape[0])}
        if full and config.eval.is_samples:
            ll, ll_se = batched_mean(lambda x, k: is_fn(params, x, k), images, jax.random.fold_in(key, 1), bs, f"eval IS k={config.eval.is_samples}")
            out.update({f"{split}_nll_is{config.eval.is_samples}": -ll, f"{split}_nll_stderr": ll_se, "is_samples": int(config.eval.is_samples)})
        return out

    draw = jax.jit(functools.partial(vae_lib.sample, model), static_argnums=2)

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return np.asarray(draw(params, key, num))

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        images = test_images()[:32]
        recon = np.asarray(vae_lib.reconstruct(model, params, jnp.asarray(images)))
        pairs = np.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:])
        paths = [viz.save_image_grid(workdir / "reconstructions.png", pairs, ncols=16)]
        if m.latent_dim == 2:
            manifold = np.asarray(vae_lib.latent_manifold(model, params, 20))
            paths.append(viz.save_image_grid(workdir / "manifold.png", manifold, ncols=20))
        return paths

    loss = vae_lib.make_loss(model, num_samples=m.num_samples, iwae_samples=m.iwae_samples)
    update = loss_update(config, loss, steps_per_epoch=batcher.steps_per_epoch)
    return Experiment(
        config=config,
        model=model,
        init=lambda key: model.init(key, jnp.zeros((1,) + shape, jnp.float32)),
        update=update,
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )
