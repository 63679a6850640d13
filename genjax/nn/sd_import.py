"""Stable Diffusion weights: diffusers checkpoints to and from :mod:`genjax.nn.sd`.

The modules of :mod:`genjax.nn.sd` (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", arXiv 2112.10752) mirror diffusers'
``UNet2DConditionModel`` and ``AutoencoderKL`` module trees, so one generic rule
converts the weights both ways, with no per-layer table:

* names: the Flax path ``a/b_3/c/kernel`` is the diffusers key ``a.b.3.c.weight``,
  where ``b_3`` becomes ``b.3`` exactly when ``b`` is a diffusers ``nn.ModuleList`` /
  ``nn.Sequential`` attribute (:data:`genjax.nn.sd.MODULE_LIST_NAMES`), and the leaves
  ``kernel``/``scale`` are ``weight``, ``bias`` is ``bias``;
* layouts, by the leaf's rank: a 4-d ``kernel`` is a convolution, ``[kh, kw, in, out]``
  here and ``[out, in, kh, kw]`` in PyTorch (1x1 convolutions such as
  ``conv_shortcut``, ``quant_conv`` and non-linear ``proj_in`` included); a 2-d
  ``kernel`` is a ``Linear``, ``[in, out]`` here and ``[out, in]`` there; every other
  leaf is copied.

The reference for names and shapes is ``jax.eval_shape`` of the module's ``init``, so
a state dict is checked completely: every missing tensor, unexpected tensor and wrong
shape is reported in one ``ValueError`` (names in diffusers' form, shapes in PyTorch
layout). Configs map both ways too: :func:`sd_unet_from_diffusers_config` and
:func:`autoencoder_kl_from_diffusers_config` fill diffusers' ``__init__`` defaults and
reject, naming the key, what genjax cannot reproduce; :func:`diffusers_config` writes
a config.json that diffusers reads back into the same network. Files are read and
written with ``safetensors.numpy``: no torch, never ``pickle``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genjax.nn.sd import (
    MODULE_LIST_NAMES,
    UNET_DOWN_BLOCK_TYPES,
    UNET_MID_BLOCK_TYPES,
    UNET_UP_BLOCK_TYPES,
    VAE_DOWN_BLOCK_TYPES,
    VAE_UP_BLOCK_TYPES,
    AutoencoderKL,
    UNet2DConditionModel,
)
from genjax.nn.unet2d import UNET2D_CONFIG_KEYS, UNet2DModel

__all__ = [
    "SD15_UNET_CONFIG",
    "SD15_VAE_CONFIG",
    "autoencoder_kl_from_diffusers_config",
    "diffusers_config",
    "diffusers_key",
    "load_diffusers_autoencoder_kl",
    "load_diffusers_sd_unet",
    "read_diffusers_folder",
    "reference_params",
    "save_diffusers",
    "sd_params_from_diffusers",
    "sd_params_to_diffusers",
    "sd_unet_from_diffusers_config",
]

Params = Any
SDModule = UNet2DConditionModel | AutoencoderKL | UNet2DModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_WEIGHTS_NAME = "diffusion_pytorch_model.bin"
_DIFFUSERS_VERSION = "0.42.1"  # the version the export format was checked against

# Stable Diffusion v1.5's unet/config.json and vae/config.json (runwayml/stable-diffusion-v1-5).
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE_CONFIG: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
}

# UNet2DConditionModel.__init__'s defaults (diffusers 0.42): a key missing from
# config.json takes these values when diffusers builds the model.
_UNET_DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "dropout": 0.0,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1280,
    "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "attention_head_dim": 8,
    "num_attention_heads": None,
    "dual_cross_attention": False,
    "use_linear_projection": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "addition_time_embed_dim": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "time_cond_proj_dim": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "projection_class_embeddings_input_dim": None,
    "attention_type": "default",
    "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None,
    "cross_attention_norm": None,
    "addition_embed_type_num_heads": 64,
}
# Options genjax does not implement: each must keep the value(s) listed.
_UNET_FIXED: dict[str, tuple[Any, ...]] = {
    "only_cross_attention": (False,),
    "reverse_transformer_layers_per_block": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "num_attention_heads": (None,),
    "dual_cross_attention": (False,),
    "class_embed_type": (None,),
    "addition_embed_type": (None,),
    "addition_time_embed_dim": (None,),
    "num_class_embeds": (None,),
    "time_embedding_type": ("positional",),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "time_cond_proj_dim": (None,),
    "projection_class_embeddings_input_dim": (None,),
    "attention_type": ("default",),
    "class_embeddings_concat": (False,),
    "mid_block_only_cross_attention": (None, False),
    "cross_attention_norm": (None,),
}

# AutoencoderKL.__init__'s defaults (diffusers 0.42).
_VAE_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D"],
    "block_out_channels": [64],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
    "scaling_factor": 0.18215,
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
    "force_upcast": True,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
}
_VAE_FIXED: dict[str, tuple[Any, ...]] = {"latents_mean": (None,), "latents_std": (None,)}
_SWISH_NAMES = ("silu", "swish")


# --------------------------------------------------------------------------- configs


def _unsupported(model: str, key: str, supported: str, value: Any) -> ValueError:
    return ValueError(f"{key}: genjax's {model} supports {supported}; the config has {value!r}")


def _int(cfg: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}: expected an int >= {minimum}, got {value!r}")
    return value


def _number(cfg: Mapping[str, Any], key: str) -> float:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def _bool(cfg: Mapping[str, Any], key: str) -> bool:
    value = cfg[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def _ints(cfg: Mapping[str, Any], key: str, count: int | None = None, allow_int: bool = False) -> int | tuple[int, ...]:
    value = cfg[key]
    if allow_int and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if not isinstance(value, (list, tuple)) or not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"{key}: expected {'a positive int or ' if allow_int else ''}a non-empty list of positive ints, got {value!r}")
    if count is not None and len(value) != count:
        raise ValueError(f"{key}: expected {count} entries (one per entry of block_out_channels), got {value!r}")
    return tuple(value)


def _names(cfg: Mapping[str, Any], key: str, allowed: tuple[str | None, ...], count: int, model: str) -> tuple[str, ...]:
    value = cfg[key]
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"{key}: expected {count} block types (one per entry of block_out_channels), got {value!r}")
    for i, name in enumerate(value):
        if name not in allowed:
            raise ValueError(
                f"{key}: genjax's {model} supports only {[a for a in allowed if a]} blocks; the config has {name!r} at entry {i} of {list(value)!r}"
            )
    return tuple(value)


def _prepare(
    config: Mapping[str, Any], class_name: str, defaults: Mapping[str, Any], fixed: Mapping[str, tuple[Any, ...]], silu_only: bool = True
) -> dict[str, Any]:
    """``config`` with ``defaults`` for missing keys, after checking the class name, unknown keys and ``fixed`` values."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a mapping (the parsed config.json), got {type(config).__name__}")
    name = config.get("_class_name", class_name)
    if name != class_name:
        raise ValueError(f"_class_name: expected {class_name!r}, got {name!r}")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in defaults)
    if unknown:
        raise ValueError(f"config: unknown {class_name} keys {unknown}; cannot tell whether they change the network")
    cfg = {**defaults, **config}
    for key, allowed in fixed.items():
        if not any(cfg[key] == a and type(cfg[key]) is type(a) for a in allowed):
            raise _unsupported(class_name, key, " or ".join(repr(a) for a in allowed), cfg[key])
    if silu_only and cfg["act_fn"] not in _SWISH_NAMES:
        raise _unsupported(class_name, "act_fn", "'silu' (swish)", cfg["act_fn"])
    return cfg


