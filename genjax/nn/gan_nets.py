"""Generator and critic (discriminator) networks for GANs and WGAN-GP, NHWC, Flax Linen.

Architectures:

* :class:`MLPGenerator` / :class:`MLPCritic`: fully connected players. The critic can
  use maxout hidden units, as the discriminators of Goodfellow et al. 2014 ("Generative
  Adversarial Nets", arXiv:1406.2661, section 5) did. With hidden widths
  ``(512, 512, 512)`` and ReLU they are the toy 2-D models of Gulrajani et al. 2017
  ("Improved Training of Wasserstein GANs", arXiv:1704.00028; presets
  :func:`toy_generator` / :func:`toy_critic`).
* :class:`DCGANGenerator` / :class:`DCGANCritic`: the DCGAN-style convolutional players
  (Radford et al. 2015, arXiv:1511.06434) in the layout of the WGAN-GP MNIST and CIFAR-10
  reference models: 5x5 kernels, stride-2 (transposed) convolutions with ``4f, 2f, f``
  channels, ReLU in the generator, leaky ReLU (slope 0.2) in the critic.
* :class:`ResNetGenerator` / :class:`ResNetCritic`: the residual CIFAR-10 models of
  WGAN-GP (Appendix F, the unconditional model with Inception score 7.86): three "up"
  blocks in the generator, an optimised first "down" block, one "down" block and two
  plain blocks in the critic, 128 channels throughout.

Every network here treats each example on its own. There is **no batch
normalisation**: WGAN-GP's gradient penalty differentiates one example's score with
respect to that example's input (section 4 of Gulrajani et al., which recommends layer
normalisation instead), and data-parallel training must give the same scores however a
batch is split over devices. Where the reference models normalise, the ``norm`` field
chooses ``"layer"`` (layer normalisation over each example's features; for feature maps
over ``(H, W, C)`` with a per-channel scale and offset, as the reference ``Layernorm``
op) or ``"none"``.

Generated images are in ``[-1, 1]`` (tanh output); scale data to that range.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeGuard

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn.mlp import get_activation

__all__ = [
    "NORMS",
    "OUTPUTS",
    "DCGANCritic",
    "DCGANGenerator",
    "MLPCritic",
    "MLPGenerator",
    "OptimizedResidualBlock",
    "ResNetCritic",
    "ResNetGenerator",
    "ResidualBlock",
    "mean_pool",
    "tiny_dcgan_critic",
    "tiny_dcgan_generator",
    "toy_critic",
    "toy_generator",
    "upsample_nearest",
]

NORMS: tuple[str, ...] = ("layer", "none")
"""Normalisations a network may use (never batch normalisation, see the module doc)."""

OUTPUTS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda x: x,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
}
"""Output nonlinearities of :class:`MLPGenerator`."""

RESAMPLES: tuple[str, ...] = ("up", "down", "none")
"""Resampling modes of :class:`ResidualBlock`."""

DCGAN_SIZES: tuple[tuple[int, int], ...] = ((28, 28), (32, 32))
"""Spatial output sizes (height, width) that :class:`DCGANGenerator` supports."""

LEAKY_RELU_SLOPE = 0.2
"""Negative slope of the DCGAN critic's leaky ReLU (Radford et al.; WGAN-GP code)."""

_LN_EPSILON = 1e-5  # the epsilon of the WGAN-GP reference layer-norm op


# ---------------------------------------------------------------------------------
# Argument checks and small helpers.


def _is_int(value: object) -> TypeGuard[int | np.integer]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_positive_int(name: str, value: object) -> None:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _check_widths(name: str, widths: Sequence[int]) -> None:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not all(_is_int(w) and w > 0 for w in widths):
        raise ValueError(f"{name}: expected a sequence of positive ints, got {widths!r}")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


def _check_image_shape(name: str, shape: object) -> tuple[int, int, int]:
    if not isinstance(shape, Sequence) or len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape):
        raise ValueError(f"{name}: expected (height, width, channels) of positive ints, got {shape!r}")
    return tuple(shape)


def _check_latent(z: jax.Array) -> None:
    if z.ndim != 2:
        raise ValueError(f"z: expected a latent batch of shape [B, latent_dim], got shape {z.shape}")


def _check_images(x: jax.Array) -> None:
    if x.ndim != 4:
        raise ValueError(f"x: expected an NHWC image batch [B, H, W, C], got shape {x.shape}")


