"""The DDPM U-Net noise-prediction network (Ho, Jain & Abbeel 2020), NHWC, Flax Linen.

This follows Appendix B of "Denoising Diffusion Probabilistic Models" (arXiv
2006.11239) and the authors' TensorFlow reference implementation: a PixelCNN++-style
U-Net of wide residual blocks with GroupNorm, a sinusoidal time embedding fed to every
residual block, single-head self-attention at chosen resolutions (16x16 for CIFAR-10),
and zero-initialised output layers. The preset :data:`ddpm_cifar10` is the paper's
CIFAR-10 network (35,746,307 parameters on 32x32x3 inputs).

Conventions matched to the reference (and to diffusers' ``UNet2DModel`` with the
``google/ddpm-cifar10-32`` config, whose weights were converted from it):

* time embedding: :func:`sinusoidal_embedding` (``[sin | cos]``, frequencies
  ``exp(-log(10000) * i / (half - 1))``; diffusers ``flip_sin_to_cos=False``,
  ``freq_shift=1``), then ``Dense(4 ch) -> swish -> Dense(4 ch)``;
* GroupNorm with epsilon 1e-6 and a learned scale and bias;
* stride-2 downsampling convolutions pad one row/column at the bottom/right only
  (TensorFlow ``SAME``; diffusers ``downsample_padding=0``);
* upsampling is nearest-neighbour x2 followed by a 3x3 convolution;
* 1x1 ``nin_shortcut`` in a residual block only when its channel count changes;
* the second convolution of every residual block, every attention ``proj_out`` and
  ``conv_out`` start at zero, so the untrained network outputs exactly zero; all other
  kernels use the reference's ``variance_scaling(1, "fan_avg", "uniform")`` and zero
  biases.

Parameter names (for weight importers). Top level: ``time_embed_0``/``time_embed_1``
(diffusers ``time_embedding.linear_1``/``linear_2``), ``label_embed`` (class
embedding, only when ``num_classes > 0``), ``conv_in``, ``norm_out``
(``conv_norm_out``), ``conv_out``. Level ``i`` of the down path (``i = 0`` is the
full resolution): ``down_{i}_res_{j}``, ``down_{i}_attn_{j}``, ``down_{i}_downsample``
(diffusers ``down_blocks.{i}.resnets.{j}``, ``.attentions.{j}``,
``.downsamplers.0``). The middle: ``mid_res_0``, ``mid_attn``, ``mid_res_1``
(``mid_block.resnets.0``, ``.attentions.0``, ``.resnets.1``). The up path is indexed
by the *level* it works at, as in the reference TF code, so ``up_{i}_*`` corresponds
to diffusers ``up_blocks.{L-1-i}`` with ``L = len(ch_mult)``: ``up_{i}_res_{j}``
(``j < num_res_blocks + 1``), ``up_{i}_attn_{j}``, ``up_{i}_upsample``
(``.upsamplers.0``). Inside a :class:`ResBlock`: ``norm1``, ``conv1``, ``temb_proj``
(``time_emb_proj``), ``norm2``, ``conv2``, ``nin_shortcut`` (``conv_shortcut``, a 1x1
conv in diffusers, a Dense here). Inside an :class:`AttentionBlock`: ``norm``
(``group_norm``), ``q``/``k``/``v`` (``to_q``/``to_k``/``to_v``), ``proj_out``
(``to_out.0``). Resamplers hold a single ``conv``. Dense kernels are ``[in, out]`` and
conv kernels ``[kh, kw, in, out]`` (PyTorch stores ``[out, in(, kh, kw)]``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "AttentionBlock",
    "Downsample",
    "ResBlock",
    "UNet",
    "Upsample",
    "ddpm_cifar10",
    "sinusoidal_embedding",
    "unet_tiny",
]

Dtype = Any

# The reference's default initialiser (``default_init`` with scale 1).
_default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
_zeros = nn.initializers.zeros_init()
_GN_EPSILON = 1e-6


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Transformer-style sinusoidal embedding of (possibly non-integer) timesteps.

    This is the DDPM reference convention (Ho et al. 2020, arXiv 2006.11239, Appendix
    B; ``get_timestep_embedding`` in the authors' code): with ``half = dim // 2`` and
    frequencies ``f_i = exp(-log(max_period) * i / (half - 1))`` for ``i < half``, the
    embedding is ``[sin(t f_0), ..., sin(t f_{half-1}), cos(t f_0), ..., cos(t
    f_{half-1})]``, zero-padded by one column when ``dim`` is odd. It equals diffusers'
    ``get_timestep_embedding(t, dim, flip_sin_to_cos=False, downscale_freq_shift=1)``.
    Note the ``half - 1`` denominator (so the lowest frequency is exactly
    ``1/max_period``), unlike the ``half`` used by some later codebases.

    Args:
      t: ``[B]`` timesteps, integer or float.
      dim: embedding width, at least 4.
      max_period: the longest period, 10000 in the paper.

    Returns:
      ``[B, dim]`` float32 embedding.

    Raises:
      ValueError: if ``t`` is not one-dimensional or ``dim < 4``.
    """
    t = jnp.asarray(t)
    if t.ndim != 1:
        raise ValueError(f"t: expected shape [B] (one timestep per example), got {t.shape}")
    if dim < 4:
        raise ValueError(f"dim: the sinusoidal embedding needs dim >= 4, got {dim}")
    half = dim // 2
    exponent = -math.log(max_period) / (half - 1)
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * exponent)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def _group_norm(num_groups: int, dtype: Dtype, name: str) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=num_groups, epsilon=_GN_EPSILON, dtype=dtype, name=name)