def _sample_size(cfg: Mapping[str, Any], allow_none: bool) -> Any:
    value = cfg["sample_size"]
    if value is None and allow_none:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"sample_size: genjax supports a positive int (or a square [size, size]); the config has {cfg['sample_size']!r}")
    return value


def sd_unet_from_diffusers_config(config: Mapping[str, Any], *, dtype: Any = jnp.float32) -> UNet2DConditionModel:
    """The :class:`~genjax.nn.sd.UNet2DConditionModel` of a diffusers ``config.json``.

    Keys missing from ``config`` take diffusers' ``UNet2DConditionModel.__init__``
    defaults. Supported: the Stable Diffusion v1.x/v2.x family (Rombach et al. 2022,
    arXiv 2112.10752): ``CrossAttnDownBlock2D``/``DownBlock2D`` down blocks,
    ``CrossAttnUpBlock2D``/``UpBlock2D`` up blocks, ``UNetMidBlock2DCrossAttn`` (or no)
    middle, per-level ``layers_per_block`` / ``attention_head_dim`` /
    ``transformer_layers_per_block``, ``use_linear_projection``,
    ``resnet_time_scale_shift`` ``"default"``/``"scale_shift"``, SiLU. Class,
    addition and text-projection embeddings (SDXL, unCLIP, ...), dual or
    cross-only attention, GLIGEN attention, learned timestep embeddings and
    ``num_attention_heads`` are rejected.

    Args:
      config: the parsed ``config.json``.
      dtype: computation dtype (parameters stay float32).

    Returns:
      The module (no parameters).

    Raises:
      ValueError: naming the first unsupported or invalid key, what genjax supports and
        the value given; or listing unknown keys.
    """
    model = "UNet2DConditionModel"
    cfg = _prepare(config, model, _UNET_DEFAULTS, _UNET_FIXED)
    channels = _ints(cfg, "block_out_channels")
    assert isinstance(channels, tuple)
    n = len(channels)
    down = _names(cfg, "down_block_types", tuple(UNET_DOWN_BLOCK_TYPES), n, model)
    up = _names(cfg, "up_block_types", tuple(UNET_UP_BLOCK_TYPES), n, model)
    if cfg["mid_block_type"] not in UNET_MID_BLOCK_TYPES:
        raise _unsupported(model, "mid_block_type", "'UNetMidBlock2DCrossAttn' or null", cfg["mid_block_type"])
    groups = cfg["norm_num_groups"]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise _unsupported(model, "norm_num_groups", "a positive int", groups)
    for c in channels:
        if c % groups:
            raise ValueError(f"norm_num_groups: {groups} must divide every entry of block_out_channels {list(channels)}")
    heads = _ints(cfg, "attention_head_dim", n, allow_int=True)
    for c, h in zip(channels, (heads,) * n if isinstance(heads, int) else heads):
        if c % h:
            raise ValueError(f"attention_head_dim: the number of heads ({h}) must divide the channels ({c}); got {cfg['attention_head_dim']!r}")
    cross = cfg["cross_attention_dim"]
    if isinstance(cross, bool) or not isinstance(cross, int) or cross < 1:
        raise _unsupported(model, "cross_attention_dim", "a positive int (one width for all blocks)", cross)
    shift = cfg["resnet_time_scale_shift"]
    if shift not in ("default", "scale_shift"):
        raise _unsupported(model, "resnet_time_scale_shift", "'default' or 'scale_shift'", shift)
    time_dim = cfg["time_embedding_dim"]
    if time_dim is not None:
        time_dim = _int(cfg, "time_embedding_dim")
    dropout = _number(cfg, "dropout")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
    for key in ("conv_in_kernel", "conv_out_kernel"):
        if _int(cfg, key) % 2 == 0:
            raise _unsupported(model, key, "odd kernel sizes", cfg[key])
    return UNet2DConditionModel(
        sample_size=_sample_size(cfg, allow_none=True),
        in_channels=_int(cfg, "in_channels"),
        out_channels=_int(cfg, "out_channels"),
        center_input_sample=_bool(cfg, "center_input_sample"),
        flip_sin_to_cos=_bool(cfg, "flip_sin_to_cos"),
        freq_shift=_number(cfg, "freq_shift"),
        down_block_types=down,
        mid_block_type=cfg["mid_block_type"],
        up_block_types=up,
        block_out_channels=channels,
        layers_per_block=_ints(cfg, "layers_per_block", n, allow_int=True),
        downsample_padding=_int(cfg, "downsample_padding", minimum=0),
        mid_block_scale_factor=_number(cfg, "mid_block_scale_factor"),
        dropout=dropout,
        norm_num_groups=groups,
        norm_eps=_number(cfg, "norm_eps"),
        cross_attention_dim=cross,
        transformer_layers_per_block=_ints(cfg, "transformer_layers_per_block", n, allow_int=True),
        attention_head_dim=heads,
        use_linear_projection=_bool(cfg, "use_linear_projection"),
        upcast_attention=_bool(cfg, "upcast_attention"),
        resnet_time_scale_shift=shift,
        resnet_skip_time_act=_bool(cfg, "resnet_skip_time_act"),
        resnet_out_scale_factor=_number(cfg, "resnet_out_scale_factor"),
        time_embedding_dim=time_dim,
        conv_in_kernel=cfg["conv_in_kernel"],
        conv_out_kernel=cfg["conv_out_kernel"],
        dtype=dtype,
    )


