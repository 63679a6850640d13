"""Variational deep clustering families: ``vade`` (VaDE) and ``gmvae`` (GMVAE).

Both train on ``data.train_split`` like every clustering family and are scored by
``cluster_evaluation`` (ACC, NMI, ARI on the whole set and on the test split), with the
mean ELBO of the test split added (``test_elbo``, nats per image). ``sample`` draws
``num`` images as a grid whose row ``c`` comes from cluster ``c`` (rows cycle through the
clusters). The math lives in ``genjax.models.vade`` and ``genjax.models.gmvae``.
"""

from __future__ import annotations

import functools
import math
import pathlib
from collections.abc import Callable
from typing import Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import keys
from genjax._checks import check_example_keys
from genjax.experiment.base import Experiment, image_shape, loss_update, train_batcher
from genjax.experiment.clustering import (
    ClusterData,
    apply_in_batches,
    check_cluster_config,
    cluster_base_config,
    cluster_data,
    cluster_evaluation,
    cluster_figures,
    load_pretrained_autoencoder,
)
from genjax.models import dec as dec_lib
from genjax.models import gmvae as gmvae_lib
from genjax.models import vade as vade_lib
from genjax.types import Params


class Terms(Protocol):
    """What both families' per-example ELBO returns (a frozen dataclass with more terms)."""

    @property
    def elbo(self) -> jax.Array: ...

    @property
    def log_likelihood(self) -> jax.Array: ...


