"""Small convolutional encoders and decoders for 28x28 and 32x32 images (NHWC)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.mlp import get_activation


class ConvEncoder(nn.Module):
    """Strided 3x3 convolutions (each halves the resolution), then a linear head.

    Attributes:
      features: channels of each stride-2 convolution.
      out_features: width of the linear output.
      activation: hidden activation name.
    """

    features: Sequence[int] = (32, 64)
    out_features: int = 2
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for i, ch in enumerate(self.features):
            x = act(nn.Conv(ch, (3, 3), strides=(2, 2), padding="SAME", name=f"conv_{i}")(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        return nn.Dense(self.out_features, name="out")(x)


class ConvDecoder(nn.Module):
    """A linear layer to a coarse feature map, then stride-2 transposed convolutions.

    The coarse map has size ``output_shape[:2] / 2**len(features)``, which must be an
    integer.

    Attributes:
      output_shape: (height, width, channels) of the output image.
      features: channels of each transposed convolution, coarse to fine.
      activation: hidden activation name.
    """

    output_shape: tuple[int, int, int] = (28, 28, 1)
    features: Sequence[int] = (64, 32)
    activation: str = "relu"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        height, width, channels = self.output_shape
        factor = 2 ** len(self.features)
        if height % factor or width % factor:
            raise ValueError(f"output_shape: height and width must be divisible by {factor} (2**len(features)), got {self.output_shape}")
        h0, w0 = height // factor, width // factor
        x = act(nn.Dense(h0 * w0 * self.features[0], name="project")(z))
        x = x.reshape(z.shape[:-1] + (h0, w0, self.features[0]))
        for i, ch in enumerate(self.features):
            x = act(nn.ConvTranspose(ch, (3, 3), strides=(2, 2), padding="SAME", name=f"deconv_{i}")(x))
        return nn.Conv(channels, (3, 3), padding="SAME", name="out")(x)


def flatten_image(x: jax.Array) -> jax.Array:
    """Flattens the trailing (H, W, C) axes of an image batch into one axis."""
    return jnp.reshape(x, x.shape[:-3] + (-1,))
