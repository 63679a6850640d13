"""Multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

Activation = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Activation] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "softplus": nn.softplus,
    "gelu": nn.gelu,
    "leaky_relu": nn.leaky_relu,
}


def get_activation(name: str) -> Activation:
    """Returns the activation function called ``name``.

    Args:
      name: one of ``ACTIVATIONS``.

    Raises:
      ValueError: if ``name`` is unknown.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """A fully connected network: hidden layers with an activation, then a linear output.

    Attributes:
      hidden: widths of the hidden layers.
      out_features: width of the final linear layer.
      activation: name of the hidden activation (see ``ACTIVATIONS``).
    """

    hidden: Sequence[int]
    out_features: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"hidden_{i}")(x))
        return nn.Dense(self.out_features, name="out")(x)
