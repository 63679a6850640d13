"""Stable Diffusion's networks (Rombach et al. 2022) in Flax Linen, NHWC.

"High-Resolution Image Synthesis with Latent Diffusion Models" (Rombach, Blattmann,
Lorenz, Esser & Ommer 2022, arXiv 2112.10752) trains a diffusion model in the latent
space of a KL-regularised autoencoder (Section 3.1, Appendix G: :class:`AutoencoderKL`)
with a U-Net denoiser conditioned through cross-attention on the output sequence of a
domain-specific encoder (Section 3.3: :class:`UNet2DConditionModel`). This module
mirrors the module trees of Hugging Face diffusers' ``AutoencoderKL`` and
``UNet2DConditionModel`` so that their checkpoints (Stable Diffusion v1.x/v2.x and
their fine-tunes) map mechanically onto these modules; :mod:`genjax.nn.sd_import`
converts the weights both ways.

Parameter-name correspondence. Every Flax submodule has the name of the diffusers
attribute it mirrors, with a diffusers ``nn.ModuleList``/``nn.Sequential`` element
``<list>.<i>`` named ``<list>_<i>``: ``down_blocks_1/resnets_0/conv1/kernel`` is
diffusers' ``down_blocks.1.resnets.0.conv1.weight``. The list names are
``down_blocks``, ``up_blocks``, ``resnets``, ``attentions``, ``downsamplers``,
``upsamplers``, ``transformer_blocks``, ``to_out`` and ``net`` (the feed-forward's
``ff.net.0.proj`` / ``ff.net.2``); all other names, ``time_embedding/linear_1``
included, are diffusers' own. Leaves: a Flax ``kernel`` is a PyTorch ``weight``
(convolutions ``[kh, kw, in, out]`` here, ``[out, in, kh, kw]`` there, 1x1
convolutions included; ``Linear`` ``[in, out]`` here, ``[out, in]`` there), a norm's
``scale`` is its ``weight``, ``bias`` is ``bias``. Diffusers' up path is indexed from
the lowest resolution (``up_blocks.0`` works at the coarsest level) and genjax keeps
that order.

The text-free conditioning path. :class:`UNet2DConditionModel` takes the conditioning
sequence ``encoder_hidden_states [B, L, cross_attention_dim]`` directly, so any
encoder's output sequence can be plugged in (the paper's domain-specific encoder
``tau_theta``, Section 3.3). Stable Diffusion v1.x was trained with the last hidden
state (after the final layer norm, ``L = 77`` tokens) of the CLIP ViT-L/14 text model
(``openai/clip-vit-large-patch14``, width 768 = ``cross_attention_dim``); SD 2.x uses
the penultimate layer of OpenCLIP ViT-H/14's text tower (width 1024, with
``attention_head_dim=(5, 10, 20, 20)`` and ``use_linear_projection=True``); other
latent-diffusion models use T5 encoders (e.g. T5-XXL, width 4096) or the paper's own
BERT-style transformer. Compute that sequence with the encoder of your choice (for
example transformers' ``FlaxCLIPTextModel(...).last_hidden_state``, or a genjax
module), keep it fixed or train it jointly, and pass it as ``encoder_hidden_states``;
classifier-free guidance runs the U-Net on the prompt's sequence and on the empty
prompt's.

Conventions: images are NHWC; timesteps are ``[B]`` (a scalar is broadcast); the VAE
returns the Gaussian posterior's ``(mean, logvar)`` with ``logvar`` clipped to
``[-30, 20]`` as diffusers' ``DiagonalGaussianDistribution``; ``scaling_factor``
(0.18215 for SD v1.5) is a field for callers to apply to latents, never applied inside
``encode``/``decode``. Parameters are float32; ``dtype`` is the computation dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Attention",
    "AutoencoderKL",
    "BasicTransformerBlock",
    "CrossAttnDownBlock2D",
    "CrossAttnUpBlock2D",
    "Decoder",
    "DownBlock2D",
    "DownEncoderBlock2D",
    "Downsample2D",
    "Encoder",
    "FeedForward",
    "LabelContextUNet",
    "ResnetBlock2D",
    "ResnetBlockFields",
    "TimestepEmbedding",
    "Transformer2DModel",
    "UNet2DConditionModel",
    "UNetMidBlock2D",
    "UNetMidBlock2DCrossAttn",
    "UpBlock2D",
    "UpDecoderBlock2D",
    "Upsample2D",
    "activation",
    "attention_block",
    "avg_pool_2x",
    "fir_downsample_2x",
    "fir_upsample_2x",
    "nearest_upsample_2x",
    "sd15_unet",
    "sd15_vae",
    "sd_unet_tiny",
    "sd_vae_tiny",
    "timestep_embedding",
]

Dtype = Any
TimeEmbeddingNorm = Literal["default", "scale_shift"]

# Names of diffusers nn.ModuleList / nn.Sequential attributes: a Flax submodule named
# f"{list}_{i}" stands for diffusers' f"{list}.{i}" (genjax.nn.sd_import relies on this).
MODULE_LIST_NAMES = frozenset({"down_blocks", "up_blocks", "resnets", "attentions", "downsamplers", "upsamplers", "transformer_blocks", "to_out", "net"})

UNET_DOWN_BLOCK_TYPES = ("DownBlock2D", "CrossAttnDownBlock2D")
UNET_UP_BLOCK_TYPES = ("UpBlock2D", "CrossAttnUpBlock2D")
UNET_MID_BLOCK_TYPES = ("UNetMidBlock2DCrossAttn", None)
VAE_DOWN_BLOCK_TYPES = ("DownEncoderBlock2D",)
VAE_UP_BLOCK_TYPES = ("UpDecoderBlock2D",)


def _conv(features: int, kernel: int, name: str, dtype: Dtype, stride: int = 1, padding: int | None = None) -> nn.Conv:
    pad = (kernel - 1) // 2 if padding is None else padding
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)), dtype=dtype, name=name)


def _group_norm(groups: int, eps: float, name: str, dtype: Dtype) -> nn.GroupNorm:
    # Two-pass variance, as torch.nn.GroupNorm, for bitwise-close parity.
    return nn.GroupNorm(num_groups=groups, epsilon=eps, use_fast_variance=False, dtype=dtype, name=name)


def _per_block(value: int | Sequence[int], num_blocks: int, name: str) -> tuple[int, ...]:
    values = (value,) * num_blocks if isinstance(value, int) else tuple(value)
    if len(values) != num_blocks:
        raise ValueError(f"{name}: expected an int or {num_blocks} values (one per block), got {value!r}")
    return values


# diffusers' get_activation (names are case-insensitive there too).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "swish": nn.silu,
    "silu": nn.silu,
    "mish": jax.nn.mish,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "relu": jax.nn.relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation diffusers' ``get_activation(name)`` builds (``torch.nn.SiLU``, ...).

    Args:
      name: ``"swish"``/``"silu"`` (SiLU), ``"mish"``, ``"gelu"`` (exact, erf-based) or
        ``"relu"``, in any letter case.

    Returns:
      The elementwise function.

    Raises:
      ValueError: for any other name.
    """
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"act_fn: expected one of {sorted(ACTIVATIONS)} (any case), got {name!r}")
    return ACTIVATIONS[name.lower()]


