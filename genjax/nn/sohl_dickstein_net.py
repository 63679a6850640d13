"""The reverse-process network of the diffusion models of Sohl-Dickstein et al.

"Deep Unsupervised Learning using Nonequilibrium Thermodynamics", arXiv:1503.03585: an MLP
of ``x_t`` and of Gaussian bump features of the step ``t`` (the paper's temporal basis
functions, Appendix D), used by ``genjax.models.sohl_dickstein``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.mlp import get_activation


def time_features(t: jax.Array, num_steps: int, num_basis: int) -> jax.Array:
    """Normalised Gaussian bump features of the step ``t`` (an int in 1..T).

    Two families of ``num_basis`` bumps, on a linear and on a logarithmic time axis
    (``(t - 1) / (T - 1)`` and ``log t / log T``), each normalised to sum to 1. The
    bumps follow the paper's temporal basis functions (Appendix D); the logarithmic
    axis resolves the fast changes of the reverse process near t = 1.

    Returns:
      ``[..., 2 * num_basis]`` float32 features.
    """
    t = jnp.asarray(t, jnp.float32)
    if num_steps > 1:
        axes = ((t - 1.0) / (num_steps - 1.0), jnp.log(t) / math.log(num_steps))
    else:
        axes = (jnp.zeros_like(t), jnp.zeros_like(t))
    centres = jnp.linspace(0.0, 1.0, num_basis, dtype=jnp.float32)
    width = 1.0 / max(num_basis - 1, 1)
    feats = []
    for s in axes:
        logits = -0.5 * ((s[..., None] - centres) / width) ** 2
        feats.append(jax.nn.softmax(logits, axis=-1))
    return jnp.concatenate(feats, axis=-1)


class ReverseMLP(nn.Module):
    """The network of the reverse process: ``(x_t, t) -> [data_dim, num_outputs]``.

    An MLP on ``x_t`` concatenated with ``time_features(t)``; the last layer is
    initialised to zero so that the untrained model is the forward chain's reversal.

    Attributes:
      data_dim: size of ``x``.
      num_outputs: outputs per coordinate (2 for a Gaussian mean and variance, 1 for a
        Bernoulli rate).
      num_steps: T, to normalise ``t``.
      hidden: widths of the hidden layers.
      num_basis: bumps per time axis.
      activation: hidden activation name (see ``genjax.nn.mlp.ACTIVATIONS``).
    """

    data_dim: int
    num_outputs: int
    num_steps: int
    hidden: Sequence[int] = (128, 128)
    num_basis: int = 8
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        feats = time_features(t, self.num_steps, self.num_basis)
        feats = jnp.broadcast_to(feats, x.shape[:-1] + feats.shape[-1:])
        h = jnp.concatenate([x, feats], axis=-1)
        for i, width in enumerate(self.hidden):
            h = act(nn.Dense(width, name=f"hidden_{i}")(h))
        out = nn.Dense(self.data_dim * self.num_outputs, kernel_init=nn.initializers.zeros, name="out")(h)
        return out.reshape(x.shape[:-1] + (self.data_dim, self.num_outputs))
