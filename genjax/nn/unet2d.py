"""Diffusers' ``UNet2DModel`` in Flax Linen, NHWC: every configuration it runs.

Hugging Face diffusers' ``UNet2DModel`` is the unconditional (or class-conditional)
image U-Net of its DDPM, DDIM, score-SDE and consistency pipelines: the DDPM network of
Ho, Jain & Abbeel (2020, "Denoising Diffusion Probabilistic Models", arXiv 2006.11239,
Appendix B), the NCSN++ network of Song et al. (2021, "Score-Based Generative Modeling
through Stochastic Differential Equations", arXiv 2011.13456, Appendix H: FIR
resampling, the progressive input/output "skip" paths and random Fourier time features)
and the variants its config keys select. :class:`UNet2DModel` mirrors it field for field
(the fields are diffusers' config keys, with diffusers' defaults) and module for module,
so that :mod:`genjax.nn.diffusers_import` loads its checkpoints with the generic name and
layout rule of :mod:`genjax.nn.sd_import`; it is built from the blocks of
:mod:`genjax.nn.sd` (``ResnetBlock2D``, ``Attention``, ``Downsample2D``,
``Upsample2D``, ``DownBlock2D``, ``UpBlock2D``, ``UNetMidBlock2D``,
``TimestepEmbedding``) and adds the blocks only ``UNet2DModel`` uses.

Block types. Which names ``UNet2DModel`` accepts was determined empirically with
diffusers 0.42.1 by building a small model for each name of ``get_down_block`` /
``get_up_block`` and calling it (a ``UNetRes`` prefix is stripped, as diffusers does):

* supported down blocks: ``DownBlock2D``, ``ResnetDownsampleBlock2D``,
  ``AttnDownBlock2D``, ``SkipDownBlock2D``, ``AttnSkipDownBlock2D``, ``KDownBlock2D``;
* supported up blocks: ``UpBlock2D``, ``ResnetUpsampleBlock2D``, ``AttnUpBlock2D``,
  ``SkipUpBlock2D``, ``AttnSkipUpBlock2D``, ``KUpBlock2D``;
* middle: ``"UNetMidBlock2D"`` or None (diffusers builds a ``UNetMidBlock2D`` for any
  other name too; genjax refuses a name that promises another block);
* refused, with the reason in :data:`REFUSED_BLOCK_TYPES`: ``CrossAttnDownBlock2D``,
  ``SimpleCrossAttnDownBlock2D``, ``CrossAttnUpBlock2D``, ``SimpleCrossAttnUpBlock2D``
  (diffusers cannot build them: ``UNet2DModel`` passes no ``cross_attention_dim``),
  ``KCrossAttnDownBlock2D``, ``KCrossAttnUpBlock2D`` (cross-attention blocks, but
  ``UNet2DModel`` passes no ``encoder_hidden_states``), ``DownEncoderBlock2D``,
  ``AttnDownEncoderBlock2D``, ``UpDecoderBlock2D``, ``AttnUpDecoderBlock2D``
  (autoencoder blocks: they produce or take no skip states, and ``UNet2DModel``'s
  forward pass fails).

Some supported blocks combine only in certain ways in diffusers too, and
:meth:`UNet2DModel.validate` refuses the combinations whose forward pass fails there:
a downsampling skip block needs skip blocks at every level before it and 3 input
channels (its ``skip_conv`` reads an RGB image); after an upsampling skip up block
every up block must be a skip block and ``out_channels`` must be 3; the k-diffusion
blocks (``KDownBlock2D``/``KUpBlock2D``, from Crowson's k-diffusion latent upscaler)
keep one skip state per layer, so they pair with each other.

Options: every ``UNet2DModel.__init__`` argument: ``sample_size`` (metadata),
``in_channels``, ``out_channels``, ``center_input_sample``, ``time_embedding_type``
(``"positional"``, ``"fourier"`` or ``"learned"`` with ``num_train_timesteps``),
``time_embedding_dim``, ``freq_shift``, ``flip_sin_to_cos``, the block types,
``block_out_channels``, ``layers_per_block``, ``mid_block_scale_factor``,
``downsample_padding``, ``downsample_type`` and ``upsample_type`` (``"conv"`` or
``"resnet"``, read by the attention blocks), ``dropout`` (active with ``train=True``
and a ``'dropout'`` rng), ``act_fn`` (``silu``/``swish``, ``mish``, ``gelu``,
``relu``, any case), ``attention_head_dim`` (None: one head), ``norm_num_groups``
(None: only with skip and k-diffusion blocks, which fix their own groups),
``attn_norm_num_groups``, ``norm_eps``, ``resnet_time_scale_shift`` (``"default"`` or
``"scale_shift"``), ``add_attention``, ``class_embed_type`` (None with
``num_class_embeds``, ``"timestep"`` or ``"identity"``; diffusers silently builds no
class embedding for any other name, which genjax refuses) and ``num_class_embeds``.

Conventions: images are NHWC (diffusers: NCHW); ``timesteps`` are ``[B]`` or a scalar;
``module.apply({"params": p}, x, timesteps, class_labels=None, train=False)``.
Parameter names follow :mod:`genjax.nn.sd`: diffusers' ``down_blocks.1.resnets.0.conv1
.weight`` is ``down_blocks_1/resnets_0/conv1/kernel``. The random Fourier features
(``time_proj/weight``) are a parameter here, as in diffusers' state dict, where they
are frozen (``requires_grad=False``): exclude them from the optimizer when training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.nn.sd import (
    DownBlock2D,
    ResnetBlockFields,
    TimeEmbeddingNorm,
    TimestepEmbedding,
    UNetMidBlock2D,
    UpBlock2D,
    _conv,
    _group_norm,
    activation,
    attention_block,
    fir_downsample_2x,
    fir_upsample_2x,
    timestep_embedding,
)

__all__ = [
    "DOWN_BLOCK_TYPES",
    "MID_BLOCK_TYPES",
    "REFUSED_BLOCK_TYPES",
    "UNET2D_CONFIG_KEYS",
    "UP_BLOCK_TYPES",
    "AdaGroupNorm",
    "AttnDownBlock2D",
    "AttnSkipDownBlock2D",
    "AttnSkipUpBlock2D",
    "AttnUpBlock2D",
    "GaussianFourierProjection",
    "KDownBlock2D",
    "KUpBlock2D",
    "ResnetBlockCondNorm2D",
    "ResnetDownsampleBlock2D",
    "ResnetUpsampleBlock2D",
    "SkipDownBlock2D",
    "SkipUpBlock2D",
    "UNet2DModel",
]

Dtype = Any

DOWN_BLOCK_TYPES = ("DownBlock2D", "ResnetDownsampleBlock2D", "AttnDownBlock2D", "SkipDownBlock2D", "AttnSkipDownBlock2D", "KDownBlock2D")
UP_BLOCK_TYPES = ("UpBlock2D", "ResnetUpsampleBlock2D", "AttnUpBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D", "KUpBlock2D")
MID_BLOCK_TYPES = ("UNetMidBlock2D", None)

_NO_CROSS_DIM = "a cross-attention block: UNet2DModel passes no cross_attention_dim, so diffusers cannot build it"
_NO_CONTEXT = "a cross-attention block: UNet2DModel passes no encoder_hidden_states for it to attend to"
_ENCODER = "an autoencoder block: it returns no skip states, so UNet2DModel's forward pass fails in diffusers"
_DECODER = "an autoencoder block: it takes no skip states, so UNet2DModel's forward pass fails in diffusers"
#: Block names of diffusers' ``get_down_block``/``get_up_block`` that genjax refuses in a ``UNet2DModel``, with the reason.
REFUSED_BLOCK_TYPES: dict[str, str] = {
    "CrossAttnDownBlock2D": _NO_CROSS_DIM,
    "SimpleCrossAttnDownBlock2D": _NO_CROSS_DIM,
    "CrossAttnUpBlock2D": _NO_CROSS_DIM,
    "SimpleCrossAttnUpBlock2D": _NO_CROSS_DIM,
    "KCrossAttnDownBlock2D": _NO_CONTEXT,
    "KCrossAttnUpBlock2D": _NO_CONTEXT,
    "DownEncoderBlock2D": _ENCODER,
    "AttnDownEncoderBlock2D": _ENCODER,
    "UpDecoderBlock2D": _DECODER,
    "AttnUpDecoderBlock2D": _DECODER,
}

#: The config keys of diffusers' ``UNet2DModel`` (its ``__init__`` arguments): the fields of :class:`UNet2DModel` but ``dtype``.
UNET2D_CONFIG_KEYS = (
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "time_embedding_type",
    "time_embedding_dim",
    "freq_shift",
    "flip_sin_to_cos",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
    "class_embed_type",
    "num_class_embeds",
    "num_train_timesteps",
)

_SKIP_DOWN = ("SkipDownBlock2D", "AttnSkipDownBlock2D")
_SKIP_UP = ("SkipUpBlock2D", "AttnSkipUpBlock2D")
_K_BLOCKS = ("KDownBlock2D", "KUpBlock2D")
_K_GROUP_SIZE = 32  # channels per GroupNorm group in the k-diffusion blocks
_SQRT2 = math.sqrt(2.0)


def _block_kind(name: str) -> str:
    """A block type name without diffusers' optional ``UNetRes`` prefix."""
    return name.removeprefix("UNetRes")


