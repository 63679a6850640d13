"""Tests for the DDPM U-Net (genjax.nn.unet)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn import UNet, ddpm_cifar10, sinusoidal_embedding, unet_tiny


def _num_params(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


# Compiling a random init of even the tiny U-Net is slow on CPU, so only the zero-init
# test uses a real init; the other tests fill the parameter structure (from
# jax.eval_shape, no compilation) with numpy noise of sensible scale.


def _param_shapes(model: UNet, shape: tuple[int, ...]):
    y = jnp.zeros(shape[:1], jnp.int32) if model.num_classes else None
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape), jnp.zeros(shape[:1]), y)


def _fake_params(model: UNet, shape: tuple[int, ...], seed: int = 0):
    """Random parameters of the right structure (unit-scale activations, no zeros)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        if "kernel" in name:
            return noise / np.sqrt(np.prod(leaf.shape[:-1]))
        if "scale" in name:
            return 1.0 + 0.1 * noise
        if "bias" in name:
            return 0.1 * noise
        return noise

    return jax.tree_util.tree_map_with_path(fill, _param_shapes(model, shape))


def _add_noise(params, seed: int = 1, scale: float = 0.1):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + scale * rng.standard_normal(p.shape).astype(np.float32), params)


@functools.cache
def _tiny(**kwargs):
    """A tiny model and its jitted apply, shared across tests."""
    model = unet_tiny(**kwargs)
    return model, jax.jit(model.apply, static_argnames="train")


def _inputs(shape: tuple[int, ...], seed: int = 2):
    x = jax.random.normal(jax.random.key(seed), shape)
    t = jnp.arange(shape[0], dtype=jnp.float32) * 100.0 + 7.0
    return x, t


def test_ddpm_cifar10_has_papers_parameter_count():
    model = ddpm_cifar10()
    shapes = jax.eval_shape(
        model.init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32),
        jax.ShapeDtypeStruct((1,), jnp.int32),
    )
    assert _num_params(shapes) == 35_746_307
    names = set(shapes["params"])
    assert {"time_embed_0", "conv_in", "down_1_attn_0", "mid_attn", "up_1_attn_2"} <= names
    assert "down_3_downsample" not in names and "up_0_upsample" not in names


# 1 -> 2 channels: grayscale input, learned variances (out_channels = 2C).
@pytest.mark.parametrize(("channels", "out_channels", "expected"), [(3, None, 3), (1, 2, 2)])
def test_output_shape_and_dtype(channels, out_channels, expected):
    shape = (2, 8, 8, channels)
    model, apply = _tiny(out_channels=out_channels)
    x, t = _inputs(shape)
    out = apply(_fake_params(model, shape), x, t)
    assert out.shape == (2, 8, 8, expected)
    assert out.dtype == jnp.float32
    assert np.all(np.isfinite(out))


def test_zero_init_output_then_depends_on_t_and_x():
    shape = (2, 8, 8, 3)
    model, apply = _tiny()
    x, t = _inputs(shape)
    # An rbg key: the same init semantics, but much faster to compile on CPU.
    params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x, t)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    conv_out = params["params"]["conv_out"]
    np.testing.assert_array_equal(conv_out["kernel"], 0.0)
    np.testing.assert_array_equal(params["params"]["up_1_attn_0"]["proj_out"]["kernel"], 0.0)
    np.testing.assert_array_equal(params["params"]["down_0_res_0"]["conv2"]["kernel"], 0.0)
    np.testing.assert_array_equal(apply(params, x, t), 0.0)
    noisy = _add_noise(params)
    out = apply(noisy, x, t)
    assert np.all(np.isfinite(out)) and float(jnp.abs(out).max()) > 0
    assert not np.allclose(out, apply(noisy, x, t + 50.0), atol=1e-4)
    x2, _ = _inputs(shape, seed=3)
    assert not np.allclose(out, apply(noisy, x2, t), atol=1e-4)


def test_float_timesteps_are_continuous():
    shape = (2, 8, 8, 3)
    model, apply = _tiny()
    params = _fake_params(model, shape)
    x, _ = _inputs(shape)
    out_int = apply(params, x, jnp.array([3, 3], jnp.int32))
    out_float = apply(params, x, jnp.array([3.0, 3.0]))
    out_near = apply(params, x, jnp.array([3.0001, 3.0001]))
    out_far = apply(params, x, jnp.array([4.0, 4.0]))
    np.testing.assert_allclose(out_int, out_float, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_float, out_near, rtol=1e-2, atol=1e-3)
    assert not np.allclose(out_float, out_far, atol=1e-3)