LossFn = Callable[[Params, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def grid_clusters(num: int, num_clusters: int) -> np.ndarray:
    """The cluster of each of ``num`` images in a ``ceil(sqrt(num))``-column grid: row ``r``
    shows cluster ``r mod K`` (``genjax.viz.image_grid``'s layout)."""
    ncols = math.ceil(math.sqrt(num))
    return ((np.arange(num) // ncols) % num_clusters).astype(np.int32)


def _mean_loss(terms_fn: Callable[[Params, jax.Array, jax.Array], Terms], names: tuple[str, ...]) -> LossFn:
    """``-mean ELBO`` over a batch of a per-example ``terms_fn(params, x, key)``, with its terms as metrics."""

    def loss(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = batch["image"]
        check_example_keys(keys, x.shape[0])
        terms = jax.vmap(lambda xi, ki: terms_fn(params, xi, ki))(x, keys)
        metrics = {"elbo": jnp.mean(terms.elbo), "recon": -jnp.mean(terms.log_likelihood)}
        metrics.update({name: jnp.mean(getattr(terms, name)) for name in names})
        return -metrics["elbo"], metrics

    return loss


def _experiment(
    config: ml_collections.ConfigDict,
    data: ClusterData,
    model: object,
    init: Callable[[jax.Array], Params],
    elbo_fn: Callable[[Params, jax.Array, jax.Array], Terms],
    kl_names: tuple[str, ...],
    assign_fn: Callable[[Params, jax.Array], jax.Array],
    embed_fn: Callable[[Params, jax.Array], jax.Array],
    sample_fn: Callable[[Params, jax.Array, jax.Array], jax.Array],
) -> Experiment:
    """The ``Experiment`` both families share, from their per-example ELBO and maps."""
    batcher = train_batcher(config)
    bs = config.eval.batch_size
    assign_jit, embed_jit = jax.jit(assign_fn), jax.jit(embed_fn)
    test_elbo_fn = jax.jit(jax.vmap(lambda p, x, k: elbo_fn(p, x, k).elbo, in_axes=(None, 0, 0)))
    draw = jax.jit(sample_fn)

    def assign(params: Params, images: np.ndarray) -> np.ndarray:
        return apply_in_batches(functools.partial(assign_jit, params), images, bs, "assign")

    def embed(params: Params, images: np.ndarray) -> np.ndarray:
        return apply_in_batches(functools.partial(embed_jit, params), images, bs, "embed")

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        out = cluster_evaluation(config, data, functools.partial(assign, params))
        test = data.test_images[: config.eval.num_examples or None]
        keys = jax.random.split(key, len(test))
        elbos = [np.asarray(test_elbo_fn(params, jnp.asarray(test[i : i + bs]), keys[i : i + bs])) for i in range(0, len(test), bs)]
        out["test_elbo"] = float(np.mean(np.concatenate(elbos)))
        return out

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return np.asarray(draw(params, key, jnp.asarray(grid_clusters(num, config.model.num_clusters))))

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        return cluster_figures(config, data, workdir, functools.partial(assign, params), functools.partial(embed, params))

    return Experiment(
        config=config,
        model=model,
        init=init,
        update=loss_update(config, _mean_loss(elbo_fn, kl_names), steps_per_epoch=batcher.steps_per_epoch),
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )


def vade_config() -> ml_collections.ConfigDict:
    """The ``vade`` family: VaDE (Jiang et al. 2017, arXiv 1611.05148) from a pretrained autoencoder.

    ``model.pretrained``: the ``cluster_ae`` workdir whose d-500-500-2000-10 autoencoder
    initialises the networks (the latent dimension and widths are the autoencoder's);
    ``model.gmm_n_init``: EM restarts of the Gaussian mixture fitted to its embeddings.
    As the paper (sec. 4.1): Adam at 0.002, batch 100; the paper decays the rate by 0.9
    every 10 epochs, here a cosine decay over ``train.num_steps``.
    """
    c = cluster_base_config("vade")
    c.model.pretrained = ""
    c.model.gmm_n_init = 1
    c.train.batch_size = 100
    c.train.learning_rate = 0.002
    c.train.num_steps = 70_000
    c.train.schedule = "cosine"
    c.train.decay_steps = 70_000
    c.train.log_every = 700
    return c


def build_vade(config: ml_collections.ConfigDict) -> Experiment:
    """The ``vade`` family; ``Experiment.model`` is the ``genjax.models.vade.VaDE`` module.

    The parameters start from the pretrained autoencoder (``vade.from_autoencoder``) and
    a diagonal Gaussian mixture fitted to its embeddings of all training data
    (``vade.fit_prior``); the log-variance head starts at the mixture's mean variance
    (``vade.with_log_var_init``).
    """
    m = config.model
    data = cluster_data(config)
    check_cluster_config(config, len(data.images))
    if m.gmm_n_init < 1:
        raise ValueError(f"model.gmm_n_init: expected a positive int, got {m.gmm_n_init}")
    ae, ae_params = load_pretrained_autoencoder(config)
    if ae.reconstruction != "bernoulli":
        raise ValueError(
            "model.pretrained: VaDE reads the decoder's outputs as Bernoulli logits; expected a cluster_ae run with "
            f"model.reconstruction='bernoulli' (the ae_bce preset), got {ae.reconstruction!r}"
        )
    ae_params = jax.device_get(ae_params)
    shape = image_shape(config)
    model = vade_lib.VaDE(data_shape=shape, dims=tuple(ae.dims), num_clusters=m.num_clusters, activation=ae.activation)
    encode = jax.jit(lambda p, x: ae.apply(p, x, method=ae.encode))
    z0 = apply_in_batches(functools.partial(encode, ae_params), data.images, config.eval.batch_size, "embed")
    prior0 = vade_lib.fit_prior(z0, m.num_clusters, config.seed, m.gmm_n_init)
    log_var0 = np.log(np.exp(prior0["logits"]) @ np.exp(prior0["log_var"]))

    def init(key: jax.Array) -> Params:
        params = model.init(key, jnp.zeros((1,) + shape, jnp.float32))
        params = vade_lib.with_prior(vade_lib.from_autoencoder(params, ae_params), prior0)
        return vade_lib.with_log_var_init(params, log_var0)

    return _experiment(
        config,
        data,
        model,
        init,
        functools.partial(vade_lib.elbo, model),
        ("kl_z", "kl_c"),
        functools.partial(vade_lib.assign, model),
        lambda p, x: model.apply(p, x, method=vade_lib.VaDE.encode)[0],
        functools.partial(vade_lib.sample_cluster, model),
    )


def gmvae_config() -> ml_collections.ConfigDict:
    """The ``gmvae`` family: the categorical GMVAE (after Dilokthanakul et al. 2016, arXiv 1611.02648; see ``genjax.models.gmvae``), from scratch.

    ``model.hidden``: widths of the classifier ``q(y|x)`` and encoder ``q(z|x,y)`` MLPs
    (the decoder mirrors them); ``model.latent_dim``; ``model.activation``;
    ``model.estimator``: ``"marginal"`` (the exact sum over y), ``"gumbel_softmax"`` or
    ``"straight_through"`` at ``model.temperature``; ``model.kmeans_n_init``: restarts of
    the k-means that starts each ``y`` as one cluster of the classifier's initial
    features (``gmvae.with_centroid_classifier``; 0: the random start, which merges
    clusters that no term of the bound separates again). Adam at 0.001, batch 100.
    """
    c = cluster_base_config("gmvae")
    c.model.hidden = (500, 500)
    c.model.latent_dim = 10
    c.model.activation = "relu"
    c.model.estimator = "marginal"
    c.model.temperature = 1.0
    c.model.kmeans_n_init = 10
    c.train.batch_size = 100
    c.train.num_steps = 70_000
    c.train.log_every = 700
    return c


def build_gmvae(config: ml_collections.ConfigDict) -> Experiment:
    """The ``gmvae`` family; ``Experiment.model`` is the ``genjax.models.gmvae.GMVAE`` module."""
    m = config.model
    data = cluster_data(config)
    check_cluster_config(config, len(data.images))
    gmvae_lib.check_estimator(m.estimator, m.temperature)
    hidden = tuple(m.hidden)
    if not hidden or min(hidden) <= 0 or m.latent_dim <= 0:
        raise ValueError(f"model.hidden/model.latent_dim: expected positive ints, got {hidden} and {m.latent_dim}")
    shape = image_shape(config)
    model = gmvae_lib.GMVAE(data_shape=shape, hidden=hidden, latent_dim=m.latent_dim, num_clusters=m.num_clusters, activation=m.activation)
    if m.kmeans_n_init < 0:
        raise ValueError(f"model.kmeans_n_init: expected 0 (a random start) or a positive int, got {m.kmeans_n_init}")

    def init(key: jax.Array) -> Params:
        params = model.init(key, jnp.zeros((1,) + shape, jnp.float32))
        if not m.kmeans_n_init:
            return params
        features = jax.jit(functools.partial(gmvae_lib.classifier_features, model))
        h = apply_in_batches(functools.partial(features, params), data.images, config.eval.batch_size, "features")
        centroids, assigned = dec_lib.kmeans(h, m.num_clusters, config.seed, m.kmeans_n_init)
        # 10 / spread: q(y|x) starts near one-hot (see gmvae.with_centroid_classifier).
        spread = float(np.mean(np.sum(np.square(h - centroids[assigned]), axis=-1)))
        return gmvae_lib.with_centroid_classifier(params, centroids, 10.0 / max(spread, 1e-6))

    start: Callable[[jax.Array], Params] = init
    if m.kmeans_n_init:
        # k-means is not traceable: the data-dependent start is computed once, from the run's init key.
        params0 = init(keys.run_keys(config.seed).init)
        start = lambda key: params0
    return _experiment(
        config,
        data,
        model,
        start,
        functools.partial(gmvae_lib.elbo, model, estimator=m.estimator, temperature=m.temperature),
        ("kl_z", "kl_y"),
        functools.partial(gmvae_lib.assign, model),
        functools.partial(gmvae_lib.embed, model),
        functools.partial(gmvae_lib.sample_cluster, model),
    )


__all__ = ["build_gmvae", "build_vade", "gmvae_config", "grid_clusters", "vade_config"]