def _skip_groups(channels: int) -> int:
    """The GroupNorm groups diffusers fixes in the NCSN++ skip blocks."""
    return min(channels // 4, 32)


# ------------------------------------------------------------------------ embeddings


class GaussianFourierProjection(nn.Module):
    """Diffusers' ``GaussianFourierProjection``: random Fourier features of the noise level.

    ``[sin(2 pi log(t) w) | cos(2 pi log(t) w)]`` for fixed Gaussian frequencies ``w``
    (Tancik et al. 2020), the time embedding of NCSN++ for continuous noise scales
    ``sigma`` (Song et al. 2021, arXiv 2011.13456, Appendix H.1). ``UNet2DModel`` uses
    ``scale=16``, ``log=True`` and ``[sin | cos]``.

    Attributes:
      embedding_size: number of frequencies (output width ``2 * embedding_size``).
      scale: standard deviation of the frequencies at initialisation.
      log: embed ``log(t)`` (then ``t`` must be positive).
      flip_sin_to_cos: ``[cos | sin]`` instead.
    """

    embedding_size: int
    scale: float = 16.0
    log: bool = True
    flip_sin_to_cos: bool = False

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        """Maps ``[B]`` noise levels to ``[B, 2 * embedding_size]`` float32 features."""
        chex.assert_rank(t, 1)
        weight = self.param("weight", lambda key, shape: self.scale * jax.random.normal(key, shape), (self.embedding_size,))
        t = t.astype(jnp.float32)
        x = jnp.log(t) if self.log else t
        proj = x[:, None] * weight[None, :] * 2 * np.pi
        parts = [jnp.cos(proj), jnp.sin(proj)] if self.flip_sin_to_cos else [jnp.sin(proj), jnp.cos(proj)]
        return jnp.concatenate(parts, axis=-1)


# --------------------------------------------------------------- attention and skip blocks


class AttnDownBlock2D(DownBlock2D):
    """Diffusers' ``AttnDownBlock2D``: each residual block followed by self-attention.

    The attention levels of the DDPM U-Net (Ho et al. 2020, arXiv 2006.11239, Appendix
    B): :func:`~genjax.nn.sd.attention_block` with the residual blocks' GroupNorm.

    Attributes (besides :class:`~genjax.nn.sd.DownBlock2D`'s):
      attention_head_dim: width of one head (None: all channels, one head).
    """

    attention_head_dim: int | None = None

    def _attend(self, i: int, x: jax.Array, encoder_hidden_states: jax.Array | None) -> jax.Array:
        """Self-attention ``attentions_{i}`` (:func:`~genjax.nn.sd.attention_block`) with the residual blocks' GroupNorm."""
        del encoder_hidden_states
        return attention_block(
            self.out_channels, self.attention_head_dim, self.resnet_groups, self.resnet_eps, self.output_scale_factor, self.dtype, f"attentions_{i}"
        )(x)


class ResnetDownsampleBlock2D(DownBlock2D):
    """Diffusers' ``ResnetDownsampleBlock2D``: :class:`~genjax.nn.sd.DownBlock2D` whose downsampler is a residual block.

    The BigGAN-style resampling residual block (average pooling inside the block) of
    Song et al. 2021 (arXiv 2011.13456, Appendix H).
    """

    downsample_type: str = "resnet"


class AttnUpBlock2D(UpBlock2D):
    """Diffusers' ``AttnUpBlock2D``: :class:`~genjax.nn.sd.UpBlock2D` with self-attention after each residual block.

    Attributes (besides :class:`~genjax.nn.sd.UpBlock2D`'s):
      attention_head_dim: width of one head (None: all channels, one head).
    """

    attention_head_dim: int | None = None

    def _attend(self, i: int, x: jax.Array, encoder_hidden_states: jax.Array | None) -> jax.Array:
        """Self-attention ``attentions_{i}`` (:func:`~genjax.nn.sd.attention_block`) with the residual blocks' GroupNorm."""
        del encoder_hidden_states
        return attention_block(
            self.out_channels, self.attention_head_dim, self.resnet_groups, self.resnet_eps, self.output_scale_factor, self.dtype, f"attentions_{i}"
        )(x)


class ResnetUpsampleBlock2D(UpBlock2D):
    """Diffusers' ``ResnetUpsampleBlock2D``: :class:`~genjax.nn.sd.UpBlock2D` whose upsampler is a residual block.

    The BigGAN-style resampling residual block (nearest-neighbour upsampling inside the
    block) of Song et al. 2021 (arXiv 2011.13456, Appendix H).
    """

    upsample_type: str = "resnet"


class SkipDownBlock2D(ResnetBlockFields):
    """Diffusers' ``SkipDownBlock2D``: an NCSN++ down level with the progressive input path.

    Residual blocks (GroupNorm groups ``min(C // 4, 32)``, output scaled by ``1 /
    sqrt(2)``), then, when downsampling, a residual block with FIR downsampling and a
    1x1 shortcut, and the "input skip" of NCSN++ (Song et al. 2021, arXiv 2011.13456,
    Appendix H, progressive growing of the input): the RGB image is FIR-downsampled
    alongside and added through the 1x1 ``skip_conv``. ``resnet_groups`` is unused.

    Attributes (besides the residual-block fields, see :class:`~genjax.nn.sd.DownBlock2D`):
      add_downsample: end with the downsampling residual block and the skip input.
    """

    output_scale_factor: float = _SQRT2
    add_downsample: bool = True

    def _attend(self, i: int, x: jax.Array) -> jax.Array:
        del i
        return x

    @nn.compact
    def __call__(
        self, x: jax.Array, temb: jax.Array | None, skip_sample: jax.Array, *, deterministic: bool = True
    ) -> tuple[jax.Array, tuple[jax.Array, ...], jax.Array]:
        """Returns the output, the states the up path concatenates, and the (downsampled) image."""
        groups_out = _skip_groups(self.out_channels)
        states = []
        for i in range(self.num_layers):
            x = self._resnet(i, groups=_skip_groups(x.shape[-1]), groups_out=groups_out)(x, temb, deterministic=deterministic)
            x = self._attend(i, x)
            states.append(x)
        if self.add_downsample:
            x = self._resnet("resnet_down", groups=groups_out, groups_out=None, use_in_shortcut=True, down=True, fir=True)(x, temb, deterministic=deterministic)
            skip_sample = fir_downsample_2x(skip_sample)
            x = _conv(self.out_channels, 1, "skip_conv", self.dtype)(skip_sample) + x
            states.append(x)
        return x, tuple(states), skip_sample


class AttnSkipDownBlock2D(SkipDownBlock2D):
    """Diffusers' ``AttnSkipDownBlock2D``: :class:`SkipDownBlock2D` with self-attention after each residual block.

    The attention has 32 GroupNorm groups (fixed by diffusers) and is scaled by ``1 /
    sqrt(2)`` like the residual blocks (NCSN++, Song et al. 2021, arXiv 2011.13456).

    Attributes (besides :class:`SkipDownBlock2D`'s):
      attention_head_dim: width of one head (None: all channels, one head).
    """

    attention_head_dim: int | None = None

    def _attend(self, i: int, x: jax.Array) -> jax.Array:
        return attention_block(self.out_channels, self.attention_head_dim, 32, self.resnet_eps, self.output_scale_factor, self.dtype, f"attentions_{i}")(x)


class SkipUpBlock2D(ResnetBlockFields):
    """Diffusers' ``SkipUpBlock2D``: an NCSN++ up level with the progressive output path.

    Residual blocks on ``concat(h, skip)`` (GroupNorm groups from the concatenated
    width, output scaled by ``1 / sqrt(2)``); the "output skip" of NCSN++ (Song et al.
    2021, arXiv 2011.13456, Appendix H, progressive growing of the output): the running
    RGB output is FIR-upsampled and, when the level upsamples, the level's features are
    added through ``skip_norm -> SiLU -> skip_conv`` (3x3 to 3 channels) before a
    residual block with FIR upsampling. ``resnet_groups`` is unused.

    Attributes (besides the residual-block fields, see :class:`~genjax.nn.sd.DownBlock2D`):
      add_upsample: end with the output skip and the upsampling residual block.
    """

    output_scale_factor: float = _SQRT2
    add_upsample: bool = True

    def _concat_groups(self, hidden: int, skip: int) -> int:
        return _skip_groups(hidden + skip)

    def _attend(self, x: jax.Array) -> jax.Array:
        return x

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        skips: Sequence[jax.Array],
        temb: jax.Array | None,
        skip_sample: jax.Array | None,
        *,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array | None]:
        """Consumes ``num_layers`` skip states; returns the output and the running image (None: none yet)."""
        skips = list(skips)
        if len(skips) != self.num_layers:
            raise ValueError(f"skips: expected {self.num_layers} skip states, got {len(skips)}")
        groups_out = _skip_groups(self.out_channels)
        for i in range(self.num_layers):
            res = skips.pop()
            groups = self._concat_groups(x.shape[-1], res.shape[-1])
            x = jnp.concatenate([x, res], axis=-1)
            x = self._resnet(i, groups=groups, groups_out=groups_out)(x, temb, deterministic=deterministic)
        x = self._attend(x)
        if skip_sample is not None:
            skip_sample = fir_upsample_2x(skip_sample)
        if self.add_upsample:
            s = nn.silu(_group_norm(groups_out, self.resnet_eps, "skip_norm", self.dtype)(x))
            s = _conv(3, 3, "skip_conv", self.dtype)(s)
            skip_sample = s if skip_sample is None else skip_sample + s
            x = self._resnet("resnet_up", groups=groups_out, groups_out=groups_out, use_in_shortcut=True, up=True, fir=True)(
                x, temb, deterministic=deterministic
            )
        return x, skip_sample