def avg_pool_2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling with stride 2 (diffusers' ``Downsample2D(use_conv=False)``) of ``[B, H, W, C]``."""
    chex.assert_rank(x, 4)
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def nearest_upsample_2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling (diffusers' ``Upsample2D(use_conv=False)``) of ``[B, H, W, C]``."""
    chex.assert_rank(x, 4)
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


# The binomial FIR filter [1, 3, 3, 1] of StyleGAN2 / NCSN++ resampling (diffusers' fir_kernel).
_FIR_TAPS = np.array([1.0, 3.0, 3.0, 1.0])


def _fir(x: jax.Array, gain: float, up: int, down: int, reflect: bool) -> jax.Array:
    """Depthwise ``upfirdn`` with one pixel of padding: pad, zero-insert by ``up``, filter, stride ``down``."""
    kernel = np.outer(_FIR_TAPS, _FIR_TAPS)
    kernel = np.flip(kernel * gain / kernel.sum())  # upfirdn convolves; lax correlates
    channels = x.shape[-1]
    weights = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), dtype=x.dtype)
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect" if reflect else "constant")
    return jax.lax.conv_general_dilated(
        x,
        weights,
        window_strides=(down, down),
        padding=((0, 0), (0, 0)),
        lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


def fir_downsample_2x(x: jax.Array, reflect: bool = False) -> jax.Array:
    """Halves ``[B, H, W, C]`` with the ``[1, 3, 3, 1]`` FIR filter (diffusers' ``downsample_2d``).

    The anti-aliased resampling of StyleGAN2 used by NCSN++ (Song et al. 2021, "Score-Based
    Generative Modeling through Stochastic Differential Equations", arXiv 2011.13456,
    Appendix H): filter ``k k^T / sum`` with ``k = [1, 3, 3, 1]`` and stride 2 after one
    pixel of zero padding on each side; with ``reflect``, reflection padding instead
    (diffusers' ``KDownsample2D`` of the k-diffusion blocks).

    Args:
      x: ``[B, H, W, C]`` with even H and W.
      reflect: pad by reflection instead of zeros.

    Returns:
      ``[B, H / 2, W / 2, C]``.
    """
    chex.assert_rank(x, 4)
    return _fir(x, gain=1.0, up=1, down=2, reflect=reflect)


def fir_upsample_2x(x: jax.Array, reflect: bool = False) -> jax.Array:
    """Doubles ``[B, H, W, C]`` with the ``[1, 3, 3, 1]`` FIR filter (diffusers' ``upsample_2d``).

    Zero-insertion upsampling followed by the filter ``4 k k^T / sum`` (gain
    ``factor**2`` keeps constant images constant), as in NCSN++ (Song et al. 2021, arXiv
    2011.13456); with ``reflect`` the input is first padded by reflection (diffusers'
    ``KUpsample2D``, a stride-2 transposed convolution with the same filter).

    Args:
      x: ``[B, H, W, C]``.
      reflect: pad by reflection instead of zeros.

    Returns:
      ``[B, 2H, 2W, C]``.
    """
    chex.assert_rank(x, 4)
    return _fir(x, gain=4.0, up=2, down=1, reflect=reflect)


def timestep_embedding(timesteps: jax.Array, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal timestep embedding, as diffusers' ``Timesteps`` / ``get_timestep_embedding``.

    The transformer position encoding used as the diffusion-time input of the DDPM
    U-Net (Ho et al. 2020) and of the latent-diffusion U-Net (Rombach et al. 2022,
    arXiv 2112.10752, Appendix E): frequencies ``exp(-log(max_period) * i / (half -
    freq_shift))`` for ``i < half = dim // 2``, features ``[sin | cos]`` (``[cos | sin]``
    with ``flip_sin_to_cos``), zero-padded to odd ``dim``.

    Args:
      timesteps: ``[B]`` diffusion times (integers or floats).
      dim: the embedding width.
      flip_sin_to_cos: put the cosines first (Stable Diffusion: True).
      freq_shift: diffusers' ``downscale_freq_shift`` (Stable Diffusion: 0).
      max_period: the longest period.

    Returns:
      ``[B, dim]`` float32 embeddings.
    """
    chex.assert_rank(timesteps, 1)
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    args = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    sin, cos = jnp.sin(args), jnp.cos(args)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nn.Module):
    """Diffusers' ``TimestepEmbedding``: ``linear_1 -> SiLU -> linear_2``.

    Attributes:
      time_embed_dim: output width (``4 * block_out_channels[0]`` in Stable Diffusion).
      dtype: computation dtype.
    """

    time_embed_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t_emb: jax.Array) -> jax.Array:
        """Maps ``[B, D]`` sinusoidal features to ``[B, time_embed_dim]``."""
        chex.assert_rank(t_emb, 2)
        h = nn.Dense(self.time_embed_dim, dtype=self.dtype, name="linear_1")(t_emb)
        return nn.Dense(self.time_embed_dim, dtype=self.dtype, name="linear_2")(nn.silu(h))


class ResnetBlock2D(nn.Module):
    """Diffusers' ``ResnetBlock2D``: the residual block of the DDPM / LDM U-Nets and autoencoder.

    ``GroupNorm -> act -> [resample] -> conv3x3 (+ projected time embedding) -> GroupNorm
    -> act -> dropout -> conv3x3``, plus the input (resampled the same way, and through a
    1x1 ``conv_shortcut`` when the channel count changes or ``use_in_shortcut``),
    divided by ``output_scale_factor`` (the BigGAN-style residual block of Ho et al.
    2020, arXiv 2006.11239, and Rombach et al. 2022, arXiv 2112.10752, Appendix E). With
    ``time_embedding_norm="scale_shift"`` the time embedding gives ``(scale, shift)``
    applied after the second norm as ``h * (1 + scale) + shift``. With ``up``/``down``
    the block resamples by 2 after the first activation: nearest-neighbour / 2x2
    average pooling, or the ``[1, 3, 3, 1]`` FIR filter with ``fir`` (the NCSN++
    residual blocks of Song et al. 2021, arXiv 2011.13456).

    Attributes:
      out_channels: output channels.
      groups: GroupNorm groups of ``norm1`` (and ``norm2`` unless ``groups_out``).
      groups_out: GroupNorm groups of ``norm2`` (default: ``groups``).
      eps: GroupNorm epsilon.
      dropout: dropout rate before ``conv2`` (active only with ``deterministic=False``).
      time_embedding_norm: ``"default"`` (add) or ``"scale_shift"``.
      output_scale_factor: divides the residual sum.
      skip_time_act: do not apply the activation to the time embedding before ``time_emb_proj``.
      act_fn: the activation (a name :func:`activation` accepts).
      up: upsample by 2 (input and residual branch).
      down: downsample by 2 (input and residual branch).
      fir: resample with the FIR filter (diffusers' ``kernel="fir"``).
      use_in_shortcut: force (True) or forbid (False) the 1x1 shortcut; None: only when
        the channel count changes.
      dtype: computation dtype.
    """

    out_channels: int
    groups: int = 32
    groups_out: int | None = None
    eps: float = 1e-6
    dropout: float = 0.0
    time_embedding_norm: TimeEmbeddingNorm = "default"
    output_scale_factor: float = 1.0
    skip_time_act: bool = False
    act_fn: str = "silu"
    up: bool = False
    down: bool = False
    fir: bool = False
    use_in_shortcut: bool | None = None
    dtype: Dtype = jnp.float32

    def _resample(self, x: jax.Array) -> jax.Array:
        if self.up:
            return fir_upsample_2x(x) if self.fir else nearest_upsample_2x(x)
        if self.down:
            return fir_downsample_2x(x) if self.fir else avg_pool_2x(x)
        return x

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[B, H, W, C_in]`` (and ``temb [B, T]``) to ``[B, H', W', out_channels]`` (``H' = 2H``, ``H / 2`` or ``H``)."""
        chex.assert_rank(x, 4)
        if self.time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"time_embedding_norm: expected 'default' or 'scale_shift', got {self.time_embedding_norm!r}")
        if self.up and self.down:
            raise ValueError("up, down: a block resamples one way at most")
        act = activation(self.act_fn)
        h = act(_group_norm(self.groups, self.eps, "norm1", self.dtype)(x))
        x, h = self._resample(x), self._resample(h)
        h = _conv(self.out_channels, 3, "conv1", self.dtype)(h)
        norm2 = _group_norm(self.groups_out or self.groups, self.eps, "norm2", self.dtype)
        if temb is not None:
            chex.assert_rank(temb, 2)
            width = self.out_channels * (2 if self.time_embedding_norm == "scale_shift" else 1)
            t = nn.Dense(width, dtype=self.dtype, name="time_emb_proj")(temb if self.skip_time_act else act(temb))[:, None, None, :]
            if self.time_embedding_norm == "default":
                h = norm2(h + t)
            else:
                scale, shift = jnp.split(t, 2, axis=-1)
                h = norm2(h) * (1 + scale) + shift
        else:
            if self.time_embedding_norm == "scale_shift":
                raise ValueError("temb: needed when time_embedding_norm='scale_shift'")
            h = norm2(h)
        h = nn.Dropout(self.dropout, deterministic=deterministic)(act(h))
        h = _conv(self.out_channels, 3, "conv2", self.dtype)(h)
        shortcut = x.shape[-1] != self.out_channels if self.use_in_shortcut is None else self.use_in_shortcut
        if shortcut:
            x = _conv(self.out_channels, 1, "conv_shortcut", self.dtype)(x)
        return (x + h) / self.output_scale_factor


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, heads: int) -> jax.Array:
    b, lq, inner = q.shape
    d = inner // heads
    q = q.reshape(b, lq, heads, d)
    k = k.reshape(b, k.shape[1], heads, d)
    v = v.reshape(b, v.shape[1], heads, d)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (d**-0.5)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, lq, inner)


