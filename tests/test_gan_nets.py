"""Tests for the GAN generator and critic networks (genjax.nn.gan_nets)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn.gan_nets import (
    DCGANCritic,
    DCGANGenerator,
    MLPCritic,
    MLPGenerator,
    ResidualBlock,
    ResNetCritic,
    ResNetGenerator,
    mean_pool,
    tiny_dcgan_critic,
    tiny_dcgan_generator,
    toy_critic,
    toy_generator,
    upsample_nearest,
)

# Compilation dominates on CPU, so every model is tiny (features 4-8), parameters are
# filled in with numpy noise of the right structure (from jax.eval_shape, which compiles
# nothing) rather than by a compiled init, and each (model, input shape) pair gets one
# jitted apply shared across tests.

LATENT = 8


def _num_params(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _shapes(model: nn.Module, shape: tuple[int, ...]):
    """Parameter shapes from an abstract init (no compilation)."""
    return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))


def _fake_params(model: nn.Module, shape: tuple[int, ...], seed: int = 0):
    """Random parameters of the right structure (unit-scale activations, no zeros)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        if "kernel" in name:
            return jnp.asarray(noise / np.sqrt(np.prod(leaf.shape[:-1])))
        if "scale" in name:
            return jnp.asarray(1.0 + 0.1 * noise)
        return jnp.asarray(0.1 * noise)

    return jax.tree_util.tree_map_with_path(fill, _shapes(model, shape))


@functools.cache
def _built(model: nn.Module, shape: tuple[int, ...]):
    """Parameters and a jitted apply for ``model`` on inputs of ``shape[1:]``."""
    return _fake_params(model, shape), jax.jit(model.apply)


def _run(model: nn.Module, x: jax.Array) -> np.ndarray:
    params, apply = _built(model, x.shape)
    return np.asarray(apply(params, x))


def _normal(shape: tuple[int, ...], seed: int = 1, scale: float = 1.0) -> jax.Array:
    return scale * jax.random.normal(jax.random.key(seed), shape)


# ---------------------------------------------------------------------------------
# Output shapes (abstract evaluation: cheap, so every configuration is covered).


@pytest.mark.parametrize("output_shape", [(2,), (3, 4), (28, 28, 1)])
def test_mlp_generator_output_shape(output_shape):
    model = MLPGenerator(hidden=(16, 16), output_shape=output_shape)
    params = _shapes(model, (5, LATENT))
    out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((5, LATENT), jnp.float32))
    assert out.shape == (5, *output_shape)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLPCritic(hidden=(16,)), (5, 2)),
        (MLPCritic(hidden=(16,), maxout_pieces=3), (5, 28, 28, 1)),
        (tiny_dcgan_critic(), (5, 28, 28, 1)),
        (tiny_dcgan_critic("none"), (5, 32, 32, 3)),
        (ResNetCritic(features=4), (5, 32, 32, 3)),
        (ResNetCritic(features=4), (1, 32, 32, 3)),
        (tiny_dcgan_critic(), (1, 28, 28, 1)),
        (MLPCritic(hidden=()), (1, 2)),
    ],
)
def test_critic_output_is_rank_one(model, shape):
    params = _shapes(model, shape)
    out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert out.shape == (shape[0],)


@pytest.mark.parametrize("output_shape", [(28, 28, 1), (32, 32, 3), (28, 28, 3), (32, 32, 1)])
@pytest.mark.parametrize("norm", ["layer", "none"])
def test_dcgan_generator_shapes(output_shape, norm):
    model = tiny_dcgan_generator(output_shape, norm=norm)
    params = _shapes(model, (3, LATENT))
    out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((3, LATENT), jnp.float32))
    assert out.shape == (3, *output_shape)
    p, f = params["params"], 8
    assert p["project"]["kernel"].shape == (LATENT, 4 * 4 * 4 * f)
    assert p["deconv_0"]["kernel"].shape == (5, 5, 4 * f, 2 * f)
    assert p["deconv_1"]["kernel"].shape == (5, 5, 2 * f, f)
    assert p["deconv_out"]["kernel"].shape == (5, 5, f, output_shape[-1])
    assert ("norm_0" in p) == (norm == "layer") and ("project_norm" in p) == (norm == "layer")
    if norm == "layer":  # per-channel scale of a layer norm over the whole (H, W, C) map
        assert p["norm_0"]["scale"].shape == (2 * f,)


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3)])
def test_dcgan_critic_layout(shape):
    params = _shapes(tiny_dcgan_critic(), shape)["params"]
    f = 8
    assert [params[f"conv_{i}"]["kernel"].shape for i in range(3)] == [
        (5, 5, shape[-1], f),
        (5, 5, f, 2 * f),
        (5, 5, 2 * f, 4 * f),
    ]
    assert "norm_0" not in params and {"norm_1", "norm_2"} <= set(params)
    assert params["out"]["kernel"].shape == (4 * 4 * 4 * f, 1)  # both sizes end at 4x4


