"""Variational Deep Embedding (VaDE): Jiang, Zheng, Tan, Tang & Zhou, arXiv 1611.05148.

A VAE whose prior is a mixture of Gaussians: ``c ~ Cat(pi)``, ``z | c ~ N(mu_c,
diag(sigma_c^2))``, ``x | z ~ Bern(sigmoid(f(z)))`` (sec. 3.1, eqs. 1-3). The encoder
``g(x)`` gives a diagonal Gaussian ``q(z|x)``; ``q(c|x)`` is the posterior of the prior
at a sample of ``z`` (the responsibilities gamma_c, eq. 16). The ELBO is eq. 5 with
``L = 1`` sample, its Gaussian terms in closed form.

The networks are those of DEC (``genjax.models.dec.StackedAutoencoder``, d-500-500-2000
and its mirror), laid out so that a pretrained autoencoder's weights are copied in
(``from_autoencoder``): the encoder's hidden layers and its embedding layer ``out`` become
the mean head, the decoder is taken whole, and only the log-variance head is fresh. As
in the paper (sec. 4.1), the prior then starts from a diagonal Gaussian mixture fitted to
the encoder means of the training data (``fit_prior``).

Images are NHWC, flattened for the MLPs; MNIST's grey levels in [0, 1] are used as
Bernoulli means, as the paper does. The math is written for one example and batched
with ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from genjax.distributions import bernoulli_log_prob, categorical_kl, normal_kl, normal_log_prob
from genjax.models.dec import DEC_DIMS
from genjax.nn.mlp import MLP, get_activation
from genjax.nn.module import apply
from genjax.types import Params

Prior = Mapping[str, jax.Array]
"""The mixture prior ``{"logits": [K], "mean": [K, d], "log_var": [K, d]}``; pi = softmax(logits)."""


@struct.dataclass
class ELBOTerms:
    """VaDE's ELBO for one example (arXiv 1611.05148, eq. 5).

    Attributes:
      elbo: ``log_likelihood - kl_z - kl_c``.
      log_likelihood: ``log p(x|z)`` at one sample ``z ~ q(z|x)``.
      kl_z: ``sum_c gamma_c KL(q(z|x) || p(z|c))``, in closed form.
      kl_c: ``KL(gamma || pi) = sum_c gamma_c log(gamma_c / pi_c)``.
    """

    elbo: jax.Array
    log_likelihood: jax.Array
    kl_z: jax.Array
    kl_c: jax.Array


class GaussianEncoder(nn.Module):
    """An MLP ``x -> (mean, log_var)``: hidden layers ``hidden_i``, a mean head ``out`` and
    a log-variance head ``log_var`` on the last hidden layer.

    With the head ``out`` named as ``genjax.nn.mlp.MLP``'s output, the layers
    ``hidden_i`` and ``out`` take an ``MLP``'s parameters unchanged.

    Attributes:
      hidden: hidden widths.
      latent_dim: dimension of z.
      activation: the hidden activation.
    """

    hidden: Sequence[int]
    latent_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        act = get_activation(self.activation)
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"hidden_{i}")(x))
        return nn.Dense(self.latent_dim, name="out")(x), nn.Dense(self.latent_dim, name="log_var")(x)


class MixturePrior(nn.Module):
    """The learnable mixture prior's parameters ``logits [K]``, ``mean [K, d]``, ``log_var [K, d]``.

    Attributes:
      num_clusters: K.
      latent_dim: d.
    """

    num_clusters: int
    latent_dim: int

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        k, d = self.num_clusters, self.latent_dim
        return {
            "logits": self.param("logits", nn.initializers.zeros, (k,)),
            "mean": self.param("mean", nn.initializers.normal(1.0), (k, d)),
            "log_var": self.param("log_var", nn.initializers.zeros, (k, d)),
        }


class VaDE(nn.Module):
    """VaDE's encoder, decoder and mixture prior (arXiv 1611.05148, sec. 3 and 4.1).

    Parameters: ``{"encoder": GaussianEncoder, "decoder": MLP, "prior": MixturePrior}``.

    Attributes:
      data_shape: (height, width, channels) of one image.
      dims: the encoder widths, the last one the latent dimension (d-500-500-2000-10).
      num_clusters: K, the number of mixture components.
      activation: the hidden activation.
    """

    data_shape: tuple[int, int, int] = (28, 28, 1)
    dims: Sequence[int] = DEC_DIMS
    num_clusters: int = 10
    activation: str = "relu"

    def setup(self) -> None:
        dims = tuple(self.dims)
        if len(dims) < 2 or min(dims) <= 0:
            raise ValueError(f"dims: expected positive hidden widths then the latent dimension, got {dims}")
        if self.num_clusters < 1:
            raise ValueError(f"num_clusters: expected a positive int, got {self.num_clusters}")
        self.encoder = GaussianEncoder(hidden=dims[:-1], latent_dim=dims[-1], activation=self.activation)
        self.decoder = MLP(hidden=dims[-2::-1], out_features=int(np.prod(self.data_shape)), activation=self.activation)
        self.prior = MixturePrior(self.num_clusters, dims[-1])

    @property
    def latent_dim(self) -> int:
        """d, the dimension of z."""
        return int(tuple(self.dims)[-1])

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, H, W, C] -> (mean, log_var)`` of ``q(z|x)``, each ``[B, d]``."""
        return self.encoder(x.reshape(x.shape[0], -1))

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [B, d] ->`` Bernoulli logits ``[B, H*W*C]``."""
        return self.decoder(z)

    def prior_params(self) -> dict[str, jax.Array]:
        """The mixture prior (see ``Prior``)."""
        return self.prior()

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, _ = self.encode(x)
        self.prior_params()
        return self.decode(mean)


def prior_of(params: Params) -> Prior:
    """The mixture prior inside a ``VaDE``'s variables."""
    return params["params"]["prior"]