class Attention(nn.Module):
    """Diffusers' ``Attention`` (multi-head scaled dot-product attention).

    ``to_q`` reads the (optionally group-normalised) input, ``to_k``/``to_v`` read
    ``encoder_hidden_states`` (cross-attention, Rombach et al. 2022, arXiv 2112.10752,
    Section 3.3, Eq. 3) or the input itself (self-attention); ``to_out.0`` projects back
    to the input width. With ``residual_connection`` the input is added and the sum
    divided by ``rescale_output_factor`` (the single-head attention of the autoencoder's
    middle block, Appendix G).

    Attributes:
      heads: number of heads.
      dim_head: width of one head (``inner = heads * dim_head``).
      bias: biases on ``to_q``/``to_k``/``to_v``.
      out_bias: bias on ``to_out.0``.
      norm_num_groups: groups of the input ``group_norm`` (None: no norm).
      eps: the ``group_norm`` epsilon.
      residual_connection: add the input to the output.
      rescale_output_factor: divides the output (after the residual).
      dtype: computation dtype.
    """

    heads: int = 8
    dim_head: int = 64
    bias: bool = False
    out_bias: bool = True
    norm_num_groups: int | None = None
    eps: float = 1e-5
    residual_connection: bool = False
    rescale_output_factor: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden_states: jax.Array, encoder_hidden_states: jax.Array | None = None) -> jax.Array:
        """Attends over ``[B, H, W, C]`` or ``[B, L, C]``; returns the input's shape."""
        shape = hidden_states.shape
        chex.assert_rank(hidden_states, {3, 4})
        x = hidden_states.reshape(shape[0], -1, shape[-1])
        residual = x
        if self.norm_num_groups is not None:
            x = _group_norm(self.norm_num_groups, self.eps, "group_norm", self.dtype)(x)
        context = x if encoder_hidden_states is None else encoder_hidden_states
        chex.assert_rank(context, 3)
        inner = self.heads * self.dim_head
        q = nn.Dense(inner, use_bias=self.bias, dtype=self.dtype, name="to_q")(x)
        k = nn.Dense(inner, use_bias=self.bias, dtype=self.dtype, name="to_k")(context)
        v = nn.Dense(inner, use_bias=self.bias, dtype=self.dtype, name="to_v")(context)
        out = nn.Dense(shape[-1], use_bias=self.out_bias, dtype=self.dtype, name="to_out_0")(_attend(q, k, v, self.heads))
        if self.residual_connection:
            out = out + residual
        out = out / self.rescale_output_factor
        return out.reshape(shape)


def attention_block(channels: int, head_dim: int | None, groups: int | None, eps: float, rescale_output_factor: float, dtype: Dtype, name: str) -> Attention:
    """The spatial self-attention of diffusers' ``UNetMidBlock2D`` / ``AttnDownBlock2D`` / ``AttnUpBlock2D``.

    An :class:`Attention` over the ``H * W`` positions of a ``[B, H, W, channels]`` map:
    GroupNorm (unless ``groups`` is None), ``channels // head_dim`` heads of width
    ``head_dim`` (the inner width ``heads * head_dim`` may be less than ``channels``),
    biases, the input added back and the sum divided by ``rescale_output_factor`` (the
    attention block of Ho et al. 2020, arXiv 2006.11239, Appendix B, with heads).

    Args:
      channels: the feature map's channels.
      head_dim: width of one head (None: ``channels``, one head).
      groups: GroupNorm groups of the input norm (None: no norm).
      eps: GroupNorm epsilon.
      rescale_output_factor: divides the output after the residual.
      dtype: computation dtype.
      name: the Flax module name (diffusers' ``attentions_<i>``).

    Returns:
      The unbound module.

    Raises:
      ValueError: if ``head_dim`` exceeds ``channels`` (zero heads).
    """
    head_dim = head_dim or channels
    if not 1 <= head_dim <= channels:
        raise ValueError(f"attention_head_dim: expected 1 <= attention_head_dim <= {channels} (the channels it attends over), got {head_dim}")
    return Attention(
        heads=channels // head_dim,
        dim_head=head_dim,
        bias=True,
        norm_num_groups=groups,
        eps=eps,
        residual_connection=True,
        rescale_output_factor=rescale_output_factor,
        dtype=dtype,
        name=name,
    )


