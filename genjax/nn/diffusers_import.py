"""Import diffusers ``UNet2DModel`` checkpoints: any configuration, and DDPM ones into genjax's UNet.

diffusers' ``UNet2DModel`` is the image U-Net of its DDPM, DDIM and score-SDE pipelines:
the DDPM network of Ho, Jain & Abbeel (2020, "Denoising Diffusion Probabilistic
Models", arXiv 2006.11239; ``google/ddpm-cifar10-32`` and its siblings), the NCSN++
network of Song et al. (2021, "Score-Based Generative Modeling through Stochastic
Differential Equations", arXiv 2011.13456; ``google/ncsnpp-*``) and the variants its
config keys select. Two targets:

* the general one, :class:`genjax.nn.unet2d.UNet2DModel`, a module-for-module mirror of
  diffusers' class: :func:`unet2d_from_diffusers_config` builds it from any
  ``config.json`` that diffusers' ``UNet2DModel`` builds and runs (missing keys take
  ``UNet2DModel.__init__``'s defaults, exactly as in diffusers), and
  :func:`load_diffusers_unet` loads a saved folder into it. This is the default
  loader.
* genjax's own DDPM network :class:`genjax.nn.unet.UNet` (the DDPM family's model, its
  presets and training code): :func:`unet_from_diffusers_config` maps a DDPM-style
  config onto it and refuses, naming the key, any setting it cannot reproduce;
  :func:`load_diffusers_ddpm_unet` loads a folder into it. The parameter-name
  correspondence is listed in :mod:`genjax.nn.unet`.

:func:`convert_diffusers_state_dict` converts a PyTorch state dict for either target
(``[out, in, kh, kw]`` convolutions to ``[kh, kw, in, out]``, ``Linear`` ``[out, in]``
to ``[in, out]``), checking that every tensor is used and every parameter filled with
the right shape, and reporting all problems in one ``ValueError``. The pre-0.14
attention names ``query``/``key``/``value``/``proj_attn`` are accepted, as diffusers
does on load. Files are read with ``safetensors.numpy``: no torch, no network access
and never ``pickle``.
"""

from __future__ import annotations

import dataclasses
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

from genjax.nn.sd_import import _bool, _int, _number, _prepare, read_diffusers_folder, reference_params, sd_params_from_diffusers
from genjax.nn.unet import UNet
from genjax.nn.unet2d import UNET2D_CONFIG_KEYS, UNet2DModel

__all__ = [
    "DDPM_CIFAR10_DIFFUSERS_CONFIG",
    "convert_diffusers_state_dict",
    "load_diffusers_ddpm_unet",
    "load_diffusers_unet",
    "unet2d_from_diffusers_config",
    "unet_from_diffusers_config",
]

Params = Any

# ``UNet2DModel.__init__``'s defaults (diffusers 0.42; unchanged since 0.20), which are
# the defaults of genjax's UNet2DModel fields. A key missing from config.json takes these
# values when diffusers builds the model, so the importer reads it the same way: e.g. a
# config without ``freq_shift`` means 0.
_DIFFUSERS_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(UNet2DModel) if f.name in UNET2D_CONFIG_KEYS}

# Block types genjax's DDPM UNet can express; diffusers strips a leading "UNetRes" from block names.
_PLAIN_DOWN, _ATTN_DOWN = "DownBlock2D", "AttnDownBlock2D"
_PLAIN_UP, _ATTN_UP = "UpBlock2D", "AttnUpBlock2D"
_SWISH_NAMES = ("silu", "swish")  # both are torch.nn.SiLU in diffusers' get_activation


# The config.json of google/ddpm-cifar10-32 (the DDPM paper's CIFAR-10 network), for tests,
# benchmarks and building a diffusers twin of genjax.nn.ddpm_cifar10.
DDPM_CIFAR10_DIFFUSERS_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DModel",
    "_diffusers_version": "0.0.4",
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