def _maybe_layer_norm(x: jax.Array, norm: str, name: str, *, image: bool) -> jax.Array:
    """Layer norm over one example's features (``(H, W, C)`` for images) or nothing.

    Must be called inside a compact method; ``name`` names the LayerNorm submodule.
    """
    if norm == "none":
        return x
    axes = (-3, -2, -1) if image else -1
    return nn.LayerNorm(epsilon=_LN_EPSILON, reduction_axes=axes, feature_axes=-1, name=name)(x)


def mean_pool(x: jax.Array) -> jax.Array:
    """2x2 mean pooling with stride 2 of an NHWC batch (even height and width)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def upsample_nearest(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of an NHWC batch (each pixel becomes a 2x2 block)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


# ---------------------------------------------------------------------------------
# Fully connected players.


class MLPGenerator(nn.Module):
    """A fully connected generator ``z [B, latent] -> x [B, *output_shape]``.

    Hidden layers ``Dense -> activation``, then a linear layer to ``prod(output_shape)``
    units, the output nonlinearity and a reshape. Goodfellow et al. 2014 (arXiv:1406.2661)
    used such generators (ReLU/sigmoid); the WGAN-GP toy generator (arXiv:1704.00028,
    ``gan_toy.py``) is three ReLU layers of 512 units with a linear 2-D output
    (:func:`toy_generator`).

    Attributes:
      hidden: widths of the hidden layers (may be empty).
      output_shape: shape of one generated example, e.g. ``(2,)`` or ``(28, 28, 1)``.
      activation: hidden activation name (see ``genjax.nn.mlp.ACTIVATIONS``).
      output: output nonlinearity, one of ``OUTPUTS``: ``"identity"`` (unbounded data,
        e.g. toy 2-D points), ``"tanh"`` (data in ``[-1, 1]``) or ``"sigmoid"`` (data in
        ``[0, 1]``).
    """

    hidden: Sequence[int]
    output_shape: tuple[int, ...]
    activation: str = "relu"
    output: str = "identity"

    def __post_init__(self) -> None:
        _check_widths("hidden", self.hidden)
        if not isinstance(self.output_shape, Sequence) or len(self.output_shape) == 0 or not all(_is_int(s) and s > 0 for s in self.output_shape):
            raise ValueError(f"output_shape: expected a non-empty tuple of positive ints, got {self.output_shape!r}")
        get_activation(self.activation)
        if self.output not in OUTPUTS:
            raise ValueError(f"output: expected one of {sorted(OUTPUTS)}, got {self.output!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        _check_latent(z)
        act = get_activation(self.activation)
        x = z
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"hidden_{i}")(x))
        x = nn.Dense(math.prod(self.output_shape), name="out")(x)
        x = OUTPUTS[self.output](x)
        return x.reshape((z.shape[0], *self.output_shape))


class MLPCritic(nn.Module):
    """A fully connected critic (discriminator) ``x [B, ...] -> scores [B]``.

    The trailing axes of ``x`` are flattened; hidden layers are ``Dense -> activation``
    or, with ``maxout_pieces = k > 1``, maxout layers (Goodfellow et al. 2013): a
    ``Dense(width * k)`` whose consecutive groups of ``k`` units are reduced by a max, the
    discriminator units of Goodfellow et al. 2014 (arXiv:1406.2661). A final ``Dense(1)``
    gives one unbounded score per example (a logit for a GAN discriminator, a Wasserstein
    critic value for WGAN). The WGAN-GP toy critic is three ReLU layers of 512 units
    (:func:`toy_critic`).

    Attributes:
      hidden: widths of the hidden layers (number of maxout units for maxout layers).
      activation: hidden activation name; unused by maxout layers.
      maxout_pieces: pieces per maxout unit; ``0`` means plain ``activation`` layers.
    """

    hidden: Sequence[int]
    activation: str = "relu"
    maxout_pieces: int = 0

    def __post_init__(self) -> None:
        _check_widths("hidden", self.hidden)
        get_activation(self.activation)
        if not _is_int(self.maxout_pieces) or self.maxout_pieces < 0 or self.maxout_pieces == 1:
            raise ValueError(f"maxout_pieces: expected 0 (plain activation) or an int >= 2, got {self.maxout_pieces!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"x: expected a batch of shape [B, ...] (at least 2 axes), got shape {x.shape}")
        act = get_activation(self.activation)
        h = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            if self.maxout_pieces:
                h = nn.Dense(width * self.maxout_pieces, name=f"hidden_{i}")(h)
                h = jnp.max(h.reshape((h.shape[0], width, self.maxout_pieces)), axis=-1)
            else:
                h = act(nn.Dense(width, name=f"hidden_{i}")(h))
        return nn.Dense(1, name="out")(h)[:, 0]


# ---------------------------------------------------------------------------------
# DCGAN-style convolutional players (WGAN-GP gan_mnist.py / gan_cifar.py layouts).


class DCGANGenerator(nn.Module):
    """The DCGAN-style generator of the WGAN-GP MNIST and CIFAR-10 experiments.

    ``z -> Dense(4*4*4f) -> [norm] -> ReLU -> reshape [4, 4, 4f]``, then 5x5 stride-2
    transposed convolutions with ``2f`` and ``f`` channels (each followed by ``[norm] ->
    ReLU``) and a last one to ``output_shape[-1]`` channels with tanh (Radford et al.
    2015, arXiv:1511.06434; Gulrajani et al. 2017, arXiv:1704.00028, ``gan_mnist.py`` and
    ``gan_cifar.py``). Resolutions: ``4 -> 8 -> 16 -> 32`` for 32x32 outputs; for 28x28
    outputs the 8x8 map is cropped to its top-left 7x7 (as the reference MNIST model
    does), giving ``4 -> 7 -> 14 -> 28``. The reference uses batch norm where
    ``norm == "layer"`` puts layer norm here (the crop comes before the norm, so the
    statistics cover only the kept 7x7 map); its MNIST model ends in a sigmoid, this one
    in tanh (data in ``[-1, 1]``).

    Parameter names: ``project``, ``project_norm``, ``deconv_0``, ``norm_0``,
    ``deconv_1``, ``norm_1``, ``deconv_out``.

    Attributes:
      output_shape: ``(height, width, channels)`` of the output; height and width must be
        28x28 or 32x32, any number of channels.
      features: ``f``, the channels of the last hidden layer (64 in the reference MNIST
        model, 128 in the CIFAR-10 one).
      norm: ``"layer"`` or ``"none"`` (see ``NORMS``).
    """

    output_shape: tuple[int, int, int] = (28, 28, 1)
    features: int = 64
    norm: str = "layer"

    def __post_init__(self) -> None:
        shape = _check_image_shape("output_shape", self.output_shape)
        if shape[:2] not in DCGAN_SIZES:
            raise ValueError(f"output_shape: expected height x width in {DCGAN_SIZES} (any channels), got {self.output_shape!r}")
        _check_positive_int("features", self.features)
        _check_norm(self.norm)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        _check_latent(z)
        height, _, channels = self.output_shape
        f = self.features
        deconv = functools.partial(nn.ConvTranspose, kernel_size=(5, 5), strides=(2, 2), padding="SAME")

        x = nn.Dense(4 * 4 * 4 * f, name="project")(z)
        x = nn.relu(_maybe_layer_norm(x, self.norm, "project_norm", image=False))
        x = x.reshape((z.shape[0], 4, 4, 4 * f))
        for i, ch in enumerate((2 * f, f)):
            x = deconv(ch, name=f"deconv_{i}")(x)
            if i == 0 and height == 28:
                x = x[:, :7, :7, :]
            x = nn.relu(_maybe_layer_norm(x, self.norm, f"norm_{i}", image=True))
        x = deconv(channels, name="deconv_out")(x)
        return jnp.tanh(x)


class DCGANCritic(nn.Module):
    """The DCGAN-style critic of the WGAN-GP MNIST and CIFAR-10 experiments.

    Three 5x5 stride-2 convolutions with ``f, 2f, 4f`` channels and leaky ReLU (slope
    0.2), layer norm after the second and third when ``norm == "layer"`` (where the
    reference WGAN model has batch norm; Gulrajani et al. 2017, arXiv:1704.00028, section
    4, and Radford et al. 2015, arXiv:1511.06434, who leave the first layer unnormalised),
    then flatten and ``Dense(1)``. Resolutions ``28 -> 14 -> 7 -> 4`` or ``32 -> 16 -> 8
    -> 4``; other sizes work too (the final Dense adapts at init).

    Parameter names: ``conv_0``, ``conv_1``, ``norm_1``, ``conv_2``, ``norm_2``, ``out``.

    Attributes:
      features: ``f``, the channels of the first convolution.
      norm: ``"layer"`` or ``"none"`` (see ``NORMS``).
    """

    features: int = 64
    norm: str = "layer"

    def __post_init__(self) -> None:
        _check_positive_int("features", self.features)
        _check_norm(self.norm)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_images(x)
        f = self.features
        h = x
        for i, ch in enumerate((f, 2 * f, 4 * f)):
            h = nn.Conv(ch, (5, 5), strides=(2, 2), padding="SAME", name=f"conv_{i}")(h)
            if i > 0:
                h = _maybe_layer_norm(h, self.norm, f"norm_{i}", image=True)
            h = nn.leaky_relu(h, LEAKY_RELU_SLOPE)
        h = h.reshape((x.shape[0], -1))
        return nn.Dense(1, name="out")(h)[:, 0]


# ---------------------------------------------------------------------------------
# Residual CIFAR-10 players (WGAN-GP gan_cifar_resnet.py layout).


class ResidualBlock(nn.Module):
    """A pre-activation residual block of the WGAN-GP ResNets.

    ``out = shortcut(x) + conv2(relu(norm2(conv1(relu(norm1(x))))))`` with 3x3
    convolutions (Gulrajani et al. 2017, arXiv:1704.00028, Appendix F):

    * ``"up"``: ``conv1`` is nearest-neighbour x2 upsampling then a conv to
      ``features``; the shortcut is upsampling then a 1x1 conv.
    * ``"down"``: ``conv1`` keeps the input channels, ``conv2`` is a conv to
      ``features`` then 2x2 mean pooling; the shortcut is a 1x1 conv then mean pooling.
    * ``"none"``: both convs to ``features``; the shortcut is the identity when the
      channel count is unchanged, a 1x1 conv otherwise.

    Parameter names: ``norm_1``, ``conv_1``, ``norm_2``, ``conv_2``, ``shortcut``.

    Attributes:
      features: output channels.
      resample: ``"up"``, ``"down"`` or ``"none"``.
      norm: ``"layer"`` or ``"none"``.
    """

    features: int
    resample: str = "none"
    norm: str = "none"

    def __post_init__(self) -> None:
        _check_positive_int("features", self.features)
        if self.resample not in RESAMPLES:
            raise ValueError(f"resample: expected one of {RESAMPLES}, got {self.resample!r}")
        _check_norm(self.norm)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_ch = x.shape[-1]
        conv3 = functools.partial(nn.Conv, kernel_size=(3, 3), padding="SAME")
        conv1x1 = functools.partial(nn.Conv, self.features, (1, 1), name="shortcut")

        if self.resample == "up":
            shortcut = conv1x1()(upsample_nearest(x))
        elif self.resample == "down":
            shortcut = mean_pool(conv1x1()(x))
        elif in_ch != self.features:
            shortcut = conv1x1()(x)
        else:
            shortcut = x

        h = nn.relu(_maybe_layer_norm(x, self.norm, "norm_1", image=True))
        if self.resample == "up":
            h = upsample_nearest(h)
        h = conv3(in_ch if self.resample == "down" else self.features, name="conv_1")(h)
        h = nn.relu(_maybe_layer_norm(h, self.norm, "norm_2", image=True))
        h = conv3(self.features, name="conv_2")(h)
        if self.resample == "down":
            h = mean_pool(h)
        return shortcut + h


class OptimizedResidualBlock(nn.Module):
    """The first "down" block of the WGAN-GP ResNet critic (``OptimizedResBlockDisc1``).

    ``out = conv1x1(mean_pool(x)) + mean_pool(conv2(relu(conv1(x))))`` with 3x3 convs
    and no activation or normalisation on the raw input.

    Parameter names: ``conv_1``, ``conv_2``, ``shortcut``.

    Attributes:
      features: output channels.
    """

    features: int

    def __post_init__(self) -> None:
        _check_positive_int("features", self.features)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = nn.Conv(self.features, (1, 1), name="shortcut")(mean_pool(x))
        h = nn.relu(nn.Conv(self.features, (3, 3), padding="SAME", name="conv_1")(x))
        h = nn.Conv(self.features, (3, 3), padding="SAME", name="conv_2")(h)
        return shortcut + mean_pool(h)


class ResNetGenerator(nn.Module):
    """The residual CIFAR-10 generator of WGAN-GP (``gan_cifar_resnet.py``, unconditional).

    ``z -> Dense(h0*w0*f) -> reshape [h0, w0, f]`` (``h0, w0`` = output size / 8, i.e.
    4x4 for 32x32), three :class:`ResidualBlock` s with ``resample="up"``, then
    ``[norm] -> ReLU -> 3x3 conv`` to ``output_shape[-1]`` channels and tanh (Gulrajani et
    al. 2017, arXiv:1704.00028, Appendix F; the model with Inception score 7.86 uses
    ``f = 128``). The reference normalises the generator with batch norm; here
    ``norm == "layer"`` uses layer norm over each example's feature map instead.

    Parameter names: ``project``, ``block_0`` .. ``block_2``, ``norm_out``, ``out``.

    Attributes:
      features: channels of every block (128 in the paper).
      output_shape: ``(height, width, channels)``; height and width must be multiples
        of 8.
      norm: ``"layer"`` or ``"none"`` (see ``NORMS``).
    """

    features: int = 128
    output_shape: tuple[int, int, int] = (32, 32, 3)
    norm: str = "layer"

    def __post_init__(self) -> None:
        _check_positive_int("features", self.features)
        shape = _check_image_shape("output_shape", self.output_shape)
        if shape[0] % 8 or shape[1] % 8:
            raise ValueError(f"output_shape: height and width must be multiples of 8 (three x2 upsamplings), got {self.output_shape!r}")
        _check_norm(self.norm)
        super().__post_init__()

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        _check_latent(z)
        height, width, channels = self.output_shape
        h0, w0, f = height // 8, width // 8, self.features
        x = nn.Dense(h0 * w0 * f, name="project")(z).reshape((z.shape[0], h0, w0, f))
        for i in range(3):
            x = ResidualBlock(f, resample="up", norm=self.norm, name=f"block_{i}")(x)
        x = nn.relu(_maybe_layer_norm(x, self.norm, "norm_out", image=True))
        x = nn.Conv(channels, (3, 3), padding="SAME", name="out")(x)
        return jnp.tanh(x)


class ResNetCritic(nn.Module):
    """The residual CIFAR-10 critic of WGAN-GP (``gan_cifar_resnet.py``, unconditional).

    An :class:`OptimizedResidualBlock` (32 -> 16), a :class:`ResidualBlock` with
    ``resample="down"`` (16 -> 8), two with ``resample="none"``, then ReLU, the mean over
    height and width and ``Dense(1)`` (Gulrajani et al. 2017, arXiv:1704.00028, Appendix
    F). No normalisation, as in the reference unconditional model.

    Parameter names: ``block_0`` .. ``block_3``, ``out``.

    Attributes:
      features: channels of every block (128 in the paper).
    """

    features: int = 128

    def __post_init__(self) -> None:
        _check_positive_int("features", self.features)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _check_images(x)
        if x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(f"x: height and width must be multiples of 4 (two 2x2 mean poolings), got shape {x.shape}")
        f = self.features
        h = OptimizedResidualBlock(f, name="block_0")(x)
        h = ResidualBlock(f, resample="down", name="block_1")(h)
        h = ResidualBlock(f, resample="none", name="block_2")(h)
        h = ResidualBlock(f, resample="none", name="block_3")(h)
        h = jnp.mean(nn.relu(h), axis=(1, 2))
        return nn.Dense(1, name="out")(h)[:, 0]


# ---------------------------------------------------------------------------------
# Presets.


def toy_generator(output: str = "identity") -> MLPGenerator:
    """The WGAN-GP toy generator: three ReLU layers of 512 units, a linear 2-D output.

    Gulrajani et al. 2017 (arXiv:1704.00028), section 5.1 / ``gan_toy.py``.

    Args:
      output: output nonlinearity (``"identity"`` for the toy data sets).
    """
    return MLPGenerator(hidden=(512, 512, 512), output_shape=(2,), activation="relu", output=output)


def toy_critic() -> MLPCritic:
    """The WGAN-GP toy critic: three ReLU layers of 512 units, then a linear score."""
    return MLPCritic(hidden=(512, 512, 512), activation="relu")


def tiny_dcgan_generator(output_shape: tuple[int, int, int] = (28, 28, 1), norm: str = "layer") -> DCGANGenerator:
    """A :class:`DCGANGenerator` with ``features=8`` (for tests and smoke runs)."""
    return DCGANGenerator(output_shape=output_shape, features=8, norm=norm)


def tiny_dcgan_critic(norm: str = "layer") -> DCGANCritic:
    """A :class:`DCGANCritic` with ``features=8`` (for tests and smoke runs)."""
    return DCGANCritic(features=8, norm=norm)