def _conv3x3(features: int, dtype: Dtype, name: str, *, zero_init: bool = False) -> nn.Conv:
    return nn.Conv(
        features,
        (3, 3),
        padding=((1, 1), (1, 1)),
        kernel_init=_zeros if zero_init else _default_init,
        dtype=dtype,
        name=name,
    )


class ResBlock(nn.Module):
    """DDPM wide residual block with an additive time-embedding projection.

    ``h = conv1(swish(norm1(x))) + temb_proj(swish(temb))``, then
    ``h = conv2(dropout(swish(norm2(h))))`` with ``conv2`` zero-initialised; the
    output is ``shortcut(x) + h``, where ``shortcut`` is a 1x1 projection
    (``nin_shortcut``) only when the channel count changes (arXiv 2006.11239,
    Appendix B).

    Attributes:
      out_channels: output channels.
      dropout: dropout rate before ``conv2`` (active only when ``train=True``).
      num_groups: GroupNorm groups.
      dtype: computation dtype.
    """

    out_channels: int
    dropout: float = 0.0
    num_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, *, train: bool = False) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]`` given ``temb`` ``[B, D]``."""
        chex.assert_rank(x, 4)
        chex.assert_rank(temb, 2)
        h = nn.swish(_group_norm(self.num_groups, self.dtype, "norm1")(x))
        h = _conv3x3(self.out_channels, self.dtype, "conv1")(h)
        temb_out = nn.Dense(self.out_channels, kernel_init=_default_init, dtype=self.dtype, name="temb_proj")(nn.swish(temb))
        h = h + temb_out[:, None, None, :]
        h = nn.swish(_group_norm(self.num_groups, self.dtype, "norm2")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv3x3(self.out_channels, self.dtype, "conv2", zero_init=True)(h)
        if x.shape[-1] != self.out_channels:
            x = nn.Dense(self.out_channels, kernel_init=_default_init, dtype=self.dtype, name="nin_shortcut")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all ``H * W`` positions, with a residual.

    GroupNorm, 1x1 ``q``/``k``/``v`` projections, ``softmax(q k^T / sqrt(C)) v``,
    a zero-initialised 1x1 ``proj_out`` and ``x + out`` (arXiv 2006.11239, Appendix
    B). The logits and softmax are computed in float32 whatever ``dtype`` is.

    Attributes:
      num_groups: GroupNorm groups.
      dtype: computation dtype.
    """

    num_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the block to ``x`` ``[B, H, W, C]``."""
        chex.assert_rank(x, 4)
        b, height, width, c = x.shape
        h = _group_norm(self.num_groups, self.dtype, "norm")(x)

        def proj(name: str, init: Any = _default_init) -> nn.Dense:
            return nn.Dense(c, kernel_init=init, dtype=self.dtype, name=name)

        q = proj("q")(h).reshape(b, height * width, c)
        k = proj("k")(h).reshape(b, height * width, c)
        v = proj("v")(h).reshape(b, height * width, c)
        logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32)
        logits = logits * (c**-0.5)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bqk,bkc->bqc", weights, v).reshape(b, height, width, c)
        return x + proj("proj_out", _zeros)(out)


class Downsample(nn.Module):
    """Halves the resolution: a stride-2 3x3 conv or a 2x2 average pool.

    The conv pads one row and column at the bottom/right only, the reference's
    TensorFlow ``SAME`` padding for even sizes (diffusers ``downsample_padding=0``).

    Attributes:
      with_conv: use the strided conv (else average pooling, no parameters).
      dtype: computation dtype.
    """

    with_conv: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, H/2, W/2, C]`` (``H`` and ``W`` even)."""
        if self.with_conv:
            return nn.Conv(
                x.shape[-1],
                (3, 3),
                strides=(2, 2),
                padding=((0, 1), (0, 1)),
                kernel_init=_default_init,
                dtype=self.dtype,
                name="conv",
            )(x)
        return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class Upsample(nn.Module):
    """Doubles the resolution: nearest-neighbour x2, then (optionally) a 3x3 conv.

    Attributes:
      with_conv: apply the 3x3 conv after resizing.
      dtype: computation dtype.
    """

    with_conv: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, 2H, 2W, C]``."""
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        if self.with_conv:
            x = _conv3x3(x.shape[-1], self.dtype, "conv")(x)
        return x


class UNet(nn.Module):
    """The DDPM noise-prediction U-Net (Ho et al. 2020, arXiv 2006.11239, Appendix B).

    ``len(ch_mult)`` resolution levels; level ``i`` has ``num_res_blocks``
    :class:`ResBlock` s of width ``ch * ch_mult[i]`` on the way down (each followed
    by an :class:`AttentionBlock` when the current height is in
    ``attn_resolutions``) and ``num_res_blocks + 1`` on the way up, which consume the
    skip connections; every level but the last halves the resolution. The middle is
    ResBlock, attention, ResBlock. See the module docstring for parameter names and
    the reference conventions followed.

    Attributes:
      out_channels: output channels; ``None`` for the input's channel count (predict
        the noise), ``2 * C`` for learned variances.
      ch: base channel count (at least 4).
      ch_mult: per-level channel multipliers, full resolution first.
      num_res_blocks: residual blocks per level on the down path.
      attn_resolutions: heights at which attention follows each residual block.
      dropout: dropout rate in ``[0, 1)`` inside the residual blocks, active only with
        ``train=True`` and drawn from the ``'dropout'`` rng stream.
      num_groups: GroupNorm groups; every ``ch * m`` must be divisible by it.
      num_classes: when positive, the model is class-conditional: a learned label
        embedding ``label_embed`` is added to the time embedding and ``y`` is
        required.
      resample_with_conv: strided conv / conv after upsampling (else average pooling
        and plain nearest-neighbour upsampling).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters are always float32
        and the output is float32.
    """

    out_channels: int | None = None
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_groups: int = 32
    num_classes: int = 0
    resample_with_conv: bool = True
    dtype: Dtype = jnp.float32

    def _check_config(self) -> None:
        if len(self.ch_mult) == 0:
            raise ValueError("ch_mult: need at least one resolution level, got ()")
        if any(m <= 0 for m in self.ch_mult):
            raise ValueError(f"ch_mult: multipliers must be positive, got {self.ch_mult}")
        if self.ch < 4:
            raise ValueError(f"ch: must be >= 4 (it is the time-embedding width), got {self.ch}")
        if self.num_res_blocks <= 0:
            raise ValueError(f"num_res_blocks: must be >= 1, got {self.num_res_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.num_groups <= 0:
            raise ValueError(f"num_groups: must be >= 1, got {self.num_groups}")
        bad = sorted({self.ch * m for m in self.ch_mult if (self.ch * m) % self.num_groups})
        if bad:
            raise ValueError(f"num_groups: every level width ch * ch_mult[i] must be divisible by num_groups={self.num_groups}; {bad} are not")
        if self.num_classes < 0:
            raise ValueError(f"num_classes: must be >= 0, got {self.num_classes}")
        if self.out_channels is not None and self.out_channels <= 0:
            raise ValueError(f"out_channels: must be positive or None, got {self.out_channels}")

    def _check_inputs(self, x: jax.Array, t: jax.Array, y: jax.Array | None) -> None:
        if x.ndim != 4:
            raise ValueError(f"x: expected an NHWC image batch [B, H, W, C], got shape {x.shape}")
        b, height, width, _ = x.shape
        factor = 2 ** (len(self.ch_mult) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"x: image height and width must be multiples of 2**(len(ch_mult) - 1) = "
                f"{factor} (e.g. {factor}, {2 * factor}, {4 * factor}, ...); got image shape "
                f"{height}x{width} (x.shape={x.shape})"
            )
        if t.shape != (b,):
            raise ValueError(f"t: expected shape [B] = ({b},), got {t.shape}")
        if self.num_classes > 0:
            if y is None:
                raise ValueError(f"y: class labels of shape [B] are required when num_classes={self.num_classes} > 0")
            if y.shape != (b,):
                raise ValueError(f"y: expected shape [B] = ({b},), got {y.shape}")
            if not jnp.issubdtype(y.dtype, jnp.integer):
                raise ValueError(f"y: expected integer labels, got dtype {y.dtype}")
        elif y is not None:
            raise ValueError("y: labels given to an unconditional model (num_classes=0); pass None")

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        y: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        """Predicts ``[B, H, W, out_channels]`` (float32) from noisy images and timesteps.

        Args:
          x: ``[B, H, W, C]`` images; ``H`` and ``W`` multiples of
            ``2**(len(ch_mult) - 1)``.
          t: ``[B]`` timesteps, integer or float (non-integer values are fine).
          y: ``[B]`` integer labels in ``[0, num_classes)``, required iff
            ``num_classes > 0`` (not range-checked: values outside are clipped by
            the embedding lookup).
          train: enable dropout (needs a ``'dropout'`` rng).

        Returns:
          ``[B, H, W, out_channels]`` float32 output.

        Raises:
          ValueError: on an invalid configuration or input shapes.
        """
        self._check_config()
        x = jnp.asarray(x)
        t = jnp.asarray(t)
        y = None if y is None else jnp.asarray(y)
        self._check_inputs(x, t, y)
        b, height, width, in_channels = x.shape
        out_channels = in_channels if self.out_channels is None else self.out_channels
        num_levels = len(self.ch_mult)
        temb_dim = 4 * self.ch

        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(features, kernel_init=_default_init, dtype=self.dtype, name=name)

        def res_block(features: int, name: str) -> ResBlock:
            return ResBlock(features, self.dropout, self.num_groups, self.dtype, name=name)

        def attn_block(name: str) -> AttentionBlock:
            return AttentionBlock(self.num_groups, self.dtype, name=name)

        # Time (and label) embedding.
        temb = sinusoidal_embedding(t, self.ch)
        temb = dense(temb_dim, "time_embed_0")(temb)
        temb = dense(temb_dim, "time_embed_1")(nn.swish(temb))
        if self.num_classes > 0:
            temb = temb + nn.Embed(self.num_classes, temb_dim, dtype=self.dtype, name="label_embed")(y)

        # Down path.
        h = _conv3x3(self.ch, self.dtype, "conv_in")(x.astype(self.dtype))
        skips = [h]
        for i, mult in enumerate(self.ch_mult):
            for j in range(self.num_res_blocks):
                h = res_block(self.ch * mult, f"down_{i}_res_{j}")(h, temb, train=train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn_block(f"down_{i}_attn_{j}")(h)
                skips.append(h)
            if i != num_levels - 1:
                h = Downsample(self.resample_with_conv, self.dtype, name=f"down_{i}_downsample")(h)
                skips.append(h)

        # Middle.
        h = res_block(h.shape[-1], "mid_res_0")(h, temb, train=train)
        h = attn_block("mid_attn")(h)
        h = res_block(h.shape[-1], "mid_res_1")(h, temb, train=train)

        # Up path (indexed by level, as in the reference).
        for i in reversed(range(num_levels)):
            for j in range(self.num_res_blocks + 1):
                skip = skips.pop()
                chex.assert_equal_shape_prefix([h, skip], 3)
                h = jnp.concatenate([h, skip], axis=-1)
                h = res_block(self.ch * self.ch_mult[i], f"up_{i}_res_{j}")(h, temb, train=train)
                if h.shape[1] in self.attn_resolutions:
                    h = attn_block(f"up_{i}_attn_{j}")(h)
            if i != 0:
                h = Upsample(self.resample_with_conv, self.dtype, name=f"up_{i}_upsample")(h)
        assert not skips, "internal error: unused skip connections"

        # Output head.
        h = nn.swish(_group_norm(self.num_groups, self.dtype, "norm_out")(h))
        h = _conv3x3(out_channels, self.dtype, "conv_out", zero_init=True)(h)
        chex.assert_shape(h, (b, height, width, out_channels))
        return h.astype(jnp.float32)


#: The paper's CIFAR-10 network (35.7M parameters on 32x32x3; arXiv 2006.11239, App. B).
ddpm_cifar10 = functools.partial(UNet, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1)

#: A tiny two-level U-Net for tests (8x8 inputs; attention at 4x4).
unet_tiny = functools.partial(
    UNet,
    ch=8,
    ch_mult=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(4,),
    dropout=0.0,
    num_groups=4,
)