def autoencoder_kl_from_diffusers_config(config: Mapping[str, Any], *, dtype: Any = jnp.float32) -> AutoencoderKL:
    """The :class:`~genjax.nn.sd.AutoencoderKL` of a diffusers ``config.json``.

    Keys missing from ``config`` take diffusers' ``AutoencoderKL.__init__`` defaults.
    Supported: ``DownEncoderBlock2D``/``UpDecoderBlock2D`` blocks, SiLU, optional
    ``quant_conv``/``post_quant_conv`` and middle attention; ``scaling_factor`` and
    ``shift_factor`` are kept as metadata; ``force_upcast`` (a float16 hint) is
    ignored; per-channel ``latents_mean``/``latents_std`` are rejected.

    Args:
      config: the parsed ``config.json``.
      dtype: computation dtype (parameters stay float32).

    Returns:
      The module (no parameters).

    Raises:
      ValueError: naming the first unsupported or invalid key, what genjax supports and
        the value given; or listing unknown keys.
    """
    model = "AutoencoderKL"
    cfg = _prepare(config, model, _VAE_DEFAULTS, _VAE_FIXED)
    channels = _ints(cfg, "block_out_channels")
    assert isinstance(channels, tuple)
    n = len(channels)
    down = _names(cfg, "down_block_types", tuple(VAE_DOWN_BLOCK_TYPES), n, model)
    up = _names(cfg, "up_block_types", tuple(VAE_UP_BLOCK_TYPES), n, model)
    groups = _int(cfg, "norm_num_groups")
    for c in channels:
        if c % groups:
            raise ValueError(f"norm_num_groups: {groups} must divide every entry of block_out_channels {list(channels)}")
    shift = cfg["shift_factor"]
    return AutoencoderKL(
        in_channels=_int(cfg, "in_channels"),
        out_channels=_int(cfg, "out_channels"),
        down_block_types=down,
        up_block_types=up,
        block_out_channels=channels,
        layers_per_block=_int(cfg, "layers_per_block"),
        latent_channels=_int(cfg, "latent_channels"),
        norm_num_groups=groups,
        sample_size=_sample_size(cfg, allow_none=False),
        scaling_factor=_number(cfg, "scaling_factor"),
        shift_factor=None if shift is None else _number(cfg, "shift_factor"),
        use_quant_conv=_bool(cfg, "use_quant_conv"),
        use_post_quant_conv=_bool(cfg, "use_post_quant_conv"),
        mid_block_add_attention=_bool(cfg, "mid_block_add_attention"),
        dtype=dtype,
    )