def test_resnet_shapes():
    gen = ResNetGenerator(features=4)
    gen_params = _shapes(gen, (2, LATENT))
    out = jax.eval_shape(gen.apply, gen_params, jax.ShapeDtypeStruct((2, LATENT), jnp.float32))
    assert out.shape == (2, 32, 32, 3)
    assert gen_params["params"]["project"]["kernel"].shape == (LATENT, 4 * 4 * 4)
    assert set(gen_params["params"]) == {"project", "block_0", "block_1", "block_2", "norm_out", "out"}
    critic_params = _shapes(ResNetCritic(features=4), (2, 32, 32, 3))["params"]
    assert set(critic_params) == {"block_0", "block_1", "block_2", "block_3", "out"}
    assert "shortcut" not in critic_params["block_2"]  # identity skip at equal widths
    assert not any("norm" in name for block in critic_params.values() for name in block)


def test_resnet_cifar10_parameter_counts():
    """The paper's 128-channel models (counted by hand from gan_cifar_resnet.py)."""
    gen = _shapes(ResNetGenerator(), (1, 128))
    critic = _shapes(ResNetCritic(), (1, 32, 32, 3))
    assert _num_params(gen) == 1_204_483
    assert _num_params(critic) == 1_053_825


def test_presets():
    gen, critic = toy_generator(), toy_critic()
    assert tuple(gen.hidden) == (512, 512, 512) and gen.output_shape == (2,)
    assert gen.activation == "relu" and gen.output == "identity"
    assert tuple(critic.hidden) == (512, 512, 512) and critic.maxout_pieces == 0
    out = jax.eval_shape(gen.apply, _shapes(gen, (4, 2)), jax.ShapeDtypeStruct((4, 2), jnp.float32))
    assert out.shape == (4, 2)
    assert tiny_dcgan_generator((32, 32, 3)).features == 8 and tiny_dcgan_critic().features == 8


# ---------------------------------------------------------------------------------
# Values (real compilation, tiny models).


