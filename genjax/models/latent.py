"""Latent diffusion: the KL-regularised autoencoder and the map to and from its latents.

Rombach, Blattmann, Lorenz, Esser & Ommer 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models" (arXiv 2112.10752). Sec. 3.1: an encoder ``E`` maps an image
``x`` to a latent ``z = E(x)`` of ``f`` times lower resolution, a decoder ``D`` maps it
back, and a slight KL penalty towards ``N(0, I)`` keeps the latent space from having
arbitrarily high variance ("KL-reg."). Sec. 3.2 and Appendix G: the diffusion model is
then trained on ``z``, rescaled by one scalar so that it has unit variance, and its
samples are decoded with ``D``.

The networks are :class:`genjax.nn.sd.AutoencoderKL` (diffusers' module tree) with
``encode(x) -> (mean, logvar)`` and ``decode(z) -> x``. Everything here is a pure
function of the module, its parameters, the data and a key.

What genjax leaves out of the paper's autoencoder objective (Appendix G, eq. 25): the
LPIPS perceptual term, whose VGG weights are a download, and the patch discriminator;
the reconstruction term is a pixel L1 or L2 distance. On MNIST that suffices for sharp
reconstructions; for natural images at SD's resolution import a trained autoencoder
(``genjax.nn.sd_import``) instead of training one here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from genjax.distributions import standard_normal_kl
from genjax.types import Params

__all__ = [
    "LATENT_NOISE_SALT",
    "AutoencoderTerms",
    "decode_latents",
    "encode_latents",
    "example_loss",
    "make_loss",
    "scale_factor",
]

RECONSTRUCTIONS = ("l1", "l2")

# The posterior sample z ~ q(z | x) of a training example draws its noise from
# fold_in(example key, LATENT_NOISE_SALT), independent of the diffusion's own draws.
LATENT_NOISE_SALT = 0x1A7E


@struct.dataclass
class AutoencoderTerms:
    """The per-example terms of the autoencoder objective.

    Attributes:
      reconstruction: the L1 or squared-L2 distance between ``x`` and ``D(z)``, summed
        over pixels (model scale, [-1, 1]).
      kl: ``KL(q(z | x) || N(0, I))`` summed over the latent's dimensions, in nats.
      loss: ``reconstruction + kl_weight * kl``.
      mse: the mean squared error per pixel (reported whatever the reconstruction term).
    """

    reconstruction: jax.Array
    kl: jax.Array
    loss: jax.Array
    mse: jax.Array


def _encode(module: Any, params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return module.apply(params, x, method=type(module).encode)


def _decode(module: Any, params: Params, z: jax.Array) -> jax.Array:
    return module.apply(params, z, method=type(module).decode)


def example_loss(module: Any, params: Params, x: jax.Array, key: jax.Array, *, kl_weight: float, reconstruction: str = "l1") -> AutoencoderTerms:
    """The KL-regularised autoencoder objective of one image (Rombach et al. 2022, sec. 3.1
    and Appendix G, eq. 25, without the perceptual and adversarial terms).

    ``z = mean + exp(logvar / 2) * eps`` (the reparameterisation of Kingma & Welling,
    arXiv 1312.6114, eq. 10), ``x_hat = D(z)``; the reconstruction term is summed over
    pixels and the KL over latent dimensions, so ``kl_weight`` has the paper's meaning
    (1e-6 for its f=4..16 autoencoders).

    Args:
      module: an ``AutoencoderKL`` (``encode``/``decode`` methods).
      params: its parameters.
      x: one image ``[H, W, C]`` in model scale [-1, 1].
      key: this example's key.
      kl_weight: the weight of the KL term.
      reconstruction: ``"l1"`` or ``"l2"``.
    """
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction: expected one of {RECONSTRUCTIONS}, got {reconstruction!r}")
    chex.assert_rank(x, 3)
    mean, logvar = _encode(module, params, x[None])
    eps = jax.random.normal(jax.random.fold_in(key, LATENT_NOISE_SALT), mean.shape, jnp.float32)
    z = mean + jnp.exp(0.5 * logvar) * eps
    x_hat = _decode(module, params, z)[0].astype(jnp.float32)
    chex.assert_equal_shape((x_hat, x))
    diff = x_hat - x
    rec = jnp.sum(jnp.abs(diff)) if reconstruction == "l1" else jnp.sum(diff**2)
    kl = jnp.sum(standard_normal_kl(mean, logvar))
    return AutoencoderTerms(reconstruction=rec, kl=kl, loss=rec + kl_weight * kl, mse=jnp.mean(diff**2))


def make_loss(module: Any, *, kl_weight: float, reconstruction: str = "l1") -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """The engine's loss ``loss(params, batch, keys) -> (loss, metrics)`` on ``batch["image"]``
    in model scale; metrics ``reconstruction``, ``kl`` and ``mse`` (batch means).

    Raises:
      ValueError: naming ``kl_weight`` (negative or not finite) or ``reconstruction``.
    """
    if not (0.0 <= kl_weight < float("inf")):
        raise ValueError(f"kl_weight: expected a finite non-negative float, got {kl_weight}")
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction: expected one of {RECONSTRUCTIONS}, got {reconstruction!r}")

    def loss(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = batch["image"]
        chex.assert_rank(x, 4)
        terms = jax.vmap(lambda xi, k: example_loss(module, params, xi, k, kl_weight=kl_weight, reconstruction=reconstruction))(x, keys)
        return jnp.mean(terms.loss), {"reconstruction": jnp.mean(terms.reconstruction), "kl": jnp.mean(terms.kl), "mse": jnp.mean(terms.mse)}

    return loss


def encode_latents(module: Any, params: Params, x: jax.Array, keys: jax.Array | None, scale: jax.Array | float) -> jax.Array:
    """The diffusion model's data: ``scale * z`` with ``z ~ q(z | x)`` (Rombach et al.
    2022, sec. 3.2 and Appendix G).

    Args:
      module: an ``AutoencoderKL``.
      params: its (frozen) parameters.
      x: images ``[B, H, W, C]`` in model scale.
      keys: one key per image for the posterior sample (noise from ``fold_in(key,
        LATENT_NOISE_SALT)``), or None for the posterior mean.
      scale: the latent scale factor (``scale_factor``).

    Returns:
      ``[B, h, w, latent_channels]`` float32.
    """
    chex.assert_rank(x, 4)
    mean, logvar = _encode(module, params, x)
    if keys is None:
        return scale * mean.astype(jnp.float32)
    chex.assert_shape(keys, (x.shape[0],))
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, LATENT_NOISE_SALT), mean.shape[1:], jnp.float32))(keys)
    return scale * (mean + jnp.exp(0.5 * logvar) * eps).astype(jnp.float32)


def decode_latents(module: Any, params: Params, z: jax.Array, scale: jax.Array | float) -> jax.Array:
    """Images in model scale from scaled latents: ``D(z / scale)``."""
    chex.assert_rank(z, 4)
    return _decode(module, params, z / scale).astype(jnp.float32)


def scale_factor(latents: jax.Array) -> jax.Array:
    """``1 / std(z)`` over every element of a batch of latent samples: the rescaling of
    Rombach et al. 2022 (sec. 4.3.2 and Appendix G) that gives the diffusion model data of
    unit variance. (Stable Diffusion v1 fixed it at 0.18215 this way.)

    Raises:
      ValueError: the latents have (numerically) zero spread.
    """
    std = float(jnp.std(jnp.asarray(latents, jnp.float32)))
    if not std > 1e-12 or std != std:
        raise ValueError(f"latents: cannot estimate a scale factor from latents with standard deviation {std}")
    return jnp.float32(1.0 / std)