def responsibility_logits(z: jax.Array, prior: Prior) -> jax.Array:
    """``log pi_c + log N(z; mu_c, sigma_c^2)`` for one ``z [d]``, ``[K]`` (eq. 16, unnormalised)."""
    chex.assert_rank(z, 1)
    log_pi = jax.nn.log_softmax(prior["logits"])
    return log_pi + jnp.sum(normal_log_prob(z[None, :], prior["mean"], prior["log_var"]), axis=-1)


def responsibilities(z: jax.Array, prior: Prior) -> jax.Array:
    """``gamma_c = p(c|z) = pi_c N(z; mu_c, sigma_c^2) / sum_c' pi_c' N(z; mu_c', sigma_c'^2)``.

    VaDE's ``q(c|x)``, eq. 16 of arXiv 1611.05148, at one point ``z [d]``.

    Returns:
      ``[K]``, summing to one.
    """
    return jax.nn.softmax(responsibility_logits(z, prior))


def elbo(model: VaDE, params: Params, x: jax.Array, key: jax.Array) -> ELBOTerms:
    """VaDE's ELBO for one image ``x [H, W, C]``, eq. 5 of arXiv 1611.05148 with ``L = 1``.

    ``z = mu + sigma * eps`` (eq. 6), ``gamma = p(c|z)`` (eq. 16), and

    ``L = log p(x|z) - sum_c gamma_c KL(N(mu, sigma^2) || N(mu_c, sigma_c^2)) - KL(gamma || pi)``,

    which is eq. 5 regrouped: the Gaussian terms in closed form (``normal_kl``) and
    ``sum_c gamma_c log(pi_c / gamma_c) = -KL(gamma || pi)``. With one component at
    ``N(0, I)`` it is the SGVB bound of Kingma & Welling (eq. 10).

    Args:
      model: the VaDE module.
      params: its variables.
      x: one image in [0, 1].
      key: the key of the draw of z.
    """
    chex.assert_rank(x, 3)
    mean, log_var = apply(model, params, VaDE.encode, x[None])
    mean, log_var = mean[0], log_var[0]
    eps = jax.random.normal(key, (1,) + mean.shape, dtype=mean.dtype)[0]
    z = mean + jnp.exp(0.5 * log_var) * eps
    logits = apply(model, params, VaDE.decode, z[None])[0]
    log_lik = jnp.sum(bernoulli_log_prob(x.reshape(-1), logits))
    prior = prior_of(params)
    gamma_logits = responsibility_logits(z, prior)
    gamma = jax.nn.softmax(gamma_logits)
    kl_z = jnp.sum(gamma * jnp.sum(normal_kl(mean[None], log_var[None], prior["mean"], prior["log_var"]), axis=-1))
    kl_c = categorical_kl(gamma_logits, prior["logits"])
    return ELBOTerms(elbo=log_lik - kl_z - kl_c, log_likelihood=log_lik, kl_z=kl_z, kl_c=kl_c)


