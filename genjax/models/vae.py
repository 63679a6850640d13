"""The variational autoencoder of Kingma & Welling, "Auto-Encoding Variational Bayes".

arXiv:1312.6114. The encoder q(z|x) is a diagonal Gaussian (paper appendix C.2), the
decoder p(x|z) is Bernoulli for binary data (C.1) or a diagonal Gaussian for continuous
data (C.2), and the prior is N(0, I). The SGVB estimator uses the analytic KL term of
eq. (10); the importance-weighted bound and the importance-sampling estimate of
log p(x) follow Burda et al., "Importance Weighted Autoencoders", arXiv:1509.00519, eq. (8).

The math is written for one example and batched with ``jax.vmap``. Images are NHWC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from genjax._checks import check_example_keys, check_unit_interval
from genjax.distributions import bernoulli_log_prob, normal_log_prob, standard_normal_kl
from genjax.nn.conv import ConvDecoder, ConvEncoder, flatten_image
from genjax.nn.mlp import MLP
from genjax.nn.module import apply
from genjax.types import Params

LossFn = Callable[[Params, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


@struct.dataclass
class ELBOTerms:
    """The terms of the SGVB lower bound for one example (paper eq. 10).

    Attributes:
      elbo: the lower bound L(theta, phi; x) = -kl + log_likelihood.
      log_likelihood: the Monte Carlo estimate of E_q[log p(x|z)], averaged over L samples.
      kl: D_KL(q(z|x) || p(z)), computed analytically.
    """

    elbo: jax.Array
    log_likelihood: jax.Array
    kl: jax.Array


class VAE(nn.Module):
    """Gaussian encoder and Bernoulli or Gaussian decoder (paper appendix C).

    Attributes:
      latent_dim: dimension of z.
      data_shape: (height, width, channels) of one image.
      hidden: hidden widths of the MLP encoder (the decoder mirrors them), or the
        channels of the strided convolutions for the conv architecture.
      architecture: ``"mlp"`` or ``"conv"``.
      likelihood: ``"bernoulli"`` (decoder outputs logits) or ``"gaussian"`` (decoder
        outputs a mean in (0, 1) through a sigmoid and a log-variance).
      activation: hidden activation name.
    """

    latent_dim: int
    data_shape: tuple[int, int, int] = (28, 28, 1)
    hidden: Sequence[int] = (500,)
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    activation: str = "tanh"

    def setup(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.latent_dim <= 0:
            raise ValueError(f"latent_dim: expected a positive int, got {self.latent_dim}")
        if any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in self.hidden):
            raise ValueError(f"hidden: expected positive ints, got {tuple(self.hidden)}")
        height, width, channels = self.data_shape
        out_channels = channels if self.likelihood == "bernoulli" else 2 * channels
        self.encoder: MLP | ConvEncoder
        self.decoder: MLP | ConvDecoder
        if self.architecture == "mlp":
            self.encoder = MLP(tuple(self.hidden), 2 * self.latent_dim, self.activation)
            self.decoder = MLP(tuple(reversed(self.hidden)), height * width * out_channels, self.activation)
        else:
            self.encoder = ConvEncoder(tuple(self.hidden), 2 * self.latent_dim, self.activation)
            self.decoder = ConvDecoder((height, width, out_channels), tuple(reversed(self.hidden)), self.activation)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns the mean and log-variance of q(z|x) for images ``x`` [..., H, W, C]."""
        h = self.encoder(flatten_image(x) if self.architecture == "mlp" else x)
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, logvar

    def decode(self, z: jax.Array) -> jax.Array:
        """Returns the decoder's raw output [..., H, W, C'] for latents ``z`` [..., latent_dim].

        For the Bernoulli likelihood C' = C holds logits; for the Gaussian one C' = 2C
        holds the pre-sigmoid mean and the log-variance.
        """
        height, width, _ = self.data_shape
        out = self.decoder(z)
        if self.architecture == "mlp":
            out = out.reshape(z.shape[:-1] + (height, width, -1))
        return out

    def __call__(self, x: jax.Array) -> jax.Array:
        mean, _ = self.encode(x)
        return self.decode(mean)


def decoder_log_prob(likelihood: str, x: jax.Array, out: jax.Array) -> jax.Array:
    """log p(x|z) for one image ``x`` [H, W, C] given the decoder output ``out``.

    Args:
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      x: the image.
      out: the decoder output for one latent (see ``VAE.decode``).
    """
    if likelihood == "bernoulli":
        return jnp.sum(bernoulli_log_prob(x, out))
    pre_mean, logvar = jnp.split(out, 2, axis=-1)
    return jnp.sum(normal_log_prob(x, jax.nn.sigmoid(pre_mean), logvar))


