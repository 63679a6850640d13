"""One home for the distribution math of every family.

Conversions between the quantities a diffusion network may predict (noise ``eps``, the
clean image ``x0``, or the velocity ``v``) live here, written for the variance-preserving
forward process ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` of Ho et al. (arXiv
2006.11239, eq. 4), where ``abar`` is the cumulative product of ``1 - beta``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def eps_from_x0(x_t: jax.Array, x0: jax.Array, abar: jax.Array) -> jax.Array:
    """``eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)`` (Ho et al. 2020, eq. 4 solved for eps).

    Args:
      x_t: the noisy sample.
      x0: the clean sample, shaped like ``x_t``.
      abar: alpha-bar at the sample's time, broadcastable to ``x_t``.
    """
    return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def x0_from_eps(x_t: jax.Array, eps: jax.Array, abar: jax.Array) -> jax.Array:
    """``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` (Ho et al. 2020, eq. 4 solved for x0).

    Args:
      x_t: the noisy sample.
      eps: the noise, shaped like ``x_t``.
      abar: alpha-bar at the sample's time, broadcastable to ``x_t``.
    """
    return (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)


def eps_from_v(x_t: jax.Array, v: jax.Array, abar: jax.Array) -> jax.Array:
    """``eps = sqrt(abar) v + sqrt(1 - abar) x_t`` for ``v = alpha eps - sigma x0``.

    Salimans & Ho (2022, arXiv 2202.00512, Sec. 4 and App. D), with ``alpha = sqrt(abar)``
    and ``sigma = sqrt(1 - abar)``.
    """
    return jnp.sqrt(abar) * v + jnp.sqrt(1.0 - abar) * x_t


def x0_from_v(x_t: jax.Array, v: jax.Array, abar: jax.Array) -> jax.Array:
    """``x0 = sqrt(abar) x_t - sqrt(1 - abar) v`` (Salimans & Ho 2022, arXiv 2202.00512, App. D)."""
    return jnp.sqrt(abar) * x_t - jnp.sqrt(1.0 - abar) * v


def v_from_eps_x0(eps: jax.Array, x0: jax.Array, abar: jax.Array) -> jax.Array:
    """The velocity target ``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022, Sec. 4)."""
    return jnp.sqrt(abar) * eps - jnp.sqrt(1.0 - abar) * x0