def test_class_conditional():
    shape = (2, 8, 8, 3)
    model, apply = _tiny(num_classes=10)
    params = _fake_params(model, shape)
    assert params["params"]["label_embed"]["embedding"].shape == (10, 32)
    x, t = _inputs(shape)
    out = apply(params, x, t, jnp.array([1, 2]))
    assert out.shape == shape and out.dtype == jnp.float32
    assert not np.allclose(out, apply(params, x, t, jnp.array([3, 4])), atol=1e-4)


def test_bfloat16_computation_float32_params_and_output():
    shape = (2, 8, 8, 3)
    model, apply = _tiny()
    model_bf16, apply_bf16 = _tiny(dtype=jnp.bfloat16)
    shapes = _param_shapes(model_bf16, shape)
    assert shapes == _param_shapes(model, shape)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))
    params = _fake_params(model, shape)
    x, t = _inputs(shape)
    out_bf16 = apply_bf16(params, x, t)
    assert out_bf16.dtype == jnp.float32
    out_f32 = apply(params, x, t)
    scale = float(jnp.abs(out_f32).max())
    np.testing.assert_allclose(out_bf16, out_f32, atol=0.05 * scale)


def test_dropout_only_in_training():
    shape = (2, 8, 8, 3)
    model, apply = _tiny(dropout=0.5)
    params = _fake_params(model, shape)
    x, t = _inputs(shape)
    out_a = apply(params, x, t, train=True, rngs={"dropout": jax.random.key(5)})
    out_b = apply(params, x, t, train=True, rngs={"dropout": jax.random.key(6)})
    assert not np.allclose(out_a, out_b, atol=1e-4)
    out_eval = apply(params, x, t)
    np.testing.assert_array_equal(out_eval, apply(params, x, t, train=False))
    assert not np.allclose(out_a, out_eval, atol=1e-4)
    # Evaluation ignores the dropout rate entirely.
    np.testing.assert_allclose(out_eval, _tiny()[1](params, x, t), rtol=1e-6, atol=1e-6)


def test_avg_pool_resampling_variant():
    shape = (1, 8, 8, 1)
    model = unet_tiny(resample_with_conv=False)
    shapes = _param_shapes(model, shape)
    assert "down_0_downsample" not in shapes["params"]
    assert "up_1_upsample" not in shapes["params"]
    x, t = _inputs(shape)
    out = jax.eval_shape(model.apply, shapes, x, t)
    assert out.shape == shape and out.dtype == jnp.float32


@pytest.mark.parametrize("dim", [8, 9, 128])
def test_sinusoidal_embedding_matches_numpy(dim):
    t = np.array([0.0, 1.0, 2.5, 999.0], np.float32)
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / (half - 1))
    args = t[:, None] * freqs[None, :]
    expected = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    if dim % 2:
        expected = np.concatenate([expected, np.zeros((len(t), 1))], axis=1)
    emb = sinusoidal_embedding(jnp.asarray(t), dim)
    assert emb.shape == (4, dim) and emb.dtype == jnp.float32
    np.testing.assert_allclose(emb, expected, atol=2e-4)
    # Lowest frequency is exactly 1 / max_period (the DDPM `half - 1` convention).
    np.testing.assert_allclose(freqs[-1], 1e-4)


def test_bad_inputs_raise_value_errors():
    key = jax.random.key(0)
    t = jnp.zeros((1,), jnp.int32)
    with pytest.raises(ValueError, match="x: image height and width must be multiples of"):
        unet_tiny(ch_mult=(1, 2, 2)).init(key, jnp.zeros((1, 10, 10, 3)), t)
    with pytest.raises(ValueError, match="num_groups"):
        unet_tiny(num_groups=3).init(key, jnp.zeros((1, 8, 8, 3)), t)
    with pytest.raises(ValueError, match="y: class labels"):
        unet_tiny(num_classes=10).init(key, jnp.zeros((1, 8, 8, 3)), t)
    with pytest.raises(ValueError, match="y: labels given to an unconditional"):
        unet_tiny().init(key, jnp.zeros((1, 8, 8, 3)), t, jnp.zeros((1,), jnp.int32))
    with pytest.raises(ValueError, match="t: expected shape"):
        unet_tiny().init(key, jnp.zeros((2, 8, 8, 3)), t)
    with pytest.raises(ValueError, match="dropout"):
        unet_tiny(dropout=1.0).init(key, jnp.zeros((1, 8, 8, 3)), t)
    with pytest.raises(ValueError, match="ch_mult"):
        UNet(ch_mult=()).init(key, jnp.zeros((1, 8, 8, 3)), t)
    with pytest.raises(ValueError, match="num_res_blocks"):
        unet_tiny(num_res_blocks=0).init(key, jnp.zeros((1, 8, 8, 3)), t)
