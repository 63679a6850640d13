"""Tests for importing diffusers ``UNet2DModel`` checkpoints (genjax.nn.diffusers_import).

diffusers and torch are test-only dependencies. Parity tests build a diffusers model
with random weights (every parameter perturbed, GroupNorm scales and biases included,
so a swapped or misplaced tensor changes the output at O(1)), save it as safetensors,
load it with genjax and compare forward passes on the same inputs. The tolerance is
``1e-4 * max|output|``; float32 round-off measured here is 2-3e-6 of the output scale.
"""

from __future__ import annotations

import inspect
import json
import re

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

torch = pytest.importorskip("torch")
UNet2DModel = pytest.importorskip("diffusers").UNet2DModel

from genjax.nn import ddpm_cifar10
from genjax.nn.diffusers_import import (
    DDPM_CIFAR10_DIFFUSERS_CONFIG,
    convert_diffusers_state_dict,
    load_diffusers_unet,
    unet_from_diffusers_config,
)

REL_TOL = 1e-4  # of max|output|; float32 round-off is ~3e-6 of it

DDPM_CIFAR10_CONFIG = DDPM_CIFAR10_DIFFUSERS_CONFIG

# A small model with the same conventions: two levels, attention at the 8x8 level.
SMALL_CONFIG = {
    **DDPM_CIFAR10_CONFIG,
    "block_out_channels": [32, 64],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 16,
}


def _perturbed(config: dict, *, seed: int, scale: float) -> UNet2DModel:
    """A diffusers UNet2DModel with every parameter moved by ``scale * N(0, 1)``."""
    torch.manual_seed(seed)
    model = UNet2DModel.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def _assert_forward_parity(torch_model: UNet2DModel, model, params, *, batch: int, labels: bool = False) -> None:
    size = torch_model.config.sample_size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, torch_model.config.in_channels, size, size)).astype(np.float32)
    t = np.array([3, 999, 500, 0][:batch], dtype=np.int64)
    y = np.arange(batch, dtype=np.int64) % 7 + 1 if labels else None
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x), torch.from_numpy(t), class_labels=None if y is None else torch.from_numpy(y)).sample.numpy()
    ref = ref.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    out = np.asarray(jax.jit(model.apply)(params, x.transpose(0, 2, 3, 1), t, y))
    assert out.shape == ref.shape
    scale = float(np.max(np.abs(ref)))
    assert scale > 0.1  # a degenerate (near-zero) output would make the check vacuous
    err = float(np.max(np.abs(out - ref)))
    assert err <= REL_TOL * scale, f"max |genjax - diffusers| = {err:.3g} > {REL_TOL} * {scale:.3g}"