@pytest.mark.parametrize(("output", "low", "high"), [("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0)])
def test_mlp_generator_output_range(output, low, high):
    model = MLPGenerator(hidden=(8,), output_shape=(3,), output=output)
    x = _run(model, _normal((16, LATENT), scale=100.0))
    assert np.all((x >= low) & (x <= high))
    assert x.min() < low + 0.5 and x.max() > high - 0.5  # saturating, not constant


def test_mlp_generator_identity_is_unbounded():
    x = _run(toy_generator(), _normal((16, 2), scale=100.0))
    assert np.abs(x).max() > 1.0


@pytest.mark.parametrize(
    "model",
    [
        DCGANGenerator((28, 28, 1), features=4),
        DCGANGenerator((32, 32, 3), features=4, norm="none"),
        ResNetGenerator(features=4),
    ],
    ids=["dcgan28", "dcgan32-nonorm", "resnet"],
)
def test_image_generators_output_in_tanh_range(model):
    z = _normal((4, LATENT), scale=10.0)
    x = _run(model, z)
    assert x.shape == (4, *model.output_shape)
    assert np.all(np.abs(x) <= 1.0) and np.all(np.isfinite(x))
    assert np.std(x) > 0
    # Per-example: changing z[1] leaves x[0] unchanged (layer norm, not batch norm).
    x2 = _run(model, z.at[1].set(-z[1]))
    np.testing.assert_array_equal(x2[0], x[0])
    assert not np.allclose(x2[1], x[1])


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (MLPCritic(hidden=(8, 8)), (4, 2)),
        (MLPCritic(hidden=(8,), maxout_pieces=2), (4, 3, 2)),
        (DCGANCritic(features=4), (4, 28, 28, 1)),
        (ResNetCritic(features=4), (4, 32, 32, 3)),
    ],
    ids=["mlp", "maxout", "dcgan-layernorm", "resnet"],
)
def test_critic_scores_are_per_example(model, shape):
    """Example 0's score ignores the rest of the batch (what the gradient penalty needs)."""
    x = _normal(shape)
    scores = _run(model, x)
    assert scores.shape == (shape[0],)
    changed = _run(model, x.at[1].set(_normal(shape[1:], seed=7)))
    np.testing.assert_array_equal(changed[0], scores[0])
    np.testing.assert_array_equal(changed[2:], scores[2:])
    assert changed[1] != scores[1]
    # The same scores for the batch split in two halves (data-parallel equality).
    params, apply = _built(model, shape)
    halves = np.concatenate([apply(params, x[:2]), apply(params, x[2:])])
    np.testing.assert_allclose(halves, scores, rtol=1e-5, atol=1e-6)


def test_critic_input_gradient_is_per_example():
    """d score_0 / d x_1 is exactly zero for the layer-normed DCGAN critic."""
    model = DCGANCritic(features=4)
    shape = (2, 8, 8, 1)
    params, _ = _built(model, shape)
    grads = jax.jit(jax.grad(lambda x: model.apply(params, x)[0]))(_normal(shape))
    assert np.all(np.asarray(grads[1]) == 0) and np.any(np.asarray(grads[0]) != 0)


def test_maxout_matches_manual_computation():
    model = MLPCritic(hidden=(3,), maxout_pieces=4)
    x = _normal((5, 2, 3))
    params, apply = _built(model, x.shape)
    p = params["params"]
    assert p["hidden_0"]["kernel"].shape == (6, 12)
    flat = np.asarray(x).reshape(5, 6)
    pre = flat @ np.asarray(p["hidden_0"]["kernel"]) + np.asarray(p["hidden_0"]["bias"])
    hidden = pre.reshape(5, 3, 4).max(axis=-1)
    expected = (hidden @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"]))[:, 0]
    np.testing.assert_allclose(np.asarray(apply(params, x)), expected, rtol=1e-5, atol=1e-5)


def test_resampling_helpers():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(mean_pool(x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    up = upsample_nearest(x)
    assert up.shape == (1, 8, 8, 1)
    np.testing.assert_array_equal(up[0, ::2, ::2], x[0])
    np.testing.assert_array_equal(up[0, 1::2, 1::2], x[0])


# ---------------------------------------------------------------------------------
# Argument and input checks.


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DCGANGenerator(norm="batch"), "norm: expected one of"),
        (lambda: DCGANCritic(norm="batch"), "norm: expected one of"),
        (lambda: ResNetGenerator(norm="group"), "norm: expected one of"),
        (lambda: ResidualBlock(4, resample="sideways"), "resample: expected one of"),
        (lambda: DCGANGenerator(output_shape=(64, 64, 3)), r"output_shape: .*got \(64, 64, 3\)"),
        (lambda: DCGANGenerator(output_shape=(28, 32, 1)), "output_shape"),
        (lambda: DCGANGenerator(output_shape=(28, 28)), "output_shape"),
        (lambda: ResNetGenerator(output_shape=(28, 28, 3)), "output_shape: height and width must be multiples of 8"),
        (lambda: DCGANGenerator(features=0), "features: expected a positive int, got 0"),
        (lambda: ResNetCritic(features=-1), "features"),
        (lambda: MLPGenerator(hidden=(8,), output_shape=(2,), output="relu"), "output: expected one of"),
        (lambda: MLPGenerator(hidden=(8,), output_shape=(), output="tanh"), "output_shape"),
        (lambda: MLPGenerator(hidden=(8,), output_shape=(2,), activation="swishy"), "activation"),
        (lambda: MLPCritic(hidden=(8, 0)), "hidden"),
        (lambda: MLPCritic(hidden=(8,), maxout_pieces=1), "maxout_pieces: expected 0"),
        (lambda: MLPCritic(hidden=(8,), maxout_pieces=-2), "maxout_pieces"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("model", "shape", "match"),
    [
        (tiny_dcgan_critic(), (2, 28, 28), r"x: expected an NHWC image batch .*got shape \(2, 28, 28\)"),
        (ResNetCritic(features=4), (2, 30, 30, 3), "x: height and width must be multiples of 4"),
        (MLPCritic(hidden=(4,)), (2,), "x: expected a batch"),
        (tiny_dcgan_generator(), (2, 3, LATENT), r"z: expected a latent batch .*got shape \(2, 3, 8\)"),
        (MLPGenerator(hidden=(4,), output_shape=(2,)), (LATENT,), "z: expected a latent batch"),
        (ResNetGenerator(features=4), (LATENT,), "z: expected a latent batch"),
    ],
)
def test_bad_input_shapes(model, shape, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