def diffusers_config(module: SDModule) -> dict[str, Any]:
    """The diffusers ``config.json`` dict of a :mod:`genjax.nn.sd` or :mod:`genjax.nn.unet2d` model.

    ``UNet2DConditionModel.from_config`` / ``AutoencoderKL.from_config`` /
    ``UNet2DModel.from_config`` of it build the same network, and
    :func:`sd_unet_from_diffusers_config` / :func:`autoencoder_kl_from_diffusers_config`
    / :func:`genjax.nn.diffusers_import.unet2d_from_diffusers_config` give back
    ``module`` (up to ``dtype``).

    Args:
      module: a :class:`~genjax.nn.sd.UNet2DConditionModel`,
        :class:`~genjax.nn.sd.AutoencoderKL` or :class:`~genjax.nn.unet2d.UNet2DModel`.

    Returns:
      A JSON-serialisable dict with ``_class_name`` and every field as a config key.
    """

    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    if isinstance(module, UNet2DConditionModel):
        keys = [k for k in _UNET_DEFAULTS if hasattr(module, k)]
        config = {"_class_name": "UNet2DConditionModel", "_diffusers_version": _DIFFUSERS_VERSION, "act_fn": "silu"}
    elif isinstance(module, AutoencoderKL):
        keys = [k for k in _VAE_DEFAULTS if hasattr(module, k)]
        config = {"_class_name": "AutoencoderKL", "_diffusers_version": _DIFFUSERS_VERSION, "act_fn": "silu"}
    elif isinstance(module, UNet2DModel):
        keys = list(UNET2D_CONFIG_KEYS)
        config = {"_class_name": "UNet2DModel", "_diffusers_version": _DIFFUSERS_VERSION}
    else:
        raise ValueError(f"module: expected a UNet2DConditionModel, AutoencoderKL or UNet2DModel, got {type(module).__name__}")
    for key in keys:
        config[key] = plain(getattr(module, key))
    return config


