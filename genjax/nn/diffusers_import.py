"""Import diffusers ``UNet2DModel`` checkpoints into :class:`genjax.nn.unet.UNet`.

diffusers' ``UNet2DModel`` with the DDPM configuration (``google/ddpm-cifar10-32`` and
its siblings, converted from the TensorFlow code of Ho, Jain & Abbeel 2020, "Denoising
Diffusion Probabilistic Models", arXiv 2006.11239) is the same network as genjax's
:class:`~genjax.nn.unet.UNet`: the module docstring of :mod:`genjax.nn.unet` lists the
parameter-name correspondence this importer implements. Three functions:

* :func:`unet_from_diffusers_config` maps a ``config.json`` dict to a ``UNet`` and
  rejects, with a ``ValueError`` naming the key and its value, every configuration
  that genjax's UNet cannot reproduce exactly;
* :func:`convert_diffusers_state_dict` renames and transposes a PyTorch state dict
  (``[out, in, kh, kw]`` conv kernels to ``[kh, kw, in, out]``, ``Linear`` ``[out, in]``
  to ``[in, out]``, the 1x1 ``conv_shortcut`` to a ``Dense``) into a Flax params pytree
  with exactly the structure of ``UNet.init``, checking that every key is used and
  every parameter filled with the right shape;
* :func:`load_diffusers_unet` reads a saved model folder (``config.json`` and
  ``diffusion_pytorch_model.safetensors``, or a pipeline folder's ``unet/``) with
  ``safetensors.numpy``: no torch, no network access and never ``pickle``.

Attention placement: diffusers attaches attention to the blocks whose type starts with
``Attn``; genjax attaches it to the feature-map heights in ``attn_resolutions``. The
importer turns the first into the second with the config's ``sample_size``, so the
imported network equals the diffusers one on inputs of height ``sample_size`` (at
other sizes the attention would move to other levels, or vanish).
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

from genjax.nn.unet import UNet

__all__ = [
    "DDPM_CIFAR10_DIFFUSERS_CONFIG",
    "convert_diffusers_state_dict",
    "load_diffusers_unet",
    "unet_from_diffusers_config",
]

Params = Any

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_WEIGHTS_NAME = "diffusion_pytorch_model.bin"

# ``UNet2DModel.__init__``'s defaults (diffusers 0.42; unchanged since 0.20). A key
# missing from config.json takes these values when diffusers builds the model, so the
# importer must read it the same way: e.g. a config without ``freq_shift`` means 0.
_DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# Block types genjax can express; diffusers strips a leading "UNetRes" from block names.
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


def unet_from_diffusers_config(config: Mapping[str, Any], *, dtype: Any = jnp.float32) -> UNet:
    """The genjax :class:`~genjax.nn.unet.UNet` equal to a diffusers ``UNet2DModel``.

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
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a mapping (the parsed config.json), got {type(config).__name__}")
    class_name = config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ValueError(f"_class_name: expected 'UNet2DModel', got {class_name!r}")
    unknown = sorted(k for k in config if not k.startswith("_") and k not in _DIFFUSERS_DEFAULTS)
    if unknown:
        raise ValueError(f"config: unknown UNet2DModel keys {unknown}; cannot tell whether they change the network")
    cfg = {**_DIFFUSERS_DEFAULTS, **config}

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


def convert_diffusers_state_dict(
    state: Mapping[str, Any],
    model: UNet,
    image_shape: tuple[int, int, int],
) -> Params:
    """Converts a diffusers ``UNet2DModel`` state dict into ``model``'s Flax parameters.

    Names follow the correspondence in :mod:`genjax.nn.unet` (e.g. ``down_{i}_res_{j}``
    <- ``down_blocks.{i}.resnets.{j}``, ``up_{i}_*`` <- ``up_blocks.{L-1-i}``); the
    pre-0.14 attention names ``query``/``key``/``value``/``proj_attn`` are accepted for
    ``to_q``/``to_k``/``to_v``/``to_out.0``, as diffusers does on load. Layouts: conv
    ``[out, in, kh, kw]`` -> ``[kh, kw, in, out]``; ``Linear`` ``[out, in]`` -> ``[in,
    out]``; the 1x1 ``conv_shortcut`` ``[out, in, 1, 1]`` -> ``Dense`` ``[in, out]``;
    GroupNorm ``weight`` -> ``scale``. Values are cast to float32.

    Args:
      state: parameter name -> array (numpy, or anything ``np.asarray`` accepts), as
        saved by ``UNet2DModel.save_pretrained``.
      model: the target UNet, normally from :func:`unet_from_diffusers_config`.
      image_shape: ``(H, W, C)`` of one input image (only to trace ``model.init``).

    Returns:
      ``{"params": ...}`` with exactly the tree structure, shapes and dtypes of
      ``model.init(key, x, t)`` (``jax.eval_shape`` of it is the reference).

    Raises:
      ValueError: listing every missing key, unexpected key and shape mismatch (with
        the diffusers key and both shapes in PyTorch layout).
    """
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

    state = _rename_deprecated(state)
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