class AttnSkipUpBlock2D(SkipUpBlock2D):
    """Diffusers' ``AttnSkipUpBlock2D``: :class:`SkipUpBlock2D` with one self-attention after the residual blocks.

    The attention has 32 GroupNorm groups and is scaled by ``1 / sqrt(2)``. The groups of
    the residual blocks' first norm are ``min(hidden + skip // 4, 32)`` for the widths of
    the two concatenated inputs, exactly as diffusers computes them (operator precedence
    included), so that its checkpoints load.

    Attributes (besides :class:`SkipUpBlock2D`'s):
      attention_head_dim: width of one head (None: all channels, one head).
    """

    attention_head_dim: int | None = None

    def _concat_groups(self, hidden: int, skip: int) -> int:
        return min(hidden + skip // 4, 32)

    def _attend(self, x: jax.Array) -> jax.Array:
        return attention_block(self.out_channels, self.attention_head_dim, 32, self.resnet_eps, self.output_scale_factor, self.dtype, "attentions_0")(x)


# ---------------------------------------------------------------- k-diffusion blocks


class AdaGroupNorm(nn.Module):
    """Diffusers' ``AdaGroupNorm``: GroupNorm without affine parameters, modulated by an embedding.

    ``GroupNorm(x) * (1 + scale) + shift`` with ``[scale | shift] = linear(emb)`` (the
    adaptive group normalisation of Dhariwal & Nichol 2021, arXiv 2105.05233).

    Attributes:
      groups: GroupNorm groups.
      eps: GroupNorm epsilon.
      dtype: computation dtype.
    """

    groups: int
    eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        """Normalises ``[B, H, W, C]`` with ``emb [B, T]``."""
        chex.assert_rank([x, emb], [4, 2])
        scale, shift = jnp.split(nn.Dense(2 * x.shape[-1], dtype=self.dtype, name="linear")(emb)[:, None, None, :], 2, axis=-1)
        norm = nn.GroupNorm(num_groups=self.groups, epsilon=self.eps, use_bias=False, use_scale=False, use_fast_variance=False, dtype=self.dtype)
        return norm(x) * (1 + scale) + shift


class ResnetBlockCondNorm2D(nn.Module):
    """Diffusers' ``ResnetBlockCondNorm2D`` with ``time_embedding_norm="ada_group"``.

    :class:`~genjax.nn.sd.ResnetBlock2D` whose two norms are :class:`AdaGroupNorm`\\ s
    of the time embedding instead of an added projection (the residual block of the
    k-diffusion blocks).

    Attributes:
      out_channels: output channels.
      groups: groups of ``norm1``.
      groups_out: groups of ``norm2``.
      eps: GroupNorm epsilon.
      dropout: dropout rate before ``conv2``.
      act_fn: the activation.
      conv_shortcut_bias: bias on the 1x1 shortcut (used when the channel count changes).
      dtype: computation dtype.
    """

    out_channels: int
    groups: int
    groups_out: int
    eps: float = 1e-5
    dropout: float = 0.0
    act_fn: str = "gelu"
    conv_shortcut_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[B, H, W, C_in]`` and ``temb [B, T]`` to ``[B, H, W, out_channels]``."""
        act = activation(self.act_fn)
        h = act(AdaGroupNorm(self.groups, self.eps, self.dtype, name="norm1")(x, temb))
        h = _conv(self.out_channels, 3, "conv1", self.dtype)(h)
        h = act(AdaGroupNorm(self.groups_out, self.eps, self.dtype, name="norm2")(h, temb))
        h = nn.Dropout(self.dropout, deterministic=deterministic)(h)
        h = _conv(self.out_channels, 3, "conv2", self.dtype)(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), use_bias=self.conv_shortcut_bias, dtype=self.dtype, name="conv_shortcut")(x)
        return x + h


def _k_resnet(block: ResnetBlockFields, i: int, in_channels: int, out_channels: int) -> ResnetBlockCondNorm2D:
    return ResnetBlockCondNorm2D(
        out_channels=out_channels,
        groups=in_channels // _K_GROUP_SIZE,
        groups_out=block.out_channels // _K_GROUP_SIZE,
        eps=block.resnet_eps,
        dropout=block.dropout,
        act_fn=block.resnet_act_fn,
        conv_shortcut_bias=False,
        dtype=block.dtype,
        name=f"resnets_{i}",
    )


class KDownBlock2D(ResnetBlockFields):
    """Diffusers' ``KDownBlock2D``: k-diffusion residual blocks, then reflect-padded FIR downsampling.

    :class:`ResnetBlockCondNorm2D`\\ s with ``channels // 32`` groups and no shortcut
    bias; one skip state per residual block (none for the downsampler, which has no
    parameters). ``resnet_groups``, ``resnet_time_scale_shift`` and
    ``output_scale_factor`` are unused.

    Attributes (besides the residual-block fields, see :class:`~genjax.nn.sd.DownBlock2D`):
      add_downsample: end with the downsampler.
    """

    add_downsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, *, deterministic: bool = True) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Returns the output and one skip state per residual block."""
        states = []
        for i in range(self.num_layers):
            x = _k_resnet(self, i, x.shape[-1], self.out_channels)(x, temb, deterministic=deterministic)
            states.append(x)
        if self.add_downsample:
            x = fir_downsample_2x(x, reflect=True)
        return x, tuple(states)


class KUpBlock2D(ResnetBlockFields):
    """Diffusers' ``KUpBlock2D``: k-diffusion residual blocks on ``concat(h, last skip)``, then FIR upsampling.

    Of the ``num_layers`` skip states it is given only the last is concatenated; the
    last residual block maps to ``final_channels``. ``num_layers`` counts residual
    blocks (diffusers' ``num_layers - 1``: ``UNet2DModel``'s ``layers_per_block``).

    Attributes (besides the residual-block fields, see :class:`~genjax.nn.sd.DownBlock2D`):
      final_channels: output channels of the last residual block (diffusers' ``in_channels``).
      add_upsample: end with the reflect-padded FIR upsampler.
    """

    final_channels: int = 0
    add_upsample: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, skips: Sequence[jax.Array], temb: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Consumes ``num_layers`` skip states from the end of ``skips``."""
        if len(skips) != self.num_layers:
            raise ValueError(f"skips: expected {self.num_layers} skip states, got {len(skips)}")
        x = jnp.concatenate([x, skips[-1]], axis=-1)
        for i in range(self.num_layers):
            out = self.final_channels if i == self.num_layers - 1 else self.out_channels
            x = _k_resnet(self, i, x.shape[-1], out)(x, temb, deterministic=deterministic)
        if self.add_upsample:
            x = fir_upsample_2x(x, reflect=True)
        return x


# --------------------------------------------------------------------------- the U-Net


def _fail(key: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{key}: expected {expected}, got {value!r}")


def _check_block_names(key: str, names: Sequence[Any], supported: tuple[str, ...], count: int) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != count:
        raise _fail(key, f"{count} block types (one per entry of block_out_channels)", names)
    kinds = []
    for i, name in enumerate(names):
        kind = _block_kind(name) if isinstance(name, str) else name
        if kind in REFUSED_BLOCK_TYPES:
            raise ValueError(f"{key}: entry {i} is {name!r}, which genjax's UNet2DModel refuses: {REFUSED_BLOCK_TYPES[kind]}")
        if kind not in supported:
            raise ValueError(f"{key}: entry {i} is {name!r}; expected one of {list(supported)}")
        kinds.append(kind)
    return tuple(kinds)


class UNet2DModel(nn.Module):
    """Diffusers' ``UNet2DModel``: the image U-Net of DDPM, score-SDE (NCSN++) and their variants.

    ``conv_in``, a time embedding (sinusoidal, Ho et al. 2020, arXiv 2006.11239; random
    Fourier features of ``log sigma``, Song et al. 2021, arXiv 2011.13456; or a learned
    table) through ``TimestepEmbedding``, optionally plus a class embedding, the down
    blocks (collecting skip states), the middle block, the up blocks (consuming them),
    ``GroupNorm -> SiLU -> conv_out``, plus the NCSN++ output skip path and, for Fourier
    time embeddings, a division by ``t`` (the noise level ``sigma``). See the module
    docstring for the supported block types. Field names and defaults are diffusers'
    config keys and defaults: ``UNet2DModel()`` is diffusers' ``UNet2DModel()``.

    Attributes:
      sample_size: the trained image size, int or ``(height, width)`` (metadata).
      in_channels: input channels.
      out_channels: output channels.
      center_input_sample: map the input ``x -> 2x - 1`` first.
      time_embedding_type: ``"positional"``, ``"fourier"`` or ``"learned"``.
      time_embedding_dim: time-embedding width (None: ``4 * block_out_channels[0]``).
      freq_shift: ``downscale_freq_shift`` of the positional features.
      flip_sin_to_cos: positional features ``[cos | sin]``.
      down_block_types: per level, a name of :data:`DOWN_BLOCK_TYPES`.
      mid_block_type: ``"UNetMidBlock2D"`` or None (no middle block).
      up_block_types: per level from the coarsest, a name of :data:`UP_BLOCK_TYPES`.
      block_out_channels: channels per level.
      layers_per_block: residual blocks per down level (up levels: one more).
      mid_block_scale_factor: the middle block's ``output_scale_factor``.
      downsample_padding: padding of the strided-conv downsamplers (0: bottom/right only).
      downsample_type: ``"conv"`` or ``"resnet"`` downsamplers in ``AttnDownBlock2D``.
      upsample_type: ``"conv"`` or ``"resnet"`` upsamplers in ``AttnUpBlock2D``.
      dropout: residual-block dropout (with ``train=True``).
      act_fn: residual-block activation (the time MLP and output use SiLU).
      attention_head_dim: width of one attention head (None: one head over all channels).
      norm_num_groups: GroupNorm groups (None: only with skip/k-diffusion blocks; then
        ``min(C // 4, 32)`` in the middle and output norms).
      attn_norm_num_groups: groups of the middle attention's norm (None: diffusers' rule,
        see :class:`~genjax.nn.sd.UNetMidBlock2D`).
      norm_eps: GroupNorm epsilon.
      resnet_time_scale_shift: ``"default"`` (add) or ``"scale_shift"``.
      add_attention: attention in the middle block.
      class_embed_type: None (a table of ``num_class_embeds`` labels, if set),
        ``"timestep"`` (labels embedded like timesteps) or ``"identity"`` (labels are
        ``[B, time_embed_dim]`` vectors).
      num_class_embeds: number of class labels of the ``None`` type's table.
      num_train_timesteps: the table size of the ``"learned"`` time embedding.
      dtype: computation dtype (parameters are float32).
    """

    sample_size: int | tuple[int, int] | None = None
    in_channels: int = 3
    out_channels: int = 3
    center_input_sample: bool = False
    time_embedding_type: str = "positional"
    time_embedding_dim: int | None = None
    freq_shift: float = 0
    flip_sin_to_cos: bool = True
    down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    mid_block_type: str | None = "UNetMidBlock2D"
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    block_out_channels: tuple[int, ...] = (224, 448, 672, 896)
    layers_per_block: int = 2
    mid_block_scale_factor: float = 1
    downsample_padding: int = 1
    downsample_type: str = "conv"
    upsample_type: str = "conv"
    dropout: float = 0.0
    act_fn: str = "silu"
    attention_head_dim: int | None = 8
    norm_num_groups: int | None = 32
    attn_norm_num_groups: int | None = None
    norm_eps: float = 1e-5
    resnet_time_scale_shift: TimeEmbeddingNorm = "default"
    add_attention: bool = True
    class_embed_type: str | None = None
    num_class_embeds: int | None = None
    num_train_timesteps: int | None = None
    dtype: Dtype = jnp.float32

    # ------------------------------------------------------------------ derived values

    @property
    def time_embed_dim(self) -> int:
        """Width of the time (and class) embedding."""
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    @property
    def downsampling_factor(self) -> int:
        """``2 ** (levels - 1)``: input heights and widths must be multiples of it."""
        return 2 ** (len(self.block_out_channels) - 1)

    def has_class_embedding(self) -> bool:
        """Whether the network takes ``class_labels``."""
        return self.class_embed_type is not None or self.num_class_embeds is not None

    def example_inputs(self, batch: int = 1) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct, jax.ShapeDtypeStruct | None]:
        """Shapes and dtypes of ``(sample, timesteps, class_labels)`` for ``init`` / ``jax.eval_shape``.

        Args:
          batch: the batch size.

        Returns:
          The smallest valid ``sample``, ``timesteps`` (int32 for the learned embedding,
          float32 otherwise) and ``class_labels`` (None without a class embedding).
        """
        size = self.downsampling_factor
        sample = jax.ShapeDtypeStruct((batch, size, size, self.in_channels), jnp.float32)
        time_dtype = jnp.int32 if self.time_embedding_type == "learned" else jnp.float32
        timesteps = jax.ShapeDtypeStruct((batch,), time_dtype)
        labels: jax.ShapeDtypeStruct | None = None
        if self.class_embed_type == "identity":
            labels = jax.ShapeDtypeStruct((batch, self.time_embed_dim), jnp.float32)
        elif self.class_embed_type == "timestep":
            labels = jax.ShapeDtypeStruct((batch,), time_dtype)
        elif self.num_class_embeds is not None:
            labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
        return sample, timesteps, labels

    # ---------------------------------------------------------------------- validation

    def validate(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Checks the configuration; diffusers fails to build or run every config refused here.

        Returns:
          The down and up block kinds (names without a ``UNetRes`` prefix).

        Raises:
          ValueError: naming the config key, what is expected and what was given.
        """
        channels = self.block_out_channels
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
            raise _fail("block_out_channels", "a non-empty list of positive ints", channels)
        for c in channels:
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise _fail("block_out_channels", "positive ints", channels)
        levels = len(channels)
        down = _check_block_names("down_block_types", self.down_block_types, DOWN_BLOCK_TYPES, levels)
        up = _check_block_names("up_block_types", self.up_block_types, UP_BLOCK_TYPES, levels)
        if self.mid_block_type not in MID_BLOCK_TYPES:
            raise _fail("mid_block_type", "'UNetMidBlock2D' or null (diffusers' UNet2DModel builds no other middle block)", self.mid_block_type)
        for key in ("in_channels", "out_channels", "layers_per_block"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(key, "a positive int", value)
        activation(self.act_fn)
        self._validate_embeddings()
        if self.resnet_time_scale_shift not in ("default", "scale_shift"):
            raise _fail("resnet_time_scale_shift", "'default' or 'scale_shift'", self.resnet_time_scale_shift)
        if not 0.0 <= self.dropout < 1.0:
            raise _fail("dropout", "a rate in [0, 1)", self.dropout)
        self._validate_resampling(down, up)
        self._validate_groups(down, up)
        self._validate_attention(down, up)
        self._validate_skip_paths(down, up)
        return down, up

    def _validate_embeddings(self) -> None:
        if self.time_embedding_type not in ("positional", "fourier", "learned"):
            raise _fail("time_embedding_type", "'positional', 'fourier' or 'learned'", self.time_embedding_type)
        for key in ("time_embedding_dim", "num_class_embeds", "num_train_timesteps"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise _fail(key, "a positive int or null", value)
        if self.time_embedding_type == "learned" and self.num_train_timesteps is None:
            raise _fail("num_train_timesteps", "the table size of time_embedding_type='learned'", None)
        if self.class_embed_type not in (None, "timestep", "identity"):
            raise _fail("class_embed_type", "null, 'timestep' or 'identity' (the class embeddings of UNet2DModel)", self.class_embed_type)

    def _validate_resampling(self, down: tuple[str, ...], up: tuple[str, ...]) -> None:
        last = len(down) - 1
        conv_down = any(kind == "DownBlock2D" or (kind == "AttnDownBlock2D" and self.downsample_type == "conv") for kind in down[:last])
        if conv_down and self.downsample_padding not in (0, 1):
            raise _fail("downsample_padding", "0 or 1 (other paddings change the downsampled size and the skip connections fail)", self.downsample_padding)
        if "AttnDownBlock2D" in down[:last] and self.downsample_type not in ("conv", "resnet"):
            raise _fail("downsample_type", "'conv' or 'resnet' (read by AttnDownBlock2D)", self.downsample_type)
        if "AttnUpBlock2D" in up[:last] and self.upsample_type not in ("conv", "resnet"):
            raise _fail("upsample_type", "'conv' or 'resnet' (read by AttnUpBlock2D)", self.upsample_type)

    def _validate_groups(self, down: tuple[str, ...], up: tuple[str, ...]) -> None:
        channels = self.block_out_channels
        own_groups = _SKIP_DOWN + _SKIP_UP + _K_BLOCKS  # blocks that fix their own GroupNorm groups
        users = [(f"down_block_types[{i}]", channels[i]) for i, kind in enumerate(down) if kind not in own_groups]
        users += [(f"up_block_types[{i}]", channels[-1 - i]) for i, kind in enumerate(up) if kind not in own_groups]
        groups = self.norm_num_groups
        if groups is None:
            if users:
                raise _fail("norm_num_groups", f"a positive int: {users[0][0]} uses it (null works only with skip and k-diffusion blocks)", None)
            groups = _skip_groups(channels[0])
            for c in {channels[0], channels[-1]}:
                if _skip_groups(c) < 1 or c % _skip_groups(c):
                    raise _fail(
                        "block_out_channels", f"widths divisible by min(C // 4, 32), the groups used when norm_num_groups is null (C = {c})", list(channels)
                    )
            return
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise _fail("norm_num_groups", "a positive int or null", groups)
        users += [("conv_norm_out", channels[0])] + ([("mid_block", channels[-1])] if self.mid_block_type else [])
        for where, c in users:
            if c % groups:
                raise ValueError(f"norm_num_groups: {groups} must divide the channels of {where} ({c}); block_out_channels is {list(channels)}")
        for i, kind in enumerate(down + up):
            c = channels[i] if i < len(down) else channels[len(down) * 2 - 1 - i]
            if kind in _K_BLOCKS and c < _K_GROUP_SIZE:
                raise _fail("block_out_channels", f"at least {_K_GROUP_SIZE} channels at the levels of {kind} (it uses C // 32 groups)", list(channels))
            if kind in ("AttnSkipDownBlock2D", "AttnSkipUpBlock2D") and c % 32:
                raise _fail("block_out_channels", f"multiples of 32 at the levels of {kind} (its attention norm has 32 groups)", list(channels))

    def _validate_attention(self, down: tuple[str, ...], up: tuple[str, ...]) -> None:
        head = self.attention_head_dim
        if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 1):
            raise _fail("attention_head_dim", "a positive int or null", head)
        channels = self.block_out_channels
        widths = [channels[i] for i, kind in enumerate(down) if kind.startswith("Attn")]
        widths += [channels[-1 - i] for i, kind in enumerate(up) if kind.startswith("Attn")]
        if self.mid_block_type is not None and self.add_attention:
            widths.append(channels[-1])
            attn_groups = self.attn_norm_num_groups
            if attn_groups is not None and (isinstance(attn_groups, bool) or not isinstance(attn_groups, int) or attn_groups < 1 or channels[-1] % attn_groups):
                raise _fail("attn_norm_num_groups", f"null or a positive int dividing block_out_channels[-1] = {channels[-1]}", attn_groups)
        if head is not None and widths and head > min(widths):
            raise _fail("attention_head_dim", f"at most {min(widths)}, the fewest channels an attention layer has (else it has no heads)", head)

    def _validate_skip_paths(self, down: tuple[str, ...], up: tuple[str, ...]) -> None:
        last = len(down) - 1
        for i, kind in enumerate(down[:last]):
            if kind in _SKIP_DOWN:
                if any(k not in _SKIP_DOWN for k in down[:i]):
                    raise ValueError(
                        f"down_block_types: the skip block at entry {i} downsamples the input image, which only skip blocks before it "
                        f"downsample alongside the features; every earlier entry must be a skip block, got {list(self.down_block_types)}"
                    )
                if self.in_channels != 3:
                    raise _fail("in_channels", f"3: the downsampling skip block at down_block_types[{i}] reads an RGB input", self.in_channels)
        for i, kind in enumerate(up[:last]):
            if kind in _SKIP_UP:
                if any(k not in _SKIP_UP for k in up[i + 1 :]):
                    raise ValueError(
                        f"up_block_types: after the upsampling skip block at entry {i} every up block must be a skip block "
                        f"(each upsamples the running output image), got {list(self.up_block_types)}"
                    )
                if self.out_channels != 3:
                    raise _fail("out_channels", f"3: the skip block at up_block_types[{i}] adds an RGB output image", self.out_channels)
                break

    # ------------------------------------------------------------------------- forward

    def _down_block(self, i: int, kind: str, common: dict[str, Any]) -> nn.Module:
        channels = self.block_out_channels
        add = i < len(channels) - 1
        out = channels[i]
        if kind in _SKIP_DOWN:
            skip_common = {k: v for k, v in common.items() if k != "resnet_groups"}
            if kind == "AttnSkipDownBlock2D":
                return AttnSkipDownBlock2D(out, **skip_common, add_downsample=add, attention_head_dim=self.attention_head_dim, name=f"down_blocks_{i}")
            return SkipDownBlock2D(out, **skip_common, add_downsample=add, name=f"down_blocks_{i}")
        if kind == "KDownBlock2D":
            return KDownBlock2D(
                out,
                num_layers=self.layers_per_block,
                resnet_eps=self.norm_eps,
                dropout=self.dropout,
                resnet_act_fn=self.act_fn,
                add_downsample=add,
                dtype=self.dtype,
                name=f"down_blocks_{i}",
            )
        kwargs = dict(common, add_downsample=add, downsample_padding=self.downsample_padding, name=f"down_blocks_{i}")
        if kind == "AttnDownBlock2D":
            return AttnDownBlock2D(out, **kwargs, downsample_type=self.downsample_type, attention_head_dim=self.attention_head_dim)
        if kind == "ResnetDownsampleBlock2D":
            return ResnetDownsampleBlock2D(out, **kwargs)
        return DownBlock2D(out, **kwargs)

    def _up_block(self, i: int, kind: str, common: dict[str, Any]) -> nn.Module:
        reversed_channels = tuple(reversed(self.block_out_channels))
        add = i < len(reversed_channels) - 1
        out = reversed_channels[i]
        layers = self.layers_per_block + 1
        if kind in _SKIP_UP:
            skip_common = {k: v for k, v in common.items() if k not in ("resnet_groups", "num_layers")}
            if kind == "AttnSkipUpBlock2D":
                return AttnSkipUpBlock2D(
                    out, num_layers=layers, **skip_common, add_upsample=add, attention_head_dim=self.attention_head_dim, name=f"up_blocks_{i}"
                )
            return SkipUpBlock2D(out, num_layers=layers, **skip_common, add_upsample=add, name=f"up_blocks_{i}")
        if kind == "KUpBlock2D":
            final = reversed_channels[min(i + 1, len(reversed_channels) - 1)]
            return KUpBlock2D(
                out,
                num_layers=self.layers_per_block,
                resnet_eps=self.norm_eps,
                dropout=self.dropout,
                resnet_act_fn=self.act_fn,
                final_channels=final,
                add_upsample=add,
                dtype=self.dtype,
                name=f"up_blocks_{i}",
            )
        kwargs = dict(common, num_layers=layers, add_upsample=add, name=f"up_blocks_{i}")
        if kind == "AttnUpBlock2D":
            return AttnUpBlock2D(out, **kwargs, upsample_type=self.upsample_type, attention_head_dim=self.attention_head_dim)
        if kind == "ResnetUpsampleBlock2D":
            return ResnetUpsampleBlock2D(out, **kwargs)
        return UpBlock2D(out, **kwargs)

    def _embed_time(self, timesteps: jax.Array) -> tuple[jax.Array, Any]:
        """The features of the time projection ``time_proj`` and the projection itself (for class labels)."""
        c0 = self.block_out_channels[0]
        if self.time_embedding_type == "fourier":
            proj: Any = GaussianFourierProjection(c0, name="time_proj")
        elif self.time_embedding_type == "learned":
            assert self.num_train_timesteps is not None  # validate() checked it
            proj = nn.Embed(self.num_train_timesteps, c0, dtype=jnp.float32, name="time_proj")
        else:
            proj = lambda t: timestep_embedding(t, c0, self.flip_sin_to_cos, self.freq_shift)
        return proj(self._time_input(timesteps, "timesteps")), proj

    def _time_input(self, t: jax.Array, key: str) -> jax.Array:
        if self.time_embedding_type != "learned":
            return t
        if not jnp.issubdtype(t.dtype, jnp.integer):
            raise ValueError(f"{key}: the learned time embedding indexes a table; expected integers, got dtype {t.dtype}")
        return t

    def _embed_class(self, class_labels: jax.Array | None, proj: Any, b: int) -> jax.Array | None:
        if not self.has_class_embedding():
            if class_labels is not None:
                raise ValueError("class_labels: this UNet2DModel has no class embedding (class_embed_type and num_class_embeds are null)")
            return None
        if class_labels is None:
            raise ValueError("class_labels: needed by the class embedding of this UNet2DModel")
        if self.class_embed_type == "identity":
            chex.assert_shape(class_labels, (b, self.time_embed_dim))
            return class_labels.astype(self.dtype)
        chex.assert_shape(class_labels, (b,))
        if self.class_embed_type == "timestep":
            features = proj(self._time_input(class_labels, "class_labels")).astype(self.dtype)
            return TimestepEmbedding(self.time_embed_dim, self.dtype, name="class_embedding")(features)
        assert self.num_class_embeds is not None
        return nn.Embed(self.num_class_embeds, self.time_embed_dim, dtype=self.dtype, name="class_embedding")(class_labels)

    @nn.compact
    def __call__(self, sample: jax.Array, timesteps: jax.Array, class_labels: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        """Predicts the noise (or score, or sample) for ``sample`` at ``timesteps``.

        Args:
          sample: ``[B, H, W, in_channels]``; H and W multiples of
            :attr:`downsampling_factor`.
          timesteps: ``[B]`` or a scalar: diffusion steps (integers for the learned
            embedding), or noise levels ``sigma > 0`` for the Fourier embedding.
          class_labels: ``[B]`` labels (integers for a ``num_class_embeds`` table), or
            ``[B, time_embed_dim]`` vectors for ``class_embed_type="identity"``; None
            without a class embedding.
          train: enable dropout (needs a ``'dropout'`` rng when ``dropout > 0``).

        Returns:
          ``[B, H, W, out_channels]``.
        """
        down, up = self.validate()
        chex.assert_rank(sample, 4)
        chex.assert_axis_dimension(sample, 3, self.in_channels)
        b, height, width, _ = sample.shape
        f = self.downsampling_factor
        if height % f or width % f:
            raise ValueError(f"sample: height and width must be multiples of {f}, got {(height, width)}")
        timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (b,))
        deterministic = not train
        channels = self.block_out_channels

        x = sample.astype(self.dtype)
        if self.center_input_sample:
            x = 2 * x - 1.0
        t_features, proj = self._embed_time(timesteps)
        temb = TimestepEmbedding(self.time_embed_dim, self.dtype, name="time_embedding")(t_features.astype(self.dtype))
        class_emb = self._embed_class(class_labels, proj, b)
        if class_emb is not None:
            temb = temb + class_emb

        common: dict[str, Any] = dict(
            num_layers=self.layers_per_block,
            resnet_eps=self.norm_eps,
            resnet_groups=self.norm_num_groups,
            resnet_time_scale_shift=self.resnet_time_scale_shift,
            dropout=self.dropout,
            resnet_act_fn=self.act_fn,
            dtype=self.dtype,
        )
        skip_sample: jax.Array | None = x
        x = _conv(channels[0], 3, "conv_in", self.dtype)(x)
        states: list[jax.Array] = [x]
        for i, kind in enumerate(down):
            block = self._down_block(i, kind, common)
            if kind in _SKIP_DOWN:
                x, new_states, skip_sample = block(x, temb, skip_sample, deterministic=deterministic)
            else:
                x, new_states = block(x, temb, deterministic=deterministic)
            states.extend(new_states)

        if self.mid_block_type is not None:
            mid_groups = self.norm_num_groups or _skip_groups(channels[-1])
            x = UNetMidBlock2D(
                channels[-1],
                resnet_eps=self.norm_eps,
                resnet_groups=mid_groups,
                resnet_time_scale_shift=self.resnet_time_scale_shift,
                output_scale_factor=self.mid_block_scale_factor,
                dropout=self.dropout,
                resnet_act_fn=self.act_fn,
                attention_head_dim=self.attention_head_dim or channels[-1],
                add_attention=self.add_attention,
                attn_groups=self.attn_norm_num_groups,
                dtype=self.dtype,
                name="mid_block",
            )(x, temb, deterministic=deterministic)

        skip_sample = None
        for i, kind in enumerate(up):
            block = self._up_block(i, kind, common)
            n = self.layers_per_block if kind == "KUpBlock2D" else self.layers_per_block + 1
            skips, states = states[-n:], states[:-n]
            if kind in _SKIP_UP:
                x, skip_sample = block(x, skips, temb, skip_sample, deterministic=deterministic)
            else:
                x = block(x, skips, temb, deterministic=deterministic)

        out_groups = self.norm_num_groups or _skip_groups(channels[0])
        x = nn.silu(_group_norm(out_groups, self.norm_eps, "conv_norm_out", self.dtype)(x))
        x = _conv(self.out_channels, 3, "conv_out", self.dtype)(x)
        if skip_sample is not None:
            x = x + skip_sample
        if self.time_embedding_type == "fourier":
            x = x / timesteps.astype(x.dtype)[:, None, None, None]
        chex.assert_shape(x, (b, height, width, self.out_channels))
        return x