# ----------------------------------------------------------------------------- names

_LIST_ELEMENT = re.compile(r"^(.+)_(\d+)$")
# An Embed's "embedding" ([num, features] in both libraries) and a raw "weight" vector are copied as they are.
_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "embedding": "weight", "weight": "weight"}


def diffusers_key(path: tuple[str, ...]) -> str:
    """The diffusers state-dict key of a Flax parameter path (without ``'params'``).

    ``('down_blocks_0', 'resnets_1', 'conv1', 'kernel')`` ->
    ``'down_blocks.0.resnets.1.conv1.weight'``: ``<list>_<i>`` becomes ``<list>.<i>``
    for diffusers' list attributes only (``time_embedding/linear_1`` stays as is).

    Args:
      path: the parameter's path in the ``params`` collection.

    Returns:
      The dotted diffusers key.
    """
    parts: list[str] = []
    for name in path[:-1]:
        match = _LIST_ELEMENT.match(name)
        if match and match.group(1) in MODULE_LIST_NAMES:
            parts.extend(match.groups())
        else:
            parts.append(name)
    if path[-1] not in _LEAF_NAMES:
        raise ValueError(f"params: leaf {'/'.join(path)!r} has no diffusers counterpart")
    parts.append(_LEAF_NAMES[path[-1]])
    return ".".join(parts)


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    if path[-1] == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if path[-1] == "kernel" and len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def _to_flax(path: tuple[str, ...], weight: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)
    if path[-1] == "kernel" and weight.ndim == 2:
        return weight.T
    return weight