def assign(model: VaDE, params: Params, x: jax.Array) -> jax.Array:
    """Hard clusters ``argmax_c gamma_c`` at ``z = mu(x)``, ``[B]`` int32 (sec. 3.2 of the paper)."""
    chex.assert_rank(x, 4)
    mean, _ = apply(model, params, VaDE.encode, x)
    logits = jax.vmap(responsibility_logits, in_axes=(0, None))(mean, prior_of(params))
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def sample_cluster(model: VaDE, params: Params, key: jax.Array, clusters: jax.Array) -> jax.Array:
    """Images ``E[x|z]`` with ``z ~ N(mu_c, sigma_c^2)`` for each chosen ``c`` (eq. 2 then 3).

    Args:
      model: the VaDE module.
      params: its variables.
      key: the key of the draws.
      clusters: ``[N]`` int component indices.

    Returns:
      ``[N, H, W, C]`` in [0, 1].
    """
    chex.assert_rank(clusters, 1)
    prior = prior_of(params)
    eps = jax.random.normal(key, (clusters.shape[0], model.latent_dim))
    z = prior["mean"][clusters] + jnp.exp(0.5 * prior["log_var"][clusters]) * eps
    logits = apply(model, params, VaDE.decode, z)
    return jax.nn.sigmoid(logits).reshape((clusters.shape[0],) + tuple(model.data_shape))


def from_autoencoder(params: Params, ae_params: Params) -> Params:
    """``params`` with a ``StackedAutoencoder``'s encoder and decoder copied in.

    The autoencoder's ``encoder/hidden_i`` and ``encoder/out`` (the embedding) become
    VaDE's hidden layers and mean head, its decoder VaDE's decoder; the log-variance head
    and the prior keep their values in ``params``.

    Raises:
      ValueError: naming ``model.pretrained`` when a copied layer's shape differs.
    """
    ours, theirs = params["params"], ae_params["params"]
    encoder = dict(ours["encoder"])
    for name, layer in theirs["encoder"].items():
        encoder[name] = layer
    new = {**ours, "encoder": encoder, "decoder": theirs["decoder"]}
    want = jax.tree.map(jnp.shape, ours)
    got = jax.tree.map(jnp.shape, new)
    if want != got:
        raise ValueError(f"model.pretrained: the autoencoder's layers do not fit VaDE's: expected shapes {want}, got {got}")
    return {**params, "params": new}


def fit_prior(z: np.ndarray, num_clusters: int, seed: int, n_init: int = 1) -> dict[str, np.ndarray]:
    """The prior from a diagonal Gaussian mixture fitted to encoder means (paper sec. 4.1).

    scikit-learn's ``GaussianMixture(covariance_type="diag")``.

    Args:
      z: ``[N, d]`` encoder means of the training data.
      num_clusters: K.
      seed: its random state.
      n_init: restarts of EM.

    Returns:
      ``{"logits": log pi [K], "mean": [K, d], "log_var": [K, d]}`` as float32.
    """
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=num_clusters, covariance_type="diag", random_state=seed, n_init=n_init)
    gmm.fit(np.asarray(z, np.float64))
    return {
        "logits": np.log(np.maximum(gmm.weights_, 1e-12)).astype(np.float32),
        "mean": gmm.means_.astype(np.float32),
        "log_var": np.log(gmm.covariances_).astype(np.float32),
    }


def with_prior(params: Params, prior: Mapping[str, np.ndarray]) -> Params:
    """``params`` with the mixture prior replaced by ``prior`` (shapes checked)."""
    old = prior_of(params)
    for name in ("logits", "mean", "log_var"):
        if tuple(np.shape(prior[name])) != tuple(old[name].shape):
            raise ValueError(f"prior: expected {name} of shape {tuple(old[name].shape)}, got {tuple(np.shape(prior[name]))}")
    new_prior = {name: jnp.asarray(prior[name], jnp.float32) for name in ("logits", "mean", "log_var")}
    return {**params, "params": {**params["params"], "prior": new_prior}}


def with_log_var_init(params: Params, log_var: ArrayLike) -> Params:
    """``params`` with the log-variance head set to the constant ``log_var`` (kernel 0, bias ``log_var``).

    After the mixture is fitted, its component variances are the scale of the clusters
    in latent space (about 1e-3 for a small autoencoder's embeddings); a fresh head's
    ``log sigma^2 ~ 0`` would make ``KL(q(z|x) || p(z|c))`` thousands of nats and its
    gradient would first pull every mean together. Starting ``q(z|x)`` at the mixture's
    mean variance keeps the pretrained clusters apart.

    Args:
      params: VaDE's variables.
      log_var: ``[d]`` (or a scalar) initial ``log sigma^2``.
    """
    head = params["params"]["encoder"]["log_var"]
    bias = jnp.broadcast_to(jnp.asarray(log_var, head["bias"].dtype), head["bias"].shape)
    encoder = {**params["params"]["encoder"], "log_var": {"kernel": jnp.zeros_like(head["kernel"]), "bias": bias}}
    return {**params, "params": {**params["params"], "encoder": encoder}}