def _find_model_folder(folder: str | os.PathLike[str]) -> str:
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder: no such directory {folder!r} (expected a saved UNet2DModel)")
    if os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        return folder
    nested = os.path.join(folder, "unet")
    if os.path.isfile(os.path.join(nested, CONFIG_NAME)):
        return nested
    raise FileNotFoundError(
        f"folder: found neither {os.path.join(folder, CONFIG_NAME)!r} nor {os.path.join(nested, CONFIG_NAME)!r} (a diffusers pipeline's unet/ subfolder)"
    )


def load_diffusers_unet(folder: str | os.PathLike[str], *, dtype: Any = jnp.float32) -> tuple[UNet, Params]:
    """Loads a diffusers ``UNet2DModel`` folder as a genjax ``UNet`` and its parameters.

    The folder is what ``UNet2DModel.save_pretrained(folder, safe_serialization=True)``
    writes (``config.json`` and ``diffusion_pytorch_model.safetensors``), or a pipeline
    folder such as a local copy of ``google/ddpm-cifar10-32`` (Ho et al. 2020, arXiv
    2006.11239), whose ``unet/`` subfolder holds them. Weights are read with
    ``safetensors.numpy`` (no torch, no network). PyTorch ``.bin`` checkpoints are
    pickles, which can run arbitrary code when loaded, and are refused.

    Args:
      folder: the model folder (or a pipeline folder with ``unet/``).
      dtype: the UNet's computation dtype (parameters are float32).

    Returns:
      ``(model, params)`` with ``model.apply(params, x_nhwc, t)`` equal to the diffusers
      model's ``.sample`` (transposed to NHWC) on inputs of height ``sample_size``.

    Raises:
      FileNotFoundError: naming the missing folder or file; for a folder with only
        ``diffusion_pytorch_model.bin``, explaining how to convert it to safetensors.
      ValueError: for a configuration or state dict genjax cannot map exactly.
    """
    model_folder = _find_model_folder(folder)
    weights = os.path.join(model_folder, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        pickle_path = os.path.join(model_folder, PICKLE_WEIGHTS_NAME)
        if os.path.isfile(pickle_path):
            raise FileNotFoundError(
                f"folder: {weights!r} not found, only {pickle_path!r}. A .bin checkpoint is a Python pickle, "
                "which can execute arbitrary code when loaded, so genjax does not unpickle it. Convert it once, "
                "in an environment you trust, with diffusers: UNet2DModel.from_pretrained(folder)"
                ".save_pretrained(out_folder, safe_serialization=True), then load out_folder."
            )
        raise FileNotFoundError(f"folder: weights file {weights!r} not found")
    config_path = os.path.join(model_folder, CONFIG_NAME)
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"folder: {config_path!r} is not valid JSON ({err})") from None
    model = unet_from_diffusers_config(config, dtype=dtype)

    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        state = load_file(weights)
    except (SafetensorError, TypeError, ValueError) as err:  # a corrupt file; bfloat16 has no numpy dtype
        raise ValueError(
            f"folder: cannot read {weights!r} as numpy arrays ({type(err).__name__}: {err}); genjax reads float16/32/64 "
            "safetensors files: re-save a bfloat16 checkpoint in float32"
        ) from None
    num_levels = len(model.ch_mult)
    size = config.get("sample_size") or 2 ** (num_levels - 1)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    in_channels = config.get("in_channels", _DIFFUSERS_DEFAULTS["in_channels"])
    params = convert_diffusers_state_dict(state, model, (height, width, in_channels))
    return model, params