def _to_torch(path: tuple[str, ...], weight: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel" and weight.ndim == 4:
        return weight.transpose(3, 2, 0, 1)
    if path[-1] == "kernel" and weight.ndim == 2:
        return weight.T
    return weight


def reference_params(module: SDModule) -> Params:
    """``jax.eval_shape`` of ``module.init``: the parameter tree, with no allocation.

    Args:
      module: a :class:`~genjax.nn.sd.UNet2DConditionModel`,
        :class:`~genjax.nn.sd.AutoencoderKL` or :class:`~genjax.nn.unet2d.UNet2DModel`.

    Returns:
      ``{"params": ...}`` of ``jax.ShapeDtypeStruct`` leaves.
    """
    key = jax.random.key(0)
    size = 2 ** (len(module.block_out_channels) - 1)
    if isinstance(module, UNet2DConditionModel):
        x = jax.ShapeDtypeStruct((1, size, size, module.in_channels), jnp.float32)
        t = jax.ShapeDtypeStruct((1,), jnp.float32)
        c = jax.ShapeDtypeStruct((1, 1, module.cross_attention_dim), jnp.float32)
        return jax.eval_shape(lambda x, t, c: module.init(key, x, t, c), x, t, c)
    if isinstance(module, AutoencoderKL):
        x = jax.ShapeDtypeStruct((1, size, size, module.in_channels), jnp.float32)
        return jax.eval_shape(lambda x: module.init(key, x), x)
    if isinstance(module, UNet2DModel):
        x, t, y = module.example_inputs()
        return jax.eval_shape(lambda x, t, y: module.init(key, x, t, y), x, t, y)
    raise ValueError(f"module: expected a UNet2DConditionModel, AutoencoderKL or UNet2DModel, got {type(module).__name__}")


def sd_params_from_diffusers(state: Mapping[str, Any], module: SDModule) -> Params:
    """Converts a diffusers state dict into ``module``'s Flax parameters.

    Args:
      state: tensor name -> array (numpy, or anything ``np.asarray`` accepts) in
        PyTorch layout, as in ``diffusion_pytorch_model.safetensors``.
      module: the target model (normally from :func:`sd_unet_from_diffusers_config`,
        :func:`autoencoder_kl_from_diffusers_config` or
        :func:`genjax.nn.diffusers_import.unet2d_from_diffusers_config`).

    Returns:
      ``{"params": ...}`` with exactly the tree, shapes and dtypes (float32) of
      ``module.init``.

    Raises:
      ValueError: listing, in one message, every missing tensor (with its expected
        shape), every unexpected tensor, and every shape mismatch (``name: expected
        (...), got (...)``) or non-float / non-finite tensor.
    """
    reference = reference_params(module)
    flat_reference = traverse_util.flatten_dict(reference["params"])
    flat: dict[tuple[str, ...], jax.Array] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for path, leaf in flat_reference.items():
        key = diffusers_key(path)
        expected = _torch_shape(path, tuple(leaf.shape))
        if key not in state:
            missing.append(f"{key} {expected}")
            continue
        used.add(key)
        weight = np.asarray(state[key])
        if tuple(weight.shape) != expected:
            mismatched.append(f"{key}: expected {expected}, got {tuple(weight.shape)}")
        elif not np.issubdtype(weight.dtype, np.floating):
            mismatched.append(f"{key}: expected a floating-point array, got dtype {weight.dtype}")
        elif not np.all(np.isfinite(weight)):
            mismatched.append(f"{key}: has NaN or Inf values")
        else:
            flat[path] = jnp.asarray(_to_flax(path, weight), dtype=jnp.float32)
    unexpected = sorted(set(state) - used)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s): {sorted(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s): {unexpected}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape/dtype/value mismatch(es): {mismatched}")
        raise ValueError(f"state: the diffusers state dict does not match the {type(module).__name__}; " + "; ".join(parts))
    params = {"params": traverse_util.unflatten_dict(flat)}
    chex.assert_trees_all_equal_shapes_and_dtypes(params, reference)
    return params


def sd_params_to_diffusers(params: Params) -> dict[str, np.ndarray]:
    """Converts Flax parameters of a :mod:`genjax.nn.sd` model into a diffusers state dict.

    Args:
      params: ``{"params": ...}`` (or the inner ``params`` tree) of a
        :class:`~genjax.nn.sd.UNet2DConditionModel`,
        :class:`~genjax.nn.sd.AutoencoderKL` or :class:`~genjax.nn.unet2d.UNet2DModel`.

    Returns:
      Diffusers key -> C-contiguous float32 numpy array in PyTorch layout.
    """
    tree = params["params"] if isinstance(params, Mapping) and set(params) == {"params"} else params
    state: dict[str, np.ndarray] = {}
    for path, leaf in traverse_util.flatten_dict(tree).items():
        key = diffusers_key(tuple(str(p) for p in path))
        if key in state:
            raise ValueError(f"params: two parameters map to the diffusers key {key!r}")
        state[key] = np.ascontiguousarray(_to_torch(path, np.asarray(leaf, dtype=np.float32)))
    return state


def _check_params(params: Params, module: SDModule) -> None:
    tree = params["params"] if isinstance(params, Mapping) and set(params) == {"params"} else params
    given = {diffusers_key(tuple(str(p) for p in k)): tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(tree).items()}
    expected = {diffusers_key(k): tuple(v.shape) for k, v in traverse_util.flatten_dict(reference_params(module)["params"]).items()}
    problems = [f"missing {k} {expected[k]}" for k in sorted(expected.keys() - given.keys())]
    problems += [f"unexpected {k} {given[k]}" for k in sorted(given.keys() - expected.keys())]
    problems += [f"{k}: expected {expected[k]}, got {given[k]}" for k in sorted(expected.keys() & given.keys()) if expected[k] != given[k]]
    if problems:
        raise ValueError(f"params: do not match the {type(module).__name__} (Flax shapes, diffusers names): {problems}")


# ----------------------------------------------------------------------------- files


def _find_model_folder(folder: str | os.PathLike[str], subfolder: str) -> str:
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder: no such directory {folder!r}")
    if os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        return folder
    nested = os.path.join(folder, subfolder)
    if os.path.isfile(os.path.join(nested, CONFIG_NAME)):
        return nested
    raise FileNotFoundError(
        f"folder: found neither {os.path.join(folder, CONFIG_NAME)!r} nor {os.path.join(nested, CONFIG_NAME)!r} (a diffusers pipeline's {subfolder}/ subfolder)"
    )


def read_diffusers_folder(folder: str | os.PathLike[str], subfolder: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads a diffusers model folder: its ``config.json`` and ``diffusion_pytorch_model.safetensors``.

    The weights are read with ``safetensors.numpy``: no torch, and never ``pickle`` (a
    folder with only ``diffusion_pytorch_model.bin`` is refused with instructions to
    convert it).

    Args:
      folder: the model folder, or a pipeline folder holding it as ``subfolder``.
      subfolder: the pipeline's component folder (``"unet"``, ``"vae"``).

    Returns:
      ``(config, state)``: the parsed JSON and tensor name -> numpy array.

    Raises:
      FileNotFoundError: naming the missing folder or file.
      ValueError: for invalid JSON or an unreadable safetensors file.
    """
    model_folder = _find_model_folder(folder, subfolder)
    weights = os.path.join(model_folder, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        pickle_path = os.path.join(model_folder, PICKLE_WEIGHTS_NAME)
        if os.path.isfile(pickle_path):
            raise FileNotFoundError(
                f"folder: {weights!r} not found, only {pickle_path!r}. A .bin checkpoint is a Python pickle, "
                "which can execute arbitrary code when loaded, so genjax does not unpickle it. Convert it once, "
                "in an environment you trust, with diffusers: <Model>.from_pretrained(folder)"
                ".save_pretrained(out_folder, safe_serialization=True), then load out_folder."
            )
        raise FileNotFoundError(f"folder: weights file {weights!r} not found (sharded and variant checkpoints are not read)")
    config_path = os.path.join(model_folder, CONFIG_NAME)
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"folder: {config_path!r} is not valid JSON ({err})") from None

    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        state = load_file(weights)
    except (SafetensorError, TypeError, ValueError) as err:  # a corrupt file; bfloat16 has no numpy dtype
        raise ValueError(
            f"folder: cannot read {weights!r} as numpy arrays ({type(err).__name__}: {err}); genjax reads float16/32/64 "
            "safetensors files: re-save a bfloat16 checkpoint in float32"
        ) from None
    return config, state


def load_diffusers_sd_unet(folder: str | os.PathLike[str], *, dtype: Any = jnp.float32) -> tuple[UNet2DConditionModel, Params]:
    """Loads a diffusers ``UNet2DConditionModel`` folder (or a pipeline's ``unet/``).

    Reads ``config.json`` and ``diffusion_pytorch_model.safetensors`` with
    ``safetensors.numpy`` (no torch, never pickle), e.g. a local copy of Stable
    Diffusion v1.5 (Rombach et al. 2022, arXiv 2112.10752).

    Args:
      folder: the model folder, or a pipeline folder with ``unet/``.
      dtype: computation dtype (parameters are float32).

    Returns:
      ``(module, params)``; ``module.apply(params, x_nhwc, t, context)`` equals the
      diffusers model's ``.sample`` transposed to NHWC.

    Raises:
      FileNotFoundError: naming the missing folder or file (``.bin`` pickles are refused).
      ValueError: for a config or state dict genjax cannot map exactly.
    """
    config, state = read_diffusers_folder(folder, "unet")
    module = sd_unet_from_diffusers_config(config, dtype=dtype)
    return module, sd_params_from_diffusers(state, module)


def load_diffusers_autoencoder_kl(folder: str | os.PathLike[str], *, dtype: Any = jnp.float32) -> tuple[AutoencoderKL, Params]:
    """Loads a diffusers ``AutoencoderKL`` folder (or a pipeline's ``vae/``).

    Reads ``config.json`` and ``diffusion_pytorch_model.safetensors`` with
    ``safetensors.numpy`` (no torch, never pickle), e.g. Stable Diffusion v1.5's VAE
    (Rombach et al. 2022, arXiv 2112.10752, Section 3.1).

    Args:
      folder: the model folder, or a pipeline folder with ``vae/``.
      dtype: computation dtype (parameters are float32).

    Returns:
      ``(module, params)``; ``module.apply(params, x, method=AutoencoderKL.encode)``
      gives the diffusers posterior's ``(mean, logvar)`` in NHWC.

    Raises:
      FileNotFoundError: naming the missing folder or file (``.bin`` pickles are refused).
      ValueError: for a config or state dict genjax cannot map exactly.
    """
    config, state = read_diffusers_folder(folder, "vae")
    module = autoencoder_kl_from_diffusers_config(config, dtype=dtype)
    return module, sd_params_from_diffusers(state, module)


def save_diffusers(folder: str | os.PathLike[str], module: SDModule, params: Params) -> None:
    """Writes ``module`` and ``params`` as a diffusers model folder.

    ``config.json`` (:func:`diffusers_config`) and ``diffusion_pytorch_model.safetensors``
    (:func:`sd_params_to_diffusers`, float32), which diffusers'
    ``UNet2DConditionModel.from_pretrained(folder)`` / ``AutoencoderKL.from_pretrained
    (folder)`` / ``UNet2DModel.from_pretrained(folder)`` open, and
    :func:`load_diffusers_sd_unet` / :func:`load_diffusers_autoencoder_kl` /
    :func:`genjax.nn.diffusers_import.load_diffusers_unet` read back bitwise.

    Args:
      folder: the output folder (created if needed; the two files are overwritten).
      module: a :class:`~genjax.nn.sd.UNet2DConditionModel`,
        :class:`~genjax.nn.sd.AutoencoderKL` or :class:`~genjax.nn.unet2d.UNet2DModel`.
      params: its parameters (``{"params": ...}``).

    Raises:
      ValueError: if ``params`` does not have ``module``'s tree, shapes and dtypes.
    """
    config = diffusers_config(module)
    _check_params(params, module)
    state = sd_params_to_diffusers(params)
    from safetensors.numpy import save_file

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(state, os.path.join(folder, WEIGHTS_NAME), metadata={"format": "pt"})