def _num_params(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def small_saved(tmp_path_factory):
    """The perturbed small diffusers model saved as ``<dir>/unet`` (a pipeline layout),
    and its genjax import ``(model, params)`` loaded from ``<dir>``."""
    folder = tmp_path_factory.mktemp("pipeline")
    torch_model = _perturbed(SMALL_CONFIG, seed=0, scale=0.1)
    torch_model.save_pretrained(folder / "unet", safe_serialization=True)
    return torch_model, folder, load_diffusers_unet(folder)


def test_config_keys_are_unet2dmodel_arguments():
    """The configs used here name real UNet2DModel arguments (diffusers would ignore typos)."""
    arguments = set(inspect.signature(UNet2DModel.__init__).parameters)
    assert {k for k in DDPM_CIFAR10_CONFIG if not k.startswith("_")} <= arguments


def test_importer_defaults_are_the_installed_diffusers_defaults():
    """A key missing from config.json means diffusers' default: the importer's table of
    them must equal the installed UNet2DModel's signature."""
    from genjax.nn.diffusers_import import _DIFFUSERS_DEFAULTS

    def normal(value):
        return tuple(value) if isinstance(value, list) else value

    params = inspect.signature(UNet2DModel.__init__).parameters
    signature = {k: normal(p.default) for k, p in params.items() if k != "self" and p.default is not inspect.Parameter.empty}
    assert {k: normal(v) for k, v in _DIFFUSERS_DEFAULTS.items()} == signature


def test_small_forward_parity(small_saved):
    torch_model, folder, (model, params) = small_saved
    direct_model, direct_params = load_diffusers_unet(folder / "unet")  # the model folder itself
    assert direct_model == model
    jax.tree.map(np.testing.assert_array_equal, direct_params, params)
    assert model.ch == 32 and model.ch_mult == (1, 2) and model.num_res_blocks == 1
    assert model.attn_resolutions == (8,) and model.num_groups == 8 and model.num_classes == 0
    assert _num_params(params) == sum(p.numel() for p in torch_model.parameters())
    _assert_forward_parity(torch_model, model, params, batch=2)


def test_class_conditional_forward_parity(tmp_path):
    """``num_class_embeds`` maps to genjax's label embedding added to the time embedding."""
    torch_model = _perturbed({**SMALL_CONFIG, "num_class_embeds": 10}, seed=1, scale=0.1)
    torch_model.save_pretrained(tmp_path, safe_serialization=True)
    model, params = load_diffusers_unet(tmp_path)
    assert model.num_classes == 10
    _assert_forward_parity(torch_model, model, params, batch=2, labels=True)


@pytest.mark.slow
def test_ddpm_cifar10_forward_parity(tmp_path):
    torch_model = _perturbed(DDPM_CIFAR10_CONFIG, seed=0, scale=0.02)
    torch_model.save_pretrained(tmp_path, safe_serialization=True)
    model, params = load_diffusers_unet(tmp_path)
    expected = ddpm_cifar10(dropout=0.0, out_channels=3)
    assert model == expected
    assert sum(p.numel() for p in torch_model.parameters()) == 35_746_307
    assert _num_params(params) == 35_746_307
    _assert_forward_parity(torch_model, model, params, batch=2)


def test_deprecated_attention_names_are_accepted(small_saved):
    """Pre-0.14 checkpoints name the attention projections query/key/value/proj_attn."""
    _, folder, (model, params) = small_saved
    state = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    pattern = re.compile(r"\.(to_q|to_k|to_v|to_out\.0)\.")
    old_state = {pattern.sub(lambda m: f".{old_names[m.group(1)]}.", k): v for k, v in state.items()}
    assert any(".proj_attn." in k for k in old_state)
    old = convert_diffusers_state_dict(old_state, model, (16, 16, 3))
    jax.tree.map(np.testing.assert_array_equal, old, params)


def test_state_dict_mismatch_lists_keys(small_saved):
    _, folder, _ = small_saved
    state = dict(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    del state["down_blocks.1.attentions.0.to_k.bias"]
    state["down_blocks.1.attentions.0.extra.weight"] = np.zeros((4,), np.float32)
    state["conv_in.weight"] = state["conv_in.weight"].transpose(1, 0, 2, 3)  # [in, out, ...]: wrong
    model = unet_from_diffusers_config(SMALL_CONFIG)
    with pytest.raises(ValueError) as info:
        convert_diffusers_state_dict(state, model, (16, 16, 3))
    message = str(info.value)
    assert "missing" in message and "down_blocks.1.attentions.0.to_k.bias" in message
    assert "unexpected" in message and "down_blocks.1.attentions.0.extra.weight" in message
    assert "conv_in.weight: expected (32, 3, 3, 3), got (3, 32, 3, 3)" in message


def test_non_finite_weights_and_bad_files_are_refused(small_saved, tmp_path):
    _, folder, _ = small_saved
    state = dict(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    state["conv_out.bias"] = np.full_like(state["conv_out.bias"], np.nan)
    with pytest.raises(ValueError, match=re.escape("conv_out.bias: has NaN or Inf values")):
        convert_diffusers_state_dict(state, unet_from_diffusers_config(SMALL_CONFIG), (16, 16, 3))
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        load_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match="config.json.*not valid JSON .*can't decode byte 0x80"):
        load_diffusers_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(SMALL_CONFIG))
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read .*diffusion_pytorch_model.safetensors"):
        load_diffusers_unet(tmp_path)


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_diffusers_unet(missing)
    with pytest.raises(FileNotFoundError, match=re.escape("config.json")):
        load_diffusers_unet(tmp_path)


def test_missing_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SMALL_CONFIG))
    with pytest.raises(FileNotFoundError, match=re.escape("diffusion_pytorch_model.safetensors")):
        load_diffusers_unet(tmp_path)


