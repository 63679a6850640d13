"""The Gaussian-mixture VAE (GMVAE) of Dilokthanakul et al., arXiv 1611.02648, in its
common categorical form.

The generative model is ``y ~ Uniform(K)``, ``z | y ~ N(mu_y, diag(sigma_y^2))`` with
learned per-cluster means and variances, ``x | z ~ Bern(sigmoid(f(z)))``; the inference
model is ``q(y|x) q(z|x, y)``: a categorical ``q(y|x)`` and a diagonal Gaussian
``q(z|x, y)`` conditioned on the one-hot ``y``. This is not Dilokthanakul et al.'s own
inference network: they keep a second latent ``w`` that generates the cluster means and
infer ``y`` through the exact posterior ``p(y|z, w)`` (sec. 3); the form here, with an
amortised classifier ``q(y|x)`` (as in Kingma et al.'s M2, arXiv 1406.5298, and Shu's
"GMVAE" variant), is the one most implementations train under that name. Its bound is

``L = E_{q(y|x)} [ E_{q(z|x,y)} log p(x|z) - KL(q(z|x,y) || p(z|y)) ] - KL(q(y|x) || U(K))``.

``elbo`` computes it with the sum over ``y`` done exactly (``estimator="marginal"``: K
decoder passes, one sample of z per component), or with ``y`` drawn by the Gumbel-softmax
relaxation (``"gumbel_softmax"``, Jang et al., arXiv 1611.01144, eq. 1) or its
straight-through one-hot form (``"straight_through"``), one decoder pass, as
``genjax.estimators`` provides; a relaxed ``y`` mixes the per-cluster prior parameters
linearly. Clustering is ``argmax_y q(y|x)``.

Images are NHWC, flattened for the MLPs. The math is written for one example and batched
with ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from genjax.distributions import bernoulli_log_prob, categorical_kl_uniform, normal_kl
from genjax.estimators import gumbel_softmax, straight_through_categorical
from genjax.nn.mlp import MLP, get_activation
from genjax.nn.module import apply
from genjax.types import Params

ESTIMATORS = ("marginal", "gumbel_softmax", "straight_through")


@struct.dataclass
class ELBOTerms:
    """The GMVAE bound for one example (see the module docstring).

    Attributes:
      elbo: ``log_likelihood - kl_z - kl_y``.
      log_likelihood: ``E_q(y|x) log p(x|z)``, one sample of z per (summed or drawn) y.
      kl_z: ``E_q(y|x) KL(q(z|x,y) || p(z|y))``, in closed form for each y.
      kl_y: ``KL(q(y|x) || Uniform(K))``, in closed form.
    """

    elbo: jax.Array
    log_likelihood: jax.Array
    kl_z: jax.Array
    kl_y: jax.Array


class ClusterPrior(nn.Module):
    """The per-cluster Gaussians ``p(z|y)``: ``mean [K, d]`` and ``log_var [K, d]``, learned.

    Attributes:
      num_clusters: K.
      latent_dim: d.
    """

    num_clusters: int
    latent_dim: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        k, d = self.num_clusters, self.latent_dim
        return self.param("mean", nn.initializers.normal(1.0), (k, d)), self.param("log_var", nn.initializers.zeros, (k, d))


class GMVAE(nn.Module):
    """The GMVAE's networks: ``q(y|x)``, ``q(z|x,y)``, ``p(z|y)`` and ``p(x|z)``.

    Parameters: ``{"classifier": MLP, "encoder": MLP, "prior": ClusterPrior, "decoder": MLP}``.

    Attributes:
      data_shape: (height, width, channels) of one image.
      hidden: hidden widths of the classifier and the encoder (the decoder mirrors them).
      latent_dim: d.
      num_clusters: K.
      activation: the hidden activation.
    """

    data_shape: tuple[int, int, int] = (28, 28, 1)
    hidden: Sequence[int] = (500, 500)
    latent_dim: int = 10
    num_clusters: int = 10
    activation: str = "relu"

    def setup(self) -> None:
        hidden = tuple(self.hidden)
        if any(w <= 0 for w in hidden) or self.latent_dim <= 0:
            raise ValueError(f"hidden/latent_dim: expected positive ints, got {hidden} and {self.latent_dim}")
        if self.num_clusters < 2:
            raise ValueError(f"model.num_clusters: expected an int >= 2, got {self.num_clusters}")
        self.classifier = MLP(hidden, self.num_clusters, self.activation)
        self.encoder = MLP(hidden, 2 * self.latent_dim, self.activation)
        self.prior = ClusterPrior(self.num_clusters, self.latent_dim)
        self.decoder = MLP(hidden[::-1], int(np.prod(self.data_shape)), self.activation)

    def classify(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, C] ->`` the logits of ``q(y|x)``, ``[B, K]``."""
        return self.classifier(x.reshape(x.shape[0], -1))

    def encode(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(x [B, H, W, C], y [B, K]) ->`` the mean and log-variance of ``q(z|x,y)``, ``[B, d]`` each."""
        h = self.encoder(jnp.concatenate([x.reshape(x.shape[0], -1), y], axis=-1))
        mean, log_var = jnp.split(h, 2, axis=-1)
        return mean, log_var

    def prior_params(self) -> tuple[jax.Array, jax.Array]:
        """``p(z|y)``'s ``(mean [K, d], log_var [K, d])``."""
        return self.prior()

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [B, d] ->`` Bernoulli logits ``[B, H*W*C]``."""
        return self.decoder(z)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.one_hot(jnp.argmax(self.classify(x), axis=-1), self.num_clusters)
        mean, _ = self.encode(x, y)
        self.prior_params()
        return self.decode(mean)


def check_estimator(estimator: str, temperature: float) -> None:
    """Raises ``ValueError`` naming ``model.estimator`` or ``model.temperature``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"model.estimator: expected one of {ESTIMATORS}, got {estimator!r}")
    if not temperature > 0:
        raise ValueError(f"model.temperature: expected a float > 0, got {temperature}")