def check_data(model: VAE, x: jax.Array, name: str = "x") -> None:
    """Raises ValueError if the Bernoulli likelihood gets values outside [0, 1].

    Only concrete values can be checked: under ``jit`` or ``vmap`` ``x`` is traced and
    the check is skipped, so the public functions check their inputs before tracing.
    """
    if model.likelihood == "bernoulli":
        check_unit_interval(x, name)


def decoder_mean(likelihood: str, out: jax.Array) -> jax.Array:
    """E[x|z] in [0, 1] from the decoder output: sigmoid of logits or of the mean."""
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(out)
    return jax.nn.sigmoid(jnp.split(out, 2, axis=-1)[0])


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array, num: int) -> jax.Array:
    """Draws ``num`` samples z = mean + sigma * eps, eps ~ N(0, I) (paper eq. 4 and sec. 2.4)."""
    eps = jax.random.normal(key, (num,) + mean.shape, dtype=mean.dtype)
    return mean[None] + jnp.exp(0.5 * logvar)[None] * eps


def elbo(model: VAE, params: Params, x: jax.Array, key: jax.Array, num_samples: int = 1) -> ELBOTerms:
    """The SGVB estimator of the lower bound for one image (paper eq. 10).

    Args:
      model: the VAE module.
      params: its parameters.
      x: one image [H, W, C].
      key: PRNG key for the L noise draws.
      num_samples: L, the number of samples of z.

    Returns:
      The ELBO and its two terms, each a scalar.
    """
    chex.assert_rank(x, 3)
    check_data(model, x)
    mean, logvar = apply(model, params, VAE.encode, x)
    z = reparameterize(key, mean, logvar, num_samples)
    out = apply(model, params, VAE.decode, z)
    log_lik = jnp.mean(jax.vmap(lambda o: decoder_log_prob(model.likelihood, x, o))(out))
    kl = jnp.sum(standard_normal_kl(mean, logvar), axis=-1)
    return ELBOTerms(elbo=log_lik - kl, log_likelihood=log_lik, kl=kl)


def log_importance_weights(model: VAE, params: Params, x: jax.Array, key: jax.Array, num: int) -> jax.Array:
    """log w_i = log p(x, z_i) - log q(z_i|x) for ``num`` samples z_i ~ q(z|x).

    Args:
      model: the VAE module.
      params: its parameters.
      x: one image [H, W, C].
      key: PRNG key.
      num: number of importance samples.

    Returns:
      The log-weights, shape [num].
    """
    check_data(model, x)
    mean, logvar = apply(model, params, VAE.encode, x)
    z = reparameterize(key, mean, logvar, num)
    out = apply(model, params, VAE.decode, z)
    log_px_z = jax.vmap(lambda o: decoder_log_prob(model.likelihood, x, o))(out)
    log_pz = jnp.sum(normal_log_prob(z, 0.0, 0.0), axis=-1)
    log_qz = jnp.sum(normal_log_prob(z, mean[None], logvar[None]), axis=-1)
    return log_px_z + log_pz - log_qz


def iwae_bound(model: VAE, params: Params, x: jax.Array, key: jax.Array, num_samples: int) -> jax.Array:
    """The importance-weighted bound log (1/k) sum_i w_i for one image (Burda et al. eq. 8)."""
    log_w = log_importance_weights(model, params, x, key, num_samples)
    return jax.nn.logsumexp(log_w) - math.log(num_samples)


def log_marginal_likelihood(
    model: VAE,
    params: Params,
    x: jax.Array,
    key: jax.Array,
    num_samples: int = 5000,
    chunk_size: int = 500,
) -> jax.Array:
    """Importance-sampling estimate of log p(x) with q(z|x) as the proposal.

    Kingma & Welling appendix D estimate the marginal likelihood by sampling; like
    Burda et al. (arXiv:1509.00519, sec. 5) we use the encoder as the proposal, so the
    estimate is the k-sample bound, which tends to log p(x) as k grows. The k samples
    are drawn ``chunk_size`` at a time inside ``lax.scan`` with a running log-sum-exp,
    so memory does not grow with k.

    Args:
      model: the VAE module.
      params: its parameters.
      x: one image [H, W, C].
      key: PRNG key.
      num_samples: k; must be a positive multiple of ``chunk_size``.
      chunk_size: samples evaluated at once.

    Returns:
      The scalar estimate of log p(x), in nats.
    """
    if chunk_size <= 0 or num_samples <= 0 or num_samples % chunk_size:
        raise ValueError(f"num_samples: expected a positive multiple of chunk_size={chunk_size}, got {num_samples}")
    check_data(model, x)
    num_chunks = num_samples // chunk_size

    def body(running: jax.Array, chunk_key: jax.Array) -> tuple[jax.Array, None]:
        log_w = log_importance_weights(model, params, x, chunk_key, chunk_size)
        return jnp.logaddexp(running, jax.nn.logsumexp(log_w)), None

    total, _ = jax.lax.scan(body, jnp.array(-jnp.inf, jnp.float32), jax.random.split(key, num_chunks))
    return total - math.log(num_samples)