class FeedForward(nn.Module):
    """Diffusers' ``FeedForward`` with GEGLU: ``net.0.proj`` (to ``2 * mult * dim``), ``net.2``.

    ``GEGLU(x) = a * GELU(g)`` for ``[a | g] = net.0.proj(x)`` (Shazeer 2020), exact
    (erf) GELU, as in the LDM transformer blocks (Rombach et al. 2022, arXiv
    2112.10752, Appendix E).

    Attributes:
      mult: hidden width multiplier.
      dtype: computation dtype.
    """

    mult: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., D]`` to ``[..., D]``."""
        dim = x.shape[-1]
        inner = self.mult * dim
        # diffusers' GEGLU module is net.0 and holds the projection as net.0.proj.
        h = _GEGLU(inner, self.dtype, name="net_0")(x)
        return nn.Dense(dim, dtype=self.dtype, name="net_2")(h)


class _GEGLU(nn.Module):
    inner: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a, gate = jnp.split(nn.Dense(2 * self.inner, dtype=self.dtype, name="proj")(x), 2, axis=-1)
        return a * jax.nn.gelu(gate, approximate=False)


class BasicTransformerBlock(nn.Module):
    """Diffusers' ``BasicTransformerBlock``: self-attention, cross-attention, GEGLU MLP.

    ``x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x))`` with
    LayerNorms (the transformer block of the LDM U-Net, Rombach et al. 2022, arXiv
    2112.10752, Section 3.3 and Appendix E).

    Attributes:
      num_attention_heads: heads of both attentions.
      attention_head_dim: width of one head.
      norm_eps: LayerNorm epsilon.
      dtype: computation dtype.
    """

    num_attention_heads: int
    attention_head_dim: int
    norm_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, encoder_hidden_states: jax.Array) -> jax.Array:
        """Maps ``[B, L, D]`` with context ``[B, L', D']`` to ``[B, L, D]``."""
        chex.assert_rank([x, encoder_hidden_states], 3)

        def norm(name: str) -> nn.LayerNorm:
            return nn.LayerNorm(epsilon=self.norm_eps, use_fast_variance=False, dtype=self.dtype, name=name)

        heads, dim_head = self.num_attention_heads, self.attention_head_dim
        x = x + Attention(heads, dim_head, dtype=self.dtype, name="attn1")(norm("norm1")(x))
        x = x + Attention(heads, dim_head, dtype=self.dtype, name="attn2")(norm("norm2")(x), encoder_hidden_states)
        return x + FeedForward(dtype=self.dtype, name="ff")(norm("norm3")(x))


class Transformer2DModel(nn.Module):
    """Diffusers' ``Transformer2DModel`` (continuous input) used inside the LDM U-Net.

    ``GroupNorm -> proj_in -> transformer_blocks -> proj_out`` plus the input: the
    spatial transformer that injects the conditioning by cross-attention (Rombach et
    al. 2022, arXiv 2112.10752, Section 3.3). ``proj_in``/``proj_out`` are 1x1
    convolutions, or ``Linear`` layers with ``use_linear_projection`` (SD 2.x).

    Attributes:
      num_attention_heads: heads.
      attention_head_dim: width of one head.
      num_layers: transformer blocks.
      norm_num_groups: GroupNorm groups (epsilon 1e-6).
      use_linear_projection: ``Linear`` instead of 1x1 conv projections.
      norm_eps: the blocks' LayerNorm epsilon.
      dtype: computation dtype.
    """

    num_attention_heads: int
    attention_head_dim: int
    num_layers: int = 1
    norm_num_groups: int = 32
    use_linear_projection: bool = False
    norm_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, encoder_hidden_states: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` with context ``[B, L, D]`` to ``[B, H, W, C]``."""
        chex.assert_rank(x, 4)
        b, height, width, channels = x.shape
        inner = self.num_attention_heads * self.attention_head_dim
        h = _group_norm(self.norm_num_groups, 1e-6, "norm", self.dtype)(x)
        if self.use_linear_projection:
            h = nn.Dense(inner, dtype=self.dtype, name="proj_in")(h)
        else:
            h = _conv(inner, 1, "proj_in", self.dtype)(h)
        h = h.reshape(b, height * width, inner)
        for i in range(self.num_layers):
            h = BasicTransformerBlock(self.num_attention_heads, self.attention_head_dim, self.norm_eps, self.dtype, name=f"transformer_blocks_{i}")(
                h, encoder_hidden_states
            )
        h = h.reshape(b, height, width, inner)
        if self.use_linear_projection:
            h = nn.Dense(channels, dtype=self.dtype, name="proj_out")(h)
        else:
            h = _conv(channels, 1, "proj_out", self.dtype)(h)
        return h + x