def elbo(
    model: GMVAE,
    params: Params,
    x: jax.Array,
    key: jax.Array,
    *,
    estimator: str = "marginal",
    temperature: float | jax.Array = 1.0,
) -> ELBOTerms:
    """The GMVAE bound for one image ``x [H, W, C]`` (the categorical form of the module docstring).

    Args:
      model: the GMVAE module.
      params: its variables.
      x: one image in [0, 1].
      key: the key of the draws of y (relaxed estimators) and z.
      estimator: ``"marginal"`` (the exact sum over y), ``"gumbel_softmax"`` (a relaxed
        y, Jang et al. eq. 1) or ``"straight_through"`` (a one-hot y with the relaxed
        gradient).
      temperature: tau of the relaxed estimators.
    """
    chex.assert_rank(x, 3)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {estimator!r}")
    k = model.num_clusters
    y_key, z_key = jax.random.split(key)
    logits = apply(model, params, GMVAE.classify, x[None])[0]
    prior_mean, prior_log_var = apply(model, params, GMVAE.prior_params)
    kl_y = categorical_kl_uniform(logits)
    flat = x.reshape(-1)
    if estimator == "marginal":
        ys = jnp.eye(k, dtype=x.dtype)
        probs = jax.nn.softmax(logits)
    elif estimator == "gumbel_softmax":
        ys = gumbel_softmax(y_key, logits, temperature=temperature)[None]
        probs = jnp.ones((1,), x.dtype)
    else:
        ys = straight_through_categorical(y_key, logits, temperature=temperature)[None]
        probs = jnp.ones((1,), x.dtype)
    xs = jnp.broadcast_to(x[None], (ys.shape[0],) + x.shape)
    mean, log_var = apply(model, params, GMVAE.encode, xs, ys)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(z_key, mean.shape, mean.dtype)
    out = apply(model, params, GMVAE.decode, z)
    log_lik = jnp.sum(bernoulli_log_prob(flat[None], out), axis=-1)
    kl_z = jnp.sum(normal_kl(mean, log_var, ys @ prior_mean, ys @ prior_log_var), axis=-1)
    log_lik, kl_z = jnp.sum(probs * log_lik), jnp.sum(probs * kl_z)
    return ELBOTerms(elbo=log_lik - kl_z - kl_y, log_likelihood=log_lik, kl_z=kl_z, kl_y=kl_y)