def make_loss(model: VAE, num_samples: int = 1, iwae_samples: int = 0) -> LossFn:
    """Builds the family's training loss ``loss(params, batch, keys) -> (loss, metrics)``.

    The loss is the negative SGVB bound averaged over the batch (paper eq. 8 with M
    examples and L samples each), or the negative IWAE bound when ``iwae_samples > 0``.

    Args:
      model: the VAE module.
      num_samples: L, samples of z per example for the SGVB estimator.
      iwae_samples: if positive, train on the k-sample importance-weighted bound.

    Returns:
      A pure loss function taking parameters, a batch ``{"image": [B, H, W, C]}`` and
      per-example keys [B]; metrics hold ``elbo``, ``recon`` (-E log p(x|z)) and ``kl``.
      It raises ValueError unless ``keys`` holds B typed PRNG keys, shape [B], and, for
      the Bernoulli likelihood, if a concrete ``batch["image"]`` leaves [0, 1] (a traced
      one, under ``jit``, cannot be checked).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples}")
    if iwae_samples < 0:
        raise ValueError(f"iwae_samples: expected 0 (the ELBO) or a positive int, got {iwae_samples}")

    def loss(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = batch["image"]
        chex.assert_rank(x, 4)
        check_example_keys(keys, x.shape[0])
        check_data(model, x, 'batch["image"]')
        terms = jax.vmap(lambda xi, ki: elbo(model, params, xi, ki, num_samples))(x, keys)
        metrics = {
            "elbo": jnp.mean(terms.elbo),
            "recon": -jnp.mean(terms.log_likelihood),
            "kl": jnp.mean(terms.kl),
        }
        if iwae_samples > 0:
            iwae_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
            bound = jax.vmap(lambda xi, ki: iwae_bound(model, params, xi, ki, iwae_samples))(x, iwae_keys)
            metrics["iwae"] = jnp.mean(bound)
            return -metrics["iwae"], metrics
        return -metrics["elbo"], metrics

    return loss


def sample(model: VAE, params: Params, key: jax.Array, num: int) -> jax.Array:
    """Draws ``num`` images E[x|z] with z ~ N(0, I); returns [num, H, W, C] in [0, 1]."""
    z = jax.random.normal(key, (num, model.latent_dim))
    return decoder_mean(model.likelihood, apply(model, params, VAE.decode, z))


def reconstruct(model: VAE, params: Params, x: jax.Array) -> jax.Array:
    """Decodes the posterior mean of each image in ``x`` [B, H, W, C]; returns E[x|z]."""
    chex.assert_rank(x, 4)
    mean, _ = apply(model, params, VAE.encode, x)
    return decoder_mean(model.likelihood, apply(model, params, VAE.decode, mean))


def latent_manifold(model: VAE, params: Params, grid_size: int = 20) -> jax.Array:
    """Decodes a grid of latents covering a 2D latent space (paper Fig. 4).

    As in the paper, the grid is the standard normal's inverse CDF at evenly spaced
    probabilities, so it covers the prior's mass evenly.

    Returns:
      Images [grid_size * grid_size, H, W, C], row-major with z_1 along rows.
    """
    if model.latent_dim != 2:
        raise ValueError(f"latent_dim: the manifold plot needs a 2D latent space, got {model.latent_dim}")
    probs = jnp.linspace(0.05, 0.95, grid_size)
    coords = jax.scipy.stats.norm.ppf(probs)
    z1, z2 = jnp.meshgrid(coords, coords[::-1], indexing="xy")
    z = jnp.stack([z1.reshape(-1), z2.reshape(-1)], axis=-1)
    return decoder_mean(model.likelihood, apply(model, params, VAE.decode, z))