def _block_type(name: Any, key: str, index: int, allowed: tuple[str, str]) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{key}: entry {index} must be a block type name, got {name!r}")
    stripped = name.removeprefix("UNetRes")
    if stripped not in allowed:
        raise ValueError(f"{key}: entry {index} is {name!r}; genjax's UNet can import only {allowed[0]!r} and {allowed[1]!r} blocks")
    return stripped


def _require(config: Mapping[str, Any], key: str, expected: Any, why: str) -> None:
    value = config[key]
    same = (
        math.isclose(float(value), float(expected), rel_tol=1e-9)
        if isinstance(expected, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
        else value == expected and type(value) is type(expected)
    )
    if not same:
        raise ValueError(f"{key}: genjax's UNet needs {key}={expected!r} ({why}); the config has {value!r}")


def _positive_int(config: Mapping[str, Any], key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}: expected a positive int, got {value!r}")
    return value


def _sample_height(config: Mapping[str, Any], num_levels: int) -> int | None:
    size = config["sample_size"]
    if size is None:
        return None
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ValueError(f"sample_size: expected an int or [height, width], got {size!r}")
        sizes = tuple(size)
    else:
        sizes = (size, size)
    factor = 2 ** (num_levels - 1)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1 or s % factor:
            raise ValueError(f"sample_size: must be positive multiples of 2**(len(block_out_channels) - 1) = {factor}, got {size!r}")
    return sizes[0]


def _optional_int(cfg: Mapping[str, Any], key: str) -> int | None:
    return None if cfg[key] is None else _int(cfg, key)


def _names(cfg: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = cfg[key]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of block type names, got {value!r}")
    return tuple(value)


def _string(cfg: Mapping[str, Any], key: str, optional: bool = False) -> Any:
    value = cfg[key]
    if not (isinstance(value, str) or (optional and value is None)):
        raise ValueError(f"{key}: expected a string{' or null' if optional else ''}, got {value!r}")
    return value


def _size(cfg: Mapping[str, Any]) -> int | tuple[int, int] | None:
    value = cfg["sample_size"]
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return (value[0], value[1])
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"sample_size: expected null, a positive int or [height, width], got {value!r}")
    return value


def unet2d_from_diffusers_config(config: Mapping[str, Any], *, dtype: Any = jnp.float32) -> UNet2DModel:
    """The :class:`~genjax.nn.unet2d.UNet2DModel` of a diffusers ``UNet2DModel`` ``config.json``.

    Accepts every configuration diffusers' ``UNet2DModel`` builds and runs (DDPM, Ho et
    al. 2020, arXiv 2006.11239; NCSN++, Song et al. 2021, arXiv 2011.13456; and the
    other combinations of its options; see :mod:`genjax.nn.unet2d` for the block types).
    Keys missing from ``config`` take ``UNet2DModel.__init__``'s defaults, as in
    diffusers; ``_``-prefixed metadata keys are ignored. ``downsample_type`` /
    ``upsample_type`` null mean ``"conv"``, as in diffusers' attention blocks.

    Args:
      config: the parsed ``config.json``.
      dtype: computation dtype (parameters stay float32).

    Returns:
      The module (no parameters).

    Raises:
      ValueError: naming the first invalid key, what is expected and the value given
        (unknown keys, unknown or refused block types with the reason, mismatched
        lengths, non-positive channel counts, and every combination diffusers cannot
        run).
    """
    cfg = _prepare(config, "UNet2DModel", _DIFFUSERS_DEFAULTS, {}, silu_only=False)
    channels = cfg["block_out_channels"]
    if not isinstance(channels, (list, tuple)):
        raise ValueError(f"block_out_channels: expected a non-empty list of positive ints, got {channels!r}")
    module = UNet2DModel(
        sample_size=_size(cfg),
        in_channels=_int(cfg, "in_channels"),
        out_channels=_int(cfg, "out_channels"),
        center_input_sample=_bool(cfg, "center_input_sample"),
        time_embedding_type=_string(cfg, "time_embedding_type"),
        time_embedding_dim=_optional_int(cfg, "time_embedding_dim"),
        freq_shift=_number(cfg, "freq_shift"),
        flip_sin_to_cos=_bool(cfg, "flip_sin_to_cos"),
        down_block_types=_names(cfg, "down_block_types"),
        mid_block_type=_string(cfg, "mid_block_type", optional=True),
        up_block_types=_names(cfg, "up_block_types"),
        block_out_channels=tuple(channels),
        layers_per_block=_int(cfg, "layers_per_block"),
        mid_block_scale_factor=_number(cfg, "mid_block_scale_factor"),
        downsample_padding=_int(cfg, "downsample_padding", minimum=0),
        downsample_type=_string(cfg, "downsample_type", optional=True) or "conv",
        upsample_type=_string(cfg, "upsample_type", optional=True) or "conv",
        dropout=_number(cfg, "dropout"),
        act_fn=_string(cfg, "act_fn"),
        attention_head_dim=_optional_int(cfg, "attention_head_dim"),
        norm_num_groups=_optional_int(cfg, "norm_num_groups"),
        attn_norm_num_groups=_optional_int(cfg, "attn_norm_num_groups"),
        norm_eps=_number(cfg, "norm_eps"),
        resnet_time_scale_shift=_string(cfg, "resnet_time_scale_shift"),
        add_attention=_bool(cfg, "add_attention"),
        class_embed_type=_string(cfg, "class_embed_type", optional=True),
        num_class_embeds=_optional_int(cfg, "num_class_embeds"),
        num_train_timesteps=_optional_int(cfg, "num_train_timesteps"),
        dtype=dtype,
    )
    if module.norm_eps <= 0:
        raise ValueError(f"norm_eps: expected a positive number, got {module.norm_eps!r}")
    module.validate()
    try:  # the remaining combinations that diffusers cannot run fail on shapes when traced
        reference_params(module)
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(
            f"config: diffusers' UNet2DModel cannot run this combination of down_block_types={list(module.down_block_types)}, "
            f"up_block_types={list(module.up_block_types)}, block_out_channels={list(module.block_out_channels)} and "
            f"norm_num_groups={module.norm_num_groups} ({type(err).__name__}: {err})"
        ) from None
    return module


def unet_from_diffusers_config(config: Mapping[str, Any], *, dtype: Any = jnp.float32) -> UNet:
    """The genjax DDPM :class:`~genjax.nn.unet.UNet` equal to a DDPM-style diffusers ``UNet2DModel``.

    For the DDPM family's own network; :func:`unet2d_from_diffusers_config` accepts
    every configuration.

    The DDPM network of Ho et al. (2020, arXiv 2006.11239, Appendix B) as configured in
    diffusers: ``ch = block_out_channels[0]``, ``ch_mult = block_out_channels / ch``,
    ``num_res_blocks = layers_per_block``, ``attn_resolutions`` = the heights
    ``sample_size / 2**i`` of the levels ``i`` whose down block is ``AttnDownBlock2D``,
    ``num_groups = norm_num_groups``, ``out_channels``, ``dropout`` (only active with
    ``train=True``, as in diffusers' training mode) and ``num_classes =
    num_class_embeds`` (a plain label embedding added to the time embedding). Keys
    missing from ``config`` take ``UNet2DModel``'s defaults, as in diffusers.

    Every option that changes the computation must equal genjax's convention:
    ``time_embedding_type="positional"``, ``flip_sin_to_cos=False``, ``freq_shift=1``,
    ``time_embedding_dim`` unset or ``4 * ch``, ``norm_eps=1e-6``, ``act_fn="silu"``,
    ``center_input_sample=False``, ``resnet_time_scale_shift="default"``,
    ``mid_block_type="UNetMidBlock2D"`` with ``add_attention=True`` and
    ``mid_block_scale_factor=1``, ``downsample_padding=0``, plain ``conv`` resamplers,
    ``attention_head_dim`` unset or equal to the channel count at every attention
    (one head over all channels), ``attn_norm_num_groups`` unset or ``norm_num_groups``,
    no ``class_embed_type``, and attention on the same levels of the down and up paths.

    Args:
      config: the ``config.json`` of a ``UNet2DModel`` (as a dict).
      dtype: the UNet's computation dtype (parameters stay float32).

    Returns:
      The ``UNet`` module (not its parameters).

    Raises:
      ValueError: naming the first config key (and its value) that genjax's UNet cannot
        reproduce exactly, or an unknown key.
    """
    cfg = _prepare(config, "UNet2DModel", _DIFFUSERS_DEFAULTS, {}, silu_only=False)

    # Time embedding (diffusers Timesteps + TimestepEmbedding).
    _require(cfg, "time_embedding_type", "positional", "the sinusoidal embedding of the DDPM")
    _require(cfg, "flip_sin_to_cos", False, "the embedding is [sin | cos]")
    if isinstance(cfg["freq_shift"], bool) or not isinstance(cfg["freq_shift"], (int, float)) or cfg["freq_shift"] != 1:
        raise ValueError(f"freq_shift: genjax's UNet needs freq_shift=1 (frequencies exp(-log(10000) i / (half - 1))); the config has {cfg['freq_shift']!r}")
    _require(cfg, "center_input_sample", False, "inputs are used as given")
    _require(cfg, "norm_eps", 1e-6, "its GroupNorm epsilon")
    if cfg["act_fn"] not in _SWISH_NAMES:
        raise ValueError(f"act_fn: genjax's UNet uses swish/SiLU ('silu'); the config has {cfg['act_fn']!r}")
    _require(cfg, "resnet_time_scale_shift", "default", "the time embedding is added, not a scale-shift")
    _require(cfg, "mid_block_type", "UNetMidBlock2D", "its middle is ResBlock, attention, ResBlock")
    _require(cfg, "add_attention", True, "its middle block has attention")
    if cfg["mid_block_scale_factor"] != 1 or isinstance(cfg["mid_block_scale_factor"], bool):
        raise ValueError(
            f"mid_block_scale_factor: genjax's UNet needs mid_block_scale_factor=1 (no output rescaling); the config has {cfg['mid_block_scale_factor']!r}"
        )
    _require(cfg, "downsample_padding", 0, "stride-2 convs pad one row/column at the bottom/right only")
    if cfg["class_embed_type"] is not None:
        raise ValueError(
            f"class_embed_type: genjax's UNet supports only the plain label embedding (class_embed_type=None "
            f"with num_class_embeds); the config has {cfg['class_embed_type']!r}"
        )
    num_classes = 0
    if cfg["num_class_embeds"] is not None:
        num_classes = _positive_int(cfg, "num_class_embeds")

    # Levels and widths.
    channels = cfg["block_out_channels"]
    if not isinstance(channels, (list, tuple)) or not channels:
        raise ValueError(f"block_out_channels: expected a non-empty list of ints, got {channels!r}")
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"block_out_channels: expected positive ints, got {channels!r}")
    ch = channels[0]
    if any(c % ch for c in channels):
        raise ValueError(f"block_out_channels: every entry must be a multiple of the first ({ch}) to give integer ch_mult; got {list(channels)}")
    ch_mult = tuple(c // ch for c in channels)
    num_levels = len(channels)
    down, up = cfg["down_block_types"], cfg["up_block_types"]
    for key, types in (("down_block_types", down), ("up_block_types", up)):
        if not isinstance(types, (list, tuple)) or len(types) != num_levels:
            raise ValueError(f"{key}: expected {num_levels} block types (one per entry of block_out_channels), got {types!r}")
    down = [_block_type(n, "down_block_types", i, (_PLAIN_DOWN, _ATTN_DOWN)) for i, n in enumerate(down)]
    up = [_block_type(n, "up_block_types", i, (_PLAIN_UP, _ATTN_UP)) for i, n in enumerate(up)]
    attn_levels = [i for i, n in enumerate(down) if n == _ATTN_DOWN]
    up_attn_levels = [num_levels - 1 - k for k, n in enumerate(up) if n == _ATTN_UP]
    if sorted(up_attn_levels) != attn_levels:
        raise ValueError(
            f"up_block_types: genjax's UNet attends at the same resolutions on the way down and up, so "
            f"up_block_types[{num_levels - 1} - i] must be 'AttnUpBlock2D' exactly when down_block_types[i] "
            f"is 'AttnDownBlock2D'; got down_block_types={list(cfg['down_block_types'])}, "
            f"up_block_types={list(cfg['up_block_types'])}"
        )
    # Only attention blocks read downsample_type / upsample_type, and only where they resample.
    if cfg["downsample_type"] != "conv" and any(i != num_levels - 1 for i in attn_levels):
        raise ValueError(f"downsample_type: genjax's UNet downsamples with a strided conv ('conv'); the config has {cfg['downsample_type']!r}")
    if cfg["upsample_type"] != "conv" and any(i != 0 for i in attn_levels):
        raise ValueError(f"upsample_type: genjax's UNet upsamples with nearest-neighbour + conv ('conv'); the config has {cfg['upsample_type']!r}")
    num_res_blocks = _positive_int(cfg, "layers_per_block")

    # Normalisation and attention heads.
    groups = cfg["norm_num_groups"]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"norm_num_groups: expected a positive int, got {groups!r}")
    if cfg["attn_norm_num_groups"] is not None and cfg["attn_norm_num_groups"] != groups:
        raise ValueError(
            f"attn_norm_num_groups: genjax's UNet uses norm_num_groups={groups} in every GroupNorm; the config has {cfg['attn_norm_num_groups']!r}"
        )
    head_dim = cfg["attention_head_dim"]
    if head_dim is not None:
        attn_widths = sorted({channels[i] for i in attn_levels} | {channels[-1]})  # the middle attends too
        if any(head_dim != w for w in attn_widths):
            raise ValueError(
                f"attention_head_dim: genjax's UNet uses one attention head over all channels, so "
                f"attention_head_dim must be null or equal the width at every attention ({attn_widths}); "
                f"the config has {head_dim!r}"
            )
    temb_dim = cfg["time_embedding_dim"]
    if temb_dim is not None and temb_dim != 4 * ch:
        raise ValueError(f"time_embedding_dim: genjax's UNet uses 4 * block_out_channels[0] = {4 * ch}; the config has {temb_dim!r}")
    dropout = cfg["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
    out_channels = _positive_int(cfg, "out_channels")
    _positive_int(cfg, "in_channels")

    height = _sample_height(cfg, num_levels)
    if attn_levels and height is None:
        raise ValueError("sample_size: needed to place attention (genjax attends at feature-map heights), got None")
    attn_resolutions = tuple(height // 2**i for i in attn_levels) if attn_levels else ()
    return UNet(
        out_channels=out_channels,
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=attn_resolutions,
        dropout=float(dropout),
        num_groups=groups,
        num_classes=num_classes,
        resample_with_conv=True,
        dtype=dtype,
    )


# ------------------------------------------------------------------------- names

_TOP_LEVEL = {
    "time_embed_0": "time_embedding.linear_1",
    "time_embed_1": "time_embedding.linear_2",
    "label_embed": "class_embedding",
    "conv_in": "conv_in",
    "norm_out": "conv_norm_out",
    "conv_out": "conv_out",
    "mid_res_0": "mid_block.resnets.0",
    "mid_attn": "mid_block.attentions.0",
    "mid_res_1": "mid_block.resnets.1",
}
_INSIDE = {
    # ResBlock
    "norm1": "norm1",
    "conv1": "conv1",
    "temb_proj": "time_emb_proj",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
    # AttentionBlock
    "norm": "group_norm",
    "q": "to_q",
    "k": "to_k",
    "v": "to_v",
    "proj_out": "to_out.0",
    # Downsample / Upsample
    "conv": "conv",
}
_LEAF = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}
_BLOCK = re.compile(r"^(down|up)_(\d+)_(res|attn)_(\d+)$")
_RESAMPLE = re.compile(r"^(down|up)_(\d+)_(downsample|upsample)$")
# Attention parameter names of diffusers < 0.14 (``AttentionBlock``), renamed on load by
# ``ModelMixin._fix_state_dict_keys_on_load``; old hub checkpoints still carry them.
_DEPRECATED_ATTENTION = re.compile(r"^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")
_DEPRECATED_RENAME = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _torch_module(module: str, num_levels: int) -> str:
    if module in _TOP_LEVEL:
        return _TOP_LEVEL[module]
    match = _BLOCK.match(module)
    if match:
        path, level, kind, j = match.groups()
        block = int(level) if path == "down" else num_levels - 1 - int(level)
        return f"{path}_blocks.{block}.{'resnets' if kind == 'res' else 'attentions'}.{j}"
    match = _RESAMPLE.match(module)
    if match:
        path, level, kind = match.groups()
        block = int(level) if path == "down" else num_levels - 1 - int(level)
        return f"{path}_blocks.{block}.{kind}rs.0"
    raise ValueError(f"model: parameter module {module!r} has no diffusers counterpart")


def _torch_key(path: tuple[str, ...], num_levels: int) -> str:
    """The diffusers state-dict key of a genjax parameter path (without ``'params'``)."""
    names = [_torch_module(path[0], num_levels)]
    for inner in path[1:-1]:
        if inner not in _INSIDE:
            raise ValueError(f"model: parameter module {'/'.join(path[:-1])!r} has no diffusers counterpart")
        names.append(_INSIDE[inner])
    names.append(_LEAF[path[-1]])
    return ".".join(names)


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape of a genjax parameter of ``shape``."""
    if path[-1] != "kernel":
        return shape
    if len(shape) == 4:  # conv [kh, kw, in, out] <- [out, in, kh, kw]
        return (shape[3], shape[2], shape[0], shape[1])
    if path[-2] == "nin_shortcut":  # Dense [in, out] <- 1x1 conv [out, in, 1, 1]
        return (shape[1], shape[0], 1, 1)
    return (shape[1], shape[0])  # Dense [in, out] <- Linear [out, in]


def _to_flax(path: tuple[str, ...], weight: np.ndarray) -> np.ndarray:
    if path[-1] != "kernel":
        return weight
    if weight.ndim == 4 and path[-2] == "nin_shortcut":
        return weight[:, :, 0, 0].T
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)
    return weight.T


def _rename_deprecated(state: Mapping[str, Any]) -> dict[str, Any]:
    renamed: dict[str, Any] = {}
    for key, value in state.items():
        match = _DEPRECATED_ATTENTION.match(key)
        new = key
        if match:
            prefix, old, leaf = match.groups()
            new = f"{prefix}.{_DEPRECATED_RENAME[old]}.{leaf}"
        if new in renamed or (new != key and new in state):
            raise ValueError(f"state: both {key!r} and its current name {new!r} are present")
        renamed[new] = value
    return renamed


def _convert_to_ddpm_unet(state: Mapping[str, Any], model: UNet, image_shape: tuple[int, int, int]) -> Params:
    if len(tuple(image_shape)) != 3:
        raise ValueError(f"image_shape: expected (H, W, C), got {image_shape!r}")
    height, width, in_channels = (int(d) for d in image_shape)
    x = jax.ShapeDtypeStruct((1, height, width, in_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.int32)
    if model.num_classes > 0:
        y = jax.ShapeDtypeStruct((1,), jnp.int32)
        reference = jax.eval_shape(lambda x, t, y: model.init(jax.random.key(0), x, t, y), x, t, y)
    else:
        reference = jax.eval_shape(lambda x, t: model.init(jax.random.key(0), x, t), x, t)

    num_levels = len(model.ch_mult)
    flat_reference = traverse_util.flatten_dict(reference["params"])
    flat: dict[tuple[str, ...], jax.Array] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for path, leaf in flat_reference.items():
        key = _torch_key(path, num_levels)
        expected = _torch_shape(path, tuple(leaf.shape))
        if key not in state:
            missing.append(f"{key} {expected}")
            continue
        used.add(key)
        weight = np.asarray(state[key])
        if tuple(weight.shape) != expected:
            mismatched.append(f"{key}: expected {expected}, got {tuple(weight.shape)}")
            continue
        if not np.issubdtype(weight.dtype, np.floating):
            mismatched.append(f"{key}: expected a floating-point array, got dtype {weight.dtype}")
            continue
        if not np.all(np.isfinite(weight)):
            mismatched.append(f"{key}: has NaN or Inf values")
            continue
        flat[path] = jnp.asarray(_to_flax(path, weight), dtype=jnp.float32)
    unexpected = sorted(set(state) - used)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {sorted(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {unexpected}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape/dtype/value mismatch(es): {mismatched}")
        raise ValueError("state: the diffusers state dict does not match the UNet; " + "; ".join(parts))
    params = {"params": traverse_util.unflatten_dict(flat)}
    chex.assert_trees_all_equal_shapes_and_dtypes(params, reference)
    return params


def convert_diffusers_state_dict(
    state: Mapping[str, Any],
    model: UNet2DModel | UNet,
    image_shape: tuple[int, int, int] | None = None,
) -> Params:
    """Converts a diffusers ``UNet2DModel`` state dict into ``model``'s Flax parameters.

    For a :class:`~genjax.nn.unet2d.UNet2DModel`, names follow
    :mod:`genjax.nn.sd_import`'s generic rule (``down_blocks.1.resnets.0.conv1.weight``
    <- ``down_blocks_1/resnets_0/conv1/kernel``). For a DDPM
    :class:`~genjax.nn.unet.UNet` they follow the table in :mod:`genjax.nn.unet` (e.g.
    ``down_{i}_res_{j}`` <- ``down_blocks.{i}.resnets.{j}``, ``up_{i}_*`` <-
    ``up_blocks.{L-1-i}``, the 1x1 ``conv_shortcut`` ``[out, in, 1, 1]`` -> ``Dense``
    ``[in, out]``). Both accept the pre-0.14 attention names ``query``/``key``/
    ``value``/``proj_attn`` for ``to_q``/``to_k``/``to_v``/``to_out.0``, as diffusers
    does on load. Layouts: conv ``[out, in, kh, kw]`` -> ``[kh, kw, in, out]``;
    ``Linear`` ``[out, in]`` -> ``[in, out]``; norm ``weight`` -> ``scale``; embedding
    tables as they are. Values are cast to float32.

    Args:
      state: parameter name -> array (numpy, or anything ``np.asarray`` accepts), as
        saved by ``UNet2DModel.save_pretrained``.
      model: the target, normally from :func:`unet2d_from_diffusers_config` or
        :func:`unet_from_diffusers_config`.
      image_shape: for a DDPM ``UNet`` only: ``(H, W, C)`` of one input image at the
        config's ``sample_size`` (its attention is placed by feature-map height).

    Returns:
      ``{"params": ...}`` with exactly the tree structure, shapes and dtypes of
      ``model.init`` (``jax.eval_shape`` of it is the reference).

    Raises:
      ValueError: listing every missing key, unexpected key and shape mismatch (with
        the diffusers key and both shapes in PyTorch layout), or non-float / non-finite
        tensors.
    """
    state = _rename_deprecated(state)
    if isinstance(model, UNet2DModel):
        return sd_params_from_diffusers(state, model)
    if not isinstance(model, UNet):
        raise ValueError(f"model: expected a UNet2DModel or a UNet, got {type(model).__name__}")
    if image_shape is None:
        raise ValueError("image_shape: needed for a DDPM UNet, (H, W, C) of one input image")
    return _convert_to_ddpm_unet(state, model, image_shape)


def load_diffusers_unet(folder: str | os.PathLike[str], *, dtype: Any = jnp.float32) -> tuple[UNet2DModel, Params]:
    """Loads any diffusers ``UNet2DModel`` folder as a genjax :class:`~genjax.nn.unet2d.UNet2DModel`.

    The folder is what ``UNet2DModel.save_pretrained(folder, safe_serialization=True)``
    writes (``config.json`` and ``diffusion_pytorch_model.safetensors``), or a pipeline
    folder whose ``unet/`` subfolder holds them, such as a local copy of
    ``google/ddpm-cifar10-32`` (Ho et al. 2020, arXiv 2006.11239) or
    ``google/ncsnpp-celebahq-256`` (Song et al. 2021, arXiv 2011.13456). Weights are
    read with ``safetensors.numpy`` (no torch, no network). PyTorch ``.bin``
    checkpoints are pickles, which can run arbitrary code when loaded, and are refused.

    Args:
      folder: the model folder (or a pipeline folder with ``unet/``).
      dtype: computation dtype (parameters are float32).

    Returns:
      ``(model, params)`` with ``model.apply(params, x_nhwc, t, class_labels)`` equal
      to the diffusers model's ``.sample`` transposed to NHWC.

    Raises:
      FileNotFoundError: naming the missing folder or file; for a folder with only
        ``diffusion_pytorch_model.bin``, explaining how to convert it to safetensors.
      ValueError: for an invalid configuration or a state dict that does not match it.
    """
    config, state = read_diffusers_folder(folder, "unet")
    model = unet2d_from_diffusers_config(config, dtype=dtype)
    return model, convert_diffusers_state_dict(state, model)


def load_diffusers_ddpm_unet(folder: str | os.PathLike[str], *, dtype: Any = jnp.float32) -> tuple[UNet, Params]:
    """Loads a DDPM-style diffusers ``UNet2DModel`` folder as genjax's DDPM :class:`~genjax.nn.unet.UNet`.

    The folder layout and file handling are :func:`load_diffusers_unet`'s; the
    configuration must be one :func:`unet_from_diffusers_config` maps (the DDPM
    network of Ho et al. 2020, arXiv 2006.11239, as in ``google/ddpm-cifar10-32``).
    Use it to train, sample or benchmark the checkpoint with the DDPM family's own
    network.

    Args:
      folder: the model folder (or a pipeline folder with ``unet/``).
      dtype: the UNet's computation dtype (parameters are float32).

    Returns:
      ``(model, params)`` with ``model.apply(params, x_nhwc, t)`` equal to the diffusers
      model's ``.sample`` (transposed to NHWC) on inputs of height ``sample_size``.

    Raises:
      FileNotFoundError: as :func:`load_diffusers_unet`.
      ValueError: for a configuration or state dict genjax's UNet cannot map exactly.
    """
    config, state = read_diffusers_folder(folder, "unet")
    model = unet_from_diffusers_config(config, dtype=dtype)
    num_levels = len(model.ch_mult)
    size = config.get("sample_size") or 2 ** (num_levels - 1)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    in_channels = config.get("in_channels", _DIFFUSERS_DEFAULTS["in_channels"])
    return model, convert_diffusers_state_dict(state, model, (height, width, in_channels))