def test_pickle_checkpoint_is_refused(tmp_path):
    """A .bin next to config.json is never opened: the error explains how to convert it."""
    (tmp_path / "config.json").write_text(json.dumps(SMALL_CONFIG))
    # Not a valid pickle: if the loader tried to unpickle it, the error would differ.
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x05not a pickle")
    with pytest.raises(FileNotFoundError) as info:
        load_diffusers_unet(tmp_path)
    message = str(info.value)
    assert "pickle" in message and "safe_serialization=True" in message
    assert "diffusion_pytorch_model.bin" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("flip_sin_to_cos", True),
        ("freq_shift", 0),
        ("norm_eps", 1e-5),
        ("act_fn", "gelu"),
        ("time_embedding_type", "fourier"),
        ("time_embedding_dim", 64),
        ("center_input_sample", True),
        ("resnet_time_scale_shift", "scale_shift"),
        ("add_attention", False),
        ("mid_block_type", None),
        ("mid_block_scale_factor", 2),
        ("downsample_padding", 1),
        ("attention_head_dim", 8),
        ("attn_norm_num_groups", 4),
        ("class_embed_type", "timestep"),
        ("down_block_types", ["DownBlock2D", "CrossAttnDownBlock2D"]),
        ("up_block_types", ["UpBlock2D", "AttnUpBlock2D"]),
        ("up_block_types", ["UpBlock2D", "UpBlock2D"]),
        ("block_out_channels", [32, 48]),
        ("downsample_type", "resnet"),
        ("upsample_type", "resnet"),
        ("sample_size", None),
        ("_class_name", "UNet2DConditionModel"),
        ("some_future_option", 1),
    ],
)
def test_unmappable_config_is_rejected(key, value):
    config = {**SMALL_CONFIG, key: value}
    if key == "downsample_type":  # read only by an attention block that downsamples
        config["down_block_types"] = ["AttnDownBlock2D", "DownBlock2D"]
        config["up_block_types"] = ["UpBlock2D", "AttnUpBlock2D"]
    with pytest.raises(ValueError, match=re.escape(key)):
        unet_from_diffusers_config(config)


def test_missing_keys_take_diffusers_defaults():
    """diffusers fills absent keys with UNet2DModel's defaults (freq_shift=0, ...): so must we."""
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "freq_shift"}
    with pytest.raises(ValueError, match="freq_shift"):
        unet_from_diffusers_config(config)


def test_resample_types_unused_by_plain_blocks_are_accepted():
    """Only attention blocks that resample read downsample_type/upsample_type, as in diffusers."""
    # Attention only at the last level: its down block has no downsampler.
    model = unet_from_diffusers_config({**SMALL_CONFIG, "downsample_type": "resnet"})
    assert model == unet_from_diffusers_config(SMALL_CONFIG)
    # Attention only at the first level: its up block (the last) has no upsampler.
    first = {**SMALL_CONFIG, "down_block_types": ["AttnDownBlock2D", "DownBlock2D"]}
    first["up_block_types"] = ["UpBlock2D", "AttnUpBlock2D"]
    model = unet_from_diffusers_config({**first, "upsample_type": "resnet"})
    assert model == unet_from_diffusers_config(first)
    assert model.attn_resolutions == (16,)