def assign(model: GMVAE, params: Params, x: jax.Array) -> jax.Array:
    """Hard clusters ``argmax_y q(y|x)`` of images ``x [B, H, W, C]``, ``[B]`` int32."""
    chex.assert_rank(x, 4)
    return jnp.argmax(apply(model, params, GMVAE.classify, x), axis=-1).astype(jnp.int32)


def embed(model: GMVAE, params: Params, x: jax.Array) -> jax.Array:
    """The mean of ``q(z|x, y)`` at the assigned ``y``, ``[B, d]``: the latent-space figure's points."""
    y = jax.nn.one_hot(assign(model, params, x), model.num_clusters, dtype=x.dtype)
    return apply(model, params, GMVAE.encode, x, y)[0]


def sample_cluster(model: GMVAE, params: Params, key: jax.Array, clusters: jax.Array) -> jax.Array:
    """Images ``E[x|z]`` with ``z ~ p(z|y)`` for each chosen ``y``, ``[N, H, W, C]`` in [0, 1].

    Args:
      model: the GMVAE module.
      params: its variables.
      key: the key of the draws of z.
      clusters: ``[N]`` int cluster indices.
    """
    chex.assert_rank(clusters, 1)
    mean, log_var = apply(model, params, GMVAE.prior_params)
    z = mean[clusters] + jnp.exp(0.5 * log_var[clusters]) * jax.random.normal(key, (clusters.shape[0], model.latent_dim))
    logits = apply(model, params, GMVAE.decode, z)
    return jax.nn.sigmoid(logits).reshape((clusters.shape[0],) + tuple(model.data_shape))


def classifier_features(model: GMVAE, params: Params, x: jax.Array) -> jax.Array:
    """The last hidden layer of the classifier ``q(y|x)`` for images ``x [B, H, W, C]``, ``[B, hidden[-1]]``."""
    layers = params["params"]["classifier"]
    act = get_activation(model.activation)
    h = x.reshape(x.shape[0], -1)
    for i in range(len(tuple(model.hidden))):
        layer = layers[f"hidden_{i}"]
        h = act(h @ layer["kernel"] + layer["bias"][None])
    return h


def with_centroid_classifier(params: Params, centroids: ArrayLike, scale: float) -> Params:
    """``params`` with ``q(y|x)``'s output layer set to a nearest-centroid rule.

    ``logits_k = scale (h . c_k - |c_k|^2 / 2)``, which orders the clusters as
    ``-scale |h - c_k|^2 / 2`` does: each ``y`` starts as one k-means cluster of the
    classifier's random features ``h``. No term of the bound pushes two data clusters
    that share a y apart (``KL(q(y|x) || U)`` is the same for any confident q), and while
    the decoder is random the y whose path happens to fit best draws examples from the
    others; so a random start, or a soft one, ends with merged clusters. A sharp start
    (``scale`` about 10 over the mean squared distance to the centroids) keeps q(y|x)
    near one-hot, where the softmax's gradient is small, until the decoder has learnt
    every cluster.

    Args:
      params: GMVAE's variables.
      centroids: ``[K, hidden[-1]]`` k-means centroids of the classifier features.
      scale: the inverse temperature of the initial logits.
    """
    c = jnp.asarray(centroids, jnp.float32)
    out = {"kernel": scale * c.T, "bias": -scale * 0.5 * jnp.sum(jnp.square(c), axis=-1)}
    old = params["params"]["classifier"]["out"]
    if out["kernel"].shape != old["kernel"].shape:
        raise ValueError(f"centroids: expected shape {old['kernel'].shape[::-1]}, got {c.shape}")
    classifier = {**params["params"]["classifier"], "out": out}
    return {**params, "params": {**params["params"], "classifier": classifier}}