class Downsample2D(nn.Module):
    """Diffusers' ``Downsample2D`` with a convolution: a stride-2 3x3 ``conv``.

    ``padding`` pads every side; ``padding=0`` pads the bottom and right by one (the
    TensorFlow ``SAME`` of the LDM autoencoder, Rombach et al. 2022, arXiv 2112.10752,
    Appendix G).

    Attributes:
      out_channels: output channels.
      padding: diffusers' ``padding`` (SD U-Net: 1; SD VAE: 0).
      dtype: computation dtype.
    """

    out_channels: int
    padding: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, H', W', out_channels]`` (``H' = H // 2`` for even H)."""
        chex.assert_rank(x, 4)
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        return _conv(self.out_channels, 3, "conv", self.dtype, stride=2, padding=self.padding)(x)


class Upsample2D(nn.Module):
    """Diffusers' ``Upsample2D`` with a convolution: nearest-neighbour x2, then a 3x3 ``conv``.

    Attributes:
      out_channels: output channels.
      dtype: computation dtype.
    """

    out_channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, 2H, 2W, out_channels]``."""
        return _conv(self.out_channels, 3, "conv", self.dtype)(nearest_upsample_2x(x))


class ResnetBlockFields(nn.Module):
    """Fields shared by the blocks that hold :class:`ResnetBlock2D`s (the base of diffusers' block mirrors).

    Attributes:
      out_channels: output channels of the block's residual blocks.
      num_layers: residual blocks.
      resnet_eps: their GroupNorm epsilon.
      resnet_groups: their GroupNorm groups.
      resnet_time_scale_shift: their ``time_embedding_norm``.
      resnet_skip_time_act: their ``skip_time_act``.
      output_scale_factor: their ``output_scale_factor``.
      dropout: their dropout rate.
      resnet_act_fn: their activation.
      dtype: computation dtype.
    """

    out_channels: int
    num_layers: int = 1
    resnet_eps: float = 1e-6
    resnet_groups: int = 32
    resnet_time_scale_shift: TimeEmbeddingNorm = "default"
    resnet_skip_time_act: bool = False
    output_scale_factor: float = 1.0
    dropout: float = 0.0
    resnet_act_fn: str = "silu"
    dtype: Dtype = jnp.float32

    def _resnet(self, i: int | str, **overrides: Any) -> ResnetBlock2D:
        """The block's residual block ``resnets_{i}`` (or the one named ``i``), with ``overrides`` of its fields."""
        fields: dict[str, Any] = dict(
            out_channels=self.out_channels,
            groups=self.resnet_groups,
            eps=self.resnet_eps,
            dropout=self.dropout,
            time_embedding_norm=self.resnet_time_scale_shift,
            output_scale_factor=self.output_scale_factor,
            skip_time_act=self.resnet_skip_time_act,
            act_fn=self.resnet_act_fn,
            dtype=self.dtype,
            name=f"resnets_{i}" if isinstance(i, int) else i,
        )
        return ResnetBlock2D(**{**fields, **overrides})


class DownBlock2D(ResnetBlockFields):
    """Diffusers' ``DownBlock2D``: ``num_layers`` residual blocks, then an optional downsampler.

    Attributes (besides the residual-block fields ``out_channels``, ``num_layers``,
    ``resnet_eps``, ``resnet_groups``, ``resnet_time_scale_shift``,
    ``resnet_skip_time_act``, ``output_scale_factor``, ``dropout``, ``resnet_act_fn``,
    ``dtype``):
      add_downsample: end with a downsampler.
      downsample_padding: the :class:`Downsample2D`'s ``padding``.
      downsample_type: ``"conv"`` (a :class:`Downsample2D`) or ``"resnet"`` (a
        :class:`ResnetBlock2D` with ``down=True``: average pooling inside the block).
    """

    add_downsample: bool = True
    downsample_padding: int = 1
    downsample_type: str = "conv"

    def _downsample(self, x: jax.Array, temb: jax.Array | None, deterministic: bool) -> jax.Array:
        """The block's ``downsamplers.0`` applied to ``x``."""
        if self.downsample_type == "resnet":
            return self._resnet("downsamplers_0", down=True)(x, temb, deterministic=deterministic)
        if self.downsample_type != "conv":
            raise ValueError(f"downsample_type: expected 'conv' or 'resnet', got {self.downsample_type!r}")
        return Downsample2D(self.out_channels, self.downsample_padding, self.dtype, name="downsamplers_0")(x)

    @nn.compact
    def __call__(
        self, x: jax.Array, temb: jax.Array | None, encoder_hidden_states: jax.Array | None = None, *, deterministic: bool = True
    ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Returns the output and the states the up path concatenates (one per layer and the downsampler)."""
        states = []
        for i in range(self.num_layers):
            x = self._attend(i, self._resnet(i)(x, temb, deterministic=deterministic), encoder_hidden_states)
            states.append(x)
        if self.add_downsample:
            x = self._downsample(x, temb, deterministic)
            states.append(x)
        return x, tuple(states)

    def _attend(self, i: int, x: jax.Array, encoder_hidden_states: jax.Array | None) -> jax.Array:
        """What follows residual block ``i``: nothing here; attention in the subclasses."""
        del i, encoder_hidden_states
        return x


class CrossAttnDownBlock2D(DownBlock2D):
    """Diffusers' ``CrossAttnDownBlock2D``: residual blocks each followed by a :class:`Transformer2DModel`.

    Attributes (besides :class:`DownBlock2D`'s):
      num_attention_heads: heads (width per head ``out_channels // num_attention_heads``).
      transformer_layers_per_block: transformer blocks in each ``Transformer2DModel``.
      use_linear_projection: ``Linear`` projections in the transformers.
    """

    num_attention_heads: int = 8
    transformer_layers_per_block: int = 1
    use_linear_projection: bool = False

    def _attend(self, i: int, x: jax.Array, encoder_hidden_states: jax.Array | None) -> jax.Array:
        """The :class:`Transformer2DModel` ``attentions_{i}`` cross-attending to ``encoder_hidden_states``."""
        if encoder_hidden_states is None:
            raise ValueError("encoder_hidden_states: needed by CrossAttnDownBlock2D")
        return _transformer(self, i)(x, encoder_hidden_states)


def _transformer(block: Any, i: int) -> Transformer2DModel:
    heads = block.num_attention_heads
    return Transformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=block.out_channels // heads,
        num_layers=block.transformer_layers_per_block,
        norm_num_groups=block.resnet_groups,
        use_linear_projection=block.use_linear_projection,
        dtype=block.dtype,
        name=f"attentions_{i}",
    )


class UpBlock2D(ResnetBlockFields):
    """Diffusers' ``UpBlock2D``: residual blocks on ``concat(h, skip)``, then an optional upsampler.

    Attributes (besides the residual-block fields, see :class:`DownBlock2D`):
      add_upsample: end with an upsampler.
      upsample_type: ``"conv"`` (an :class:`Upsample2D`) or ``"resnet"`` (a
        :class:`ResnetBlock2D` with ``up=True``: nearest-neighbour inside the block).
    """

    add_upsample: bool = True
    upsample_type: str = "conv"

    def _upsample(self, x: jax.Array, temb: jax.Array | None, deterministic: bool) -> jax.Array:
        """The block's ``upsamplers.0`` applied to ``x``."""
        if self.upsample_type == "resnet":
            return self._resnet("upsamplers_0", up=True)(x, temb, deterministic=deterministic)
        if self.upsample_type != "conv":
            raise ValueError(f"upsample_type: expected 'conv' or 'resnet', got {self.upsample_type!r}")
        return Upsample2D(self.out_channels, self.dtype, name="upsamplers_0")(x)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        skips: Sequence[jax.Array],
        temb: jax.Array | None,
        encoder_hidden_states: jax.Array | None = None,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Consumes ``num_layers`` skip states from the end of ``skips``."""
        skips = list(skips)
        if len(skips) != self.num_layers:
            raise ValueError(f"skips: expected {self.num_layers} skip states, got {len(skips)}")
        for i in range(self.num_layers):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = self._attend(i, self._resnet(i)(x, temb, deterministic=deterministic), encoder_hidden_states)
        if self.add_upsample:
            x = self._upsample(x, temb, deterministic)
        return x

    def _attend(self, i: int, x: jax.Array, encoder_hidden_states: jax.Array | None) -> jax.Array:
        """What follows residual block ``i``: nothing here; attention in the subclasses."""
        del i, encoder_hidden_states
        return x


class CrossAttnUpBlock2D(UpBlock2D):
    """Diffusers' ``CrossAttnUpBlock2D``: :class:`UpBlock2D` with a :class:`Transformer2DModel` after each residual block.

    Attributes (besides :class:`UpBlock2D`'s):
      num_attention_heads: heads (width per head ``out_channels // num_attention_heads``).
      transformer_layers_per_block: transformer blocks in each ``Transformer2DModel``.
      use_linear_projection: ``Linear`` projections in the transformers.
    """

    num_attention_heads: int = 8
    transformer_layers_per_block: int = 1
    use_linear_projection: bool = False

    def _attend(self, i: int, x: jax.Array, encoder_hidden_states: jax.Array | None) -> jax.Array:
        """The :class:`Transformer2DModel` ``attentions_{i}`` cross-attending to ``encoder_hidden_states``."""
        if encoder_hidden_states is None:
            raise ValueError("encoder_hidden_states: needed by CrossAttnUpBlock2D")
        return _transformer(self, i)(x, encoder_hidden_states)


class UNetMidBlock2DCrossAttn(ResnetBlockFields):
    """Diffusers' ``UNetMidBlock2DCrossAttn``: ``resnets.0``, then (transformer, resnet) x ``num_layers``.

    Attributes (besides the residual-block fields, see :class:`DownBlock2D`; the
    channel count is the input's and ``out_channels`` must equal it):
      num_attention_heads: heads.
      transformer_layers_per_block: transformer blocks in each ``Transformer2DModel``.
      use_linear_projection: ``Linear`` projections in the transformers.
    """

    num_attention_heads: int = 8
    transformer_layers_per_block: int = 1
    use_linear_projection: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None, encoder_hidden_states: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[B, H, W, C]`` to the same shape."""
        chex.assert_axis_dimension(x, 3, self.out_channels)
        x = self._resnet(0)(x, temb, deterministic=deterministic)
        for i in range(self.num_layers):
            x = _transformer(self, i)(x, encoder_hidden_states)
            x = self._resnet(i + 1)(x, temb, deterministic=deterministic)
        return x


class UNetMidBlock2D(ResnetBlockFields):
    """Diffusers' ``UNetMidBlock2D`` (the autoencoder's middle): ``resnets.0``, then (attention, resnet) x ``num_layers``.

    The attention is diffusers' :class:`Attention` with a GroupNorm, ``channels //
    attention_head_dim`` heads (one head in the SD VAE), biases and a residual
    connection (Rombach et al. 2022, arXiv 2112.10752, Appendix G).

    Attributes (besides the residual-block fields, see :class:`DownBlock2D`):
      attention_head_dim: width of one head (None: all channels; heads ``channels //
        attention_head_dim``).
      add_attention: include the attentions.
      attn_groups: GroupNorm groups of the attentions; None: ``resnet_groups`` with
        ``resnet_time_scale_shift="default"`` and no norm with ``"scale_shift"``, as in
        diffusers.
    """

    attention_head_dim: int | None = None
    add_attention: bool = True
    attn_groups: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[B, H, W, C]`` to the same shape."""
        chex.assert_axis_dimension(x, 3, self.out_channels)
        channels = self.out_channels
        head_dim = self.attention_head_dim
        attn_groups = self.attn_groups
        if attn_groups is None and self.resnet_time_scale_shift == "default":
            attn_groups = self.resnet_groups
        x = self._resnet(0)(x, temb, deterministic=deterministic)
        for i in range(self.num_layers):
            if self.add_attention:
                x = attention_block(channels, head_dim, attn_groups, self.resnet_eps, self.output_scale_factor, self.dtype, f"attentions_{i}")(x)
            x = self._resnet(i + 1)(x, temb, deterministic=deterministic)
        return x


class DownEncoderBlock2D(ResnetBlockFields):
    """Diffusers' ``DownEncoderBlock2D``: residual blocks without time embedding, optional downsampler.

    Attributes (besides the residual-block fields, see :class:`DownBlock2D`):
      add_downsample: end with a :class:`Downsample2D`.
      downsample_padding: its ``padding`` (0 in the SD VAE).
    """

    add_downsample: bool = True
    downsample_padding: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, H', W', out_channels]``."""
        for i in range(self.num_layers):
            x = self._resnet(i)(x, None, deterministic=deterministic)
        if self.add_downsample:
            x = Downsample2D(self.out_channels, self.downsample_padding, self.dtype, name="downsamplers_0")(x)
        return x


class UpDecoderBlock2D(ResnetBlockFields):
    """Diffusers' ``UpDecoderBlock2D``: residual blocks without time embedding, optional upsampler.

    Attributes (besides the residual-block fields, see :class:`DownBlock2D`):
      add_upsample: end with an :class:`Upsample2D`.
    """

    add_upsample: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, H', W', out_channels]``."""
        for i in range(self.num_layers):
            x = self._resnet(i)(x, None, deterministic=deterministic)
        if self.add_upsample:
            x = Upsample2D(self.out_channels, self.dtype, name="upsamplers_0")(x)
        return x


def _check_types(key: str, types: Sequence[str | None], allowed: Sequence[str | None], count: int) -> None:
    if len(types) != count:
        raise ValueError(f"{key}: expected {count} block types (one per entry of block_out_channels), got {tuple(types)!r}")
    for i, name in enumerate(types):
        if name not in allowed:
            raise ValueError(f"{key}: entry {i} is {name!r}; genjax supports {tuple(allowed)!r}")


class UNet2DConditionModel(nn.Module):
    """Diffusers' ``UNet2DConditionModel``: the latent-diffusion denoiser of Stable Diffusion.

    The U-Net ``eps_theta(z_t, t, tau_theta(y))`` of Rombach et al. 2022 (arXiv
    2112.10752, Section 3.3, Eq. 3 and Appendix E): a time-conditioned residual U-Net
    whose blocks interleave spatial transformers that cross-attend to
    ``encoder_hidden_states``. Field names and defaults are diffusers' config keys (the
    defaults are diffusers'; :data:`sd15_unet` is Stable Diffusion v1.5). Note
    diffusers' historical naming, kept here: ``attention_head_dim`` is the number of
    attention *heads* of each level (width per head ``channels // heads``).

    Attributes:
      sample_size: the trained latent size (metadata, exported to config.json).
      in_channels: input channels (latent channels).
      out_channels: output channels.
      center_input_sample: map the input ``x -> 2x - 1`` first.
      flip_sin_to_cos: timestep features ``[cos | sin]``.
      freq_shift: ``downscale_freq_shift`` of the timestep features.
      down_block_types: per level, ``"CrossAttnDownBlock2D"`` or ``"DownBlock2D"``.
      mid_block_type: ``"UNetMidBlock2DCrossAttn"`` or None (no middle block).
      up_block_types: per level from the coarsest, ``"CrossAttnUpBlock2D"`` or ``"UpBlock2D"``.
      block_out_channels: channels per level.
      layers_per_block: residual blocks per down level (up levels: one more).
      downsample_padding: the downsamplers' ``padding``.
      mid_block_scale_factor: the middle block's ``output_scale_factor``.
      dropout: residual-block dropout (with ``train=True``).
      norm_num_groups: GroupNorm groups.
      norm_eps: GroupNorm epsilon of residual blocks and ``conv_norm_out``.
      cross_attention_dim: width of ``encoder_hidden_states``.
      transformer_layers_per_block: transformer blocks per ``Transformer2DModel``, per level.
      attention_head_dim: attention heads, per level (diffusers' name).
      use_linear_projection: ``Linear`` ``proj_in``/``proj_out`` (SD 2.x).
      upcast_attention: diffusers' fp16 softmax upcast (softmax is always float32 here).
      resnet_time_scale_shift: ``"default"`` or ``"scale_shift"``.
      resnet_skip_time_act: no SiLU on the time embedding inside residual blocks.
      resnet_out_scale_factor: residual blocks' ``output_scale_factor``.
      time_embedding_dim: time-embedding width (None: ``4 * block_out_channels[0]``).
      conv_in_kernel: ``conv_in`` kernel size.
      conv_out_kernel: ``conv_out`` kernel size.
      dtype: computation dtype.
    """

    sample_size: int | None = None
    in_channels: int = 4
    out_channels: int = 4
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: float = 0
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int | tuple[int, ...] = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    dropout: float = 0.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 1280
    transformer_layers_per_block: int | tuple[int, ...] = 1
    attention_head_dim: int | tuple[int, ...] = 8
    use_linear_projection: bool = False
    upcast_attention: bool = False
    resnet_time_scale_shift: TimeEmbeddingNorm = "default"
    resnet_skip_time_act: bool = False
    resnet_out_scale_factor: float = 1.0
    time_embedding_dim: int | None = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, sample: jax.Array, timesteps: jax.Array, encoder_hidden_states: jax.Array, *, train: bool = False) -> jax.Array:
        """Predicts the noise (or v) for ``sample`` at ``timesteps`` given the conditioning.

        Args:
          sample: ``[B, H, W, in_channels]`` noisy latents; H and W multiples of
            ``2 ** (len(block_out_channels) - 1)``.
          timesteps: ``[B]`` (or a scalar) diffusion times.
          encoder_hidden_states: ``[B, L, cross_attention_dim]`` conditioning sequence.
          train: enable dropout (needs a ``'dropout'`` rng when ``dropout > 0``).

        Returns:
          ``[B, H, W, out_channels]``.
        """
        num_levels = len(self.block_out_channels)
        _check_types("down_block_types", self.down_block_types, UNET_DOWN_BLOCK_TYPES, num_levels)
        _check_types("up_block_types", self.up_block_types, UNET_UP_BLOCK_TYPES, num_levels)
        if self.mid_block_type not in UNET_MID_BLOCK_TYPES:
            raise ValueError(f"mid_block_type: genjax supports {UNET_MID_BLOCK_TYPES!r}, got {self.mid_block_type!r}")
        chex.assert_rank([sample, encoder_hidden_states], [4, 3])
        b, height, width, _ = sample.shape
        chex.assert_axis_dimension(sample, 3, self.in_channels)
        chex.assert_shape(encoder_hidden_states, (b, None, self.cross_attention_dim))
        factor = 2 ** (num_levels - 1)
        if height % factor or width % factor:
            raise ValueError(f"sample: height and width must be multiples of {factor}, got {(height, width)}")
        timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (b,))
        layers = _per_block(self.layers_per_block, num_levels, "layers_per_block")
        heads = _per_block(self.attention_head_dim, num_levels, "attention_head_dim")
        tlayers = _per_block(self.transformer_layers_per_block, num_levels, "transformer_layers_per_block")
        deterministic = not train
        ehs = encoder_hidden_states.astype(self.dtype)
        common: dict[str, Any] = dict(
            resnet_eps=self.norm_eps,
            resnet_groups=self.norm_num_groups,
            resnet_time_scale_shift=self.resnet_time_scale_shift,
            resnet_skip_time_act=self.resnet_skip_time_act,
            output_scale_factor=self.resnet_out_scale_factor,
            dropout=self.dropout,
            dtype=self.dtype,
        )

        x = sample.astype(self.dtype)
        if self.center_input_sample:
            x = 2 * x - 1.0
        c0 = self.block_out_channels[0]
        t_emb = timestep_embedding(timesteps, c0, self.flip_sin_to_cos, self.freq_shift).astype(self.dtype)
        temb = TimestepEmbedding(self.time_embedding_dim or 4 * c0, self.dtype, name="time_embedding")(t_emb)
        x = _conv(c0, self.conv_in_kernel, "conv_in", self.dtype)(x)

        states: list[jax.Array] = [x]
        for i, kind in enumerate(self.down_block_types):
            kwargs: dict[str, Any] = dict(
                out_channels=self.block_out_channels[i], num_layers=layers[i], add_downsample=i < num_levels - 1, downsample_padding=self.downsample_padding
            )
            down: DownBlock2D
            if kind == "CrossAttnDownBlock2D":
                down = CrossAttnDownBlock2D(
                    **kwargs,
                    **common,
                    num_attention_heads=heads[i],
                    transformer_layers_per_block=tlayers[i],
                    use_linear_projection=self.use_linear_projection,
                    name=f"down_blocks_{i}",
                )
            else:
                down = DownBlock2D(**kwargs, **common, name=f"down_blocks_{i}")
            x, new_states = down(x, temb, ehs, deterministic=deterministic)
            states.extend(new_states)

        if self.mid_block_type is not None:
            mid_common = {**common, "output_scale_factor": self.mid_block_scale_factor}
            x = UNetMidBlock2DCrossAttn(
                out_channels=self.block_out_channels[-1],
                **mid_common,
                num_attention_heads=heads[-1],
                transformer_layers_per_block=tlayers[-1],
                use_linear_projection=self.use_linear_projection,
                name="mid_block",
            )(x, temb, ehs, deterministic=deterministic)

        for i, kind in enumerate(self.up_block_types):
            level = num_levels - 1 - i
            n = layers[level] + 1
            skips, states = states[-n:], states[:-n]
            kwargs = dict(out_channels=self.block_out_channels[level], num_layers=n, add_upsample=i < num_levels - 1)
            up: UpBlock2D
            if kind == "CrossAttnUpBlock2D":
                up = CrossAttnUpBlock2D(
                    **kwargs,
                    **common,
                    num_attention_heads=heads[level],
                    transformer_layers_per_block=tlayers[level],
                    use_linear_projection=self.use_linear_projection,
                    name=f"up_blocks_{i}",
                )
            else:
                up = UpBlock2D(**kwargs, **common, name=f"up_blocks_{i}")
            x = up(x, skips, temb, ehs, deterministic=deterministic)

        x = nn.silu(_group_norm(self.norm_num_groups, self.norm_eps, "conv_norm_out", self.dtype)(x))
        x = _conv(self.out_channels, self.conv_out_kernel, "conv_out", self.dtype)(x)
        chex.assert_shape(x, (b, height, width, self.out_channels))
        return x


class LabelContextUNet(nn.Module):
    """A :class:`UNet2DConditionModel` conditioned on class labels through cross-attention.

    Rombach et al. 2022 (arXiv 2112.10752, Section 3.3 and Table 15's class-conditional
    ImageNet LDM) condition on a class by mapping it with a learned embedding table to a
    one-token sequence ``tau_theta(y) [B, 1, cross_attention_dim]`` that the U-Net's
    transformers attend to. With ``num_labels = K + 1`` the last label is the learned null
    condition of classifier-free guidance; ``num_labels = 1`` is an unconditional model
    (every call uses label 0, a learned constant context). The call signature is that of
    :class:`genjax.nn.unet.UNet`, so the DDPM family can use either network.

    Attributes:
      unet: the conditional U-Net (its parameters live under ``unet``).
      num_labels: rows of the embedding table (under ``label_embedding``).
    """

    unet: UNet2DConditionModel
    num_labels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array | None = None, *, train: bool = False) -> jax.Array:
        """The U-Net's output for ``x [B, H, W, C]`` at times ``t [B]`` given labels ``y [B]``.

        Args:
          x: noisy inputs.
          t: diffusion times.
          y: integer labels in ``[0, num_labels)``; None means label 0.
          train: enable dropout.

        Returns:
          ``[B, H, W, unet.out_channels]``.
        """
        if self.num_labels < 1:
            raise ValueError(f"num_labels: expected a positive int, got {self.num_labels}")
        labels = jnp.zeros((x.shape[0],), jnp.int32) if y is None else y
        chex.assert_shape(labels, (x.shape[0],))
        context = nn.Embed(self.num_labels, self.unet.cross_attention_dim, name="label_embedding")(labels)[:, None, :]
        return self.unet(x, t, context, train=train)


class Encoder(nn.Module):
    """Diffusers' VAE ``Encoder``: ``conv_in``, down blocks, middle, ``conv_norm_out``, SiLU, ``conv_out``.

    The encoder of the LDM autoencoder (Rombach et al. 2022, arXiv 2112.10752, Section
    3.1 and Appendix G): residual blocks with downsampling by strided convolutions,
    residual/attention/residual middle, and ``2 * out_channels`` outputs (mean and log
    variance) with ``double_z``.

    Attributes:
      out_channels: latent channels.
      down_block_types: ``"DownEncoderBlock2D"`` per level.
      block_out_channels: channels per level.
      layers_per_block: residual blocks per level.
      norm_num_groups: GroupNorm groups (epsilon 1e-6 throughout).
      double_z: output ``2 * out_channels`` channels.
      mid_block_add_attention: attention in the middle block.
      dtype: computation dtype.
    """

    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",)
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    double_z: bool = True
    mid_block_add_attention: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C]`` to ``[B, H / 2**(L-1), W / 2**(L-1), (2 *) out_channels]``."""
        num_levels = len(self.block_out_channels)
        _check_types("down_block_types", self.down_block_types, VAE_DOWN_BLOCK_TYPES, num_levels)
        common: dict[str, Any] = dict(num_layers=self.layers_per_block, resnet_eps=1e-6, resnet_groups=self.norm_num_groups, dtype=self.dtype)
        x = _conv(self.block_out_channels[0], 3, "conv_in", self.dtype)(x)
        for i, channels in enumerate(self.block_out_channels):
            x = DownEncoderBlock2D(channels, **common, add_downsample=i < num_levels - 1, downsample_padding=0, name=f"down_blocks_{i}")(x)
        x = UNetMidBlock2D(
            self.block_out_channels[-1],
            resnet_eps=1e-6,
            resnet_groups=self.norm_num_groups,
            attention_head_dim=self.block_out_channels[-1],
            add_attention=self.mid_block_add_attention,
            dtype=self.dtype,
            name="mid_block",
        )(x)
        x = nn.silu(_group_norm(self.norm_num_groups, 1e-6, "conv_norm_out", self.dtype)(x))
        return _conv(2 * self.out_channels if self.double_z else self.out_channels, 3, "conv_out", self.dtype)(x)


class Decoder(nn.Module):
    """Diffusers' VAE ``Decoder``: ``conv_in``, middle, up blocks, ``conv_norm_out``, SiLU, ``conv_out``.

    The decoder of the LDM autoencoder (Rombach et al. 2022, arXiv 2112.10752, Section
    3.1 and Appendix G); its up blocks have ``layers_per_block + 1`` residual blocks.

    Attributes:
      out_channels: image channels.
      up_block_types: ``"UpDecoderBlock2D"`` per level.
      block_out_channels: channels per level (of the encoder order; used reversed).
      layers_per_block: the encoder's residual blocks per level.
      norm_num_groups: GroupNorm groups (epsilon 1e-6 throughout).
      mid_block_add_attention: attention in the middle block.
      dtype: computation dtype.
    """

    out_channels: int = 3
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    mid_block_add_attention: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Maps ``[B, h, w, c]`` to ``[B, h * 2**(L-1), w * 2**(L-1), out_channels]``."""
        num_levels = len(self.block_out_channels)
        _check_types("up_block_types", self.up_block_types, VAE_UP_BLOCK_TYPES, num_levels)
        top = self.block_out_channels[-1]
        x = _conv(top, 3, "conv_in", self.dtype)(z)
        x = UNetMidBlock2D(
            top,
            resnet_eps=1e-6,
            resnet_groups=self.norm_num_groups,
            attention_head_dim=top,
            add_attention=self.mid_block_add_attention,
            dtype=self.dtype,
            name="mid_block",
        )(x)
        for i, channels in enumerate(reversed(self.block_out_channels)):
            x = UpDecoderBlock2D(
                channels,
                num_layers=self.layers_per_block + 1,
                resnet_eps=1e-6,
                resnet_groups=self.norm_num_groups,
                add_upsample=i < num_levels - 1,
                dtype=self.dtype,
                name=f"up_blocks_{i}",
            )(x)
        x = nn.silu(_group_norm(self.norm_num_groups, 1e-6, "conv_norm_out", self.dtype)(x))
        return _conv(self.out_channels, 3, "conv_out", self.dtype)(x)


class AutoencoderKL(nn.Module):
    """Diffusers' ``AutoencoderKL``: the KL-regularised autoencoder of latent diffusion.

    The perceptual-compression stage of Rombach et al. 2022 (arXiv 2112.10752, Section
    3.1 and Appendix G): ``encode`` gives the diagonal Gaussian posterior ``q(z | x)``
    of latents ``[B, H/f, W/f, latent_channels]`` with ``f = 2**(len(block_out_channels)
    - 1)`` (``f = 8`` for Stable Diffusion); ``decode`` maps latents back to images. The
    diffusion model works on ``scaling_factor * z`` (unit variance for the SD v1.5 VAE
    with 0.18215); that scaling is the caller's, never applied here.

    Use ``module.apply(params, x, method=AutoencoderKL.encode)`` and ``method=
    AutoencoderKL.decode``; ``module.init(key, x)`` creates all parameters.

    Attributes:
      in_channels: image channels.
      out_channels: decoded image channels.
      down_block_types: ``"DownEncoderBlock2D"`` per level.
      up_block_types: ``"UpDecoderBlock2D"`` per level.
      block_out_channels: channels per level.
      layers_per_block: residual blocks per encoder level (decoder: one more).
      latent_channels: latent channels.
      norm_num_groups: GroupNorm groups.
      sample_size: the trained image size (metadata, exported to config.json).
      scaling_factor: latent scaling for the diffusion model (metadata for callers).
      shift_factor: latent shift, ``(z - shift) * scale`` (metadata; None for SD v1/v2).
      use_quant_conv: the 1x1 ``quant_conv`` after the encoder.
      use_post_quant_conv: the 1x1 ``post_quant_conv`` before the decoder.
      mid_block_add_attention: attention in the middle blocks.
      dtype: computation dtype.
    """

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",)
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 32
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.encoder = Encoder(
            out_channels=self.latent_channels,
            down_block_types=tuple(self.down_block_types),
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            double_z=True,
            mid_block_add_attention=self.mid_block_add_attention,
            dtype=self.dtype,
        )
        self.decoder = Decoder(
            out_channels=self.out_channels,
            up_block_types=tuple(self.up_block_types),
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            norm_num_groups=self.norm_num_groups,
            mid_block_add_attention=self.mid_block_add_attention,
            dtype=self.dtype,
        )
        self.quant_conv = _conv(2 * self.latent_channels, 1, "quant_conv", self.dtype) if self.use_quant_conv else None
        self.post_quant_conv = _conv(self.latent_channels, 1, "post_quant_conv", self.dtype) if self.use_post_quant_conv else None

    @property
    def downsampling_factor(self) -> int:
        """``f``: image height / latent height."""
        return 2 ** (len(self.block_out_channels) - 1)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The Gaussian posterior of the latents.

        Args:
          x: ``[B, H, W, in_channels]`` images (Stable Diffusion: in ``[-1, 1]``), H and W
            multiples of ``downsampling_factor``.

        Returns:
          ``(mean, logvar)``, each ``[B, H/f, W/f, latent_channels]``; ``logvar`` is
          clipped to ``[-30, 20]``.
        """
        chex.assert_rank(x, 4)
        chex.assert_axis_dimension(x, 3, self.in_channels)
        b, height, width, _ = x.shape
        f = self.downsampling_factor
        if height % f or width % f:
            raise ValueError(f"x: height and width must be multiples of {f}, got {(height, width)}")
        h = self.encoder(x.astype(self.dtype))
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = jnp.split(h, 2, axis=-1)
        logvar = jnp.clip(logvar, -30.0, 20.0)
        chex.assert_shape([mean, logvar], (b, height // f, width // f, self.latent_channels))
        return mean, logvar

    def decode(self, z: jax.Array) -> jax.Array:
        """Decodes latents ``[B, h, w, latent_channels]`` to images ``[B, h*f, w*f, out_channels]``."""
        chex.assert_rank(z, 4)
        chex.assert_axis_dimension(z, 3, self.latent_channels)
        b, height, width, _ = z.shape
        z = z.astype(self.dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        x = self.decoder(z)
        f = self.downsampling_factor
        chex.assert_shape(x, (b, height * f, width * f, self.out_channels))
        return x

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Encodes, takes the posterior mean (or a sample with ``key``), and decodes."""
        mean, logvar = self.encode(x)
        z = mean if key is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        return self.decode(z)


_SD_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_SD_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")

#: Stable Diffusion v1.5's U-Net (``unet/config.json`` of ``runwayml/stable-diffusion-v1-5``): 859,520,964 parameters.
sd15_unet = functools.partial(
    UNet2DConditionModel,
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=_SD_DOWN,
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=_SD_UP,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1.0,
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
    use_linear_projection=False,
)

#: Stable Diffusion v1.5's autoencoder (``vae/config.json``): 83,653,863 parameters, f = 8, 4 latent channels.
sd15_vae = functools.partial(
    AutoencoderKL,
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

#: A tiny conditional U-Net of the same structure, for tests: 2 levels, 8x8 latents.
sd_unet_tiny = functools.partial(
    UNet2DConditionModel,
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=16,
    attention_head_dim=2,
)

#: A tiny autoencoder of the same structure, for tests: 2 levels (f = 2).
sd_vae_tiny = functools.partial(
    AutoencoderKL,
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=16,
    scaling_factor=0.18215,
)
