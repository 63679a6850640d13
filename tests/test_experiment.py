"""The experiment layer's own pieces: the family registry, the key streams, the batched loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import experiment, keys
from genjax.data import map_batches
from genjax.train import LossUpdate, MultiPlayerUpdate

PRESETS = (
    "experiments/vae_mnist/config.py:tiny",
    "experiments/gumbel_vae_mnist/config.py:tiny",
    "experiments/gumbel_sbn_mnist/config.py:tiny",
    "experiments/gan_mnist/config.py:tiny",
    "experiments/ddpm_mnist/config.py:tiny",
    "experiments/diffusion_toy/config.py:heartbeat,tiny",
    "experiments/latent_mnist/config.py:autoencoder_tiny",
    "experiments/cluster_mnist/config.py:ae_tiny",
    "experiments/cluster_mnist/config.py:clustergan_tiny",
)


def test_every_family_has_defaults_that_name_it():
    assert set(experiment.FAMILIES) == {
        "vae",
        "discrete_vae",
        "sbn",
        "gan",
        "ddpm",
        "sohl_dickstein",
        "autoencoder_kl",
        "ldm",
        "cluster_ae",
        "dec",
        "vade",
        "gmvae",
        "clustergan",
    }
    for name, family in experiment.FAMILIES.items():
        config = family.default_config()
        assert config.model.family == name
        for field in ("seed", "parallel", "train.num_steps", "train.batch_size", "train.log_every", "train.checkpoint_every"):
            node = config
            for part in field.split("."):
                node = node[part]
    for preset in PRESETS:
        # info() builds the experiment and shapes its parameters without initialising them.
        assert experiment.info(experiment.load_config(preset))["num_params"] > 0
    with pytest.raises(
        ValueError,
        match=r"model.family: expected one of \['autoencoder_kl', 'cluster_ae', 'clustergan', 'ddpm', 'dec', 'discrete_vae', 'gan', 'gmvae', 'ldm', 'sbn', 'sohl_dickstein', 'vade', 'vae'\], got 'flow'",
    ):
        experiment.get_family("flow")


@pytest.mark.parametrize(
    ("spec", "kind", "stateful"),
    [
        ("experiments/vae_mnist/config.py:tiny", LossUpdate, False),
        ("experiments/gumbel_vae_mnist/config.py:tiny", LossUpdate, True),
        ("experiments/gan_mnist/config.py:tiny", MultiPlayerUpdate, None),
        ("experiments/diffusion_toy/config.py:swiss_roll,tiny", LossUpdate, False),
    ],
)
def test_experiments_declare_their_update_and_build_their_state(spec, kind, stateful):
    built = experiment.build(experiment.load_config(spec))
    assert isinstance(built.update, kind)
    if stateful is not None:
        assert built.update.stateful is stateful
    state = built.init_state(keys.run_keys(0).init)
    assert int(state.step) == 0 and (state.model_state is not None) == bool(stateful)
    # batches is a pure function of the step: a fresh experiment's batch 3 equals batch 3
    # drawn after others, and batches differ from step to step.
    first = jax.tree.leaves(built.batches(3))[0]
    again = experiment.build(experiment.load_config(spec))
    again.batches(7)
    np.testing.assert_array_equal(first, jax.tree.leaves(again.batches(3))[0])
    assert not np.array_equal(first, jax.tree.leaves(again.batches(4))[0])


def test_key_streams_are_named_distinct_and_fixed():
    assert len(set(keys.SALTS.values())) == len(keys.SALTS)
    assert len(set(keys.NUMPY_SALTS.values())) == len(keys.NUMPY_SALTS)
    constants = {name: value for name, value in vars(keys).items() if name.isupper() and isinstance(value, int) and name != "MAX_SEED"}
    registered = set(keys.SALTS.values()) | set(keys.NUMPY_SALTS.values())
    assert all(value in registered for value in constants.values()), constants
    run = keys.run_keys(3)
    init, train, _ = jax.random.split(jax.random.key(3), 3)
    np.testing.assert_array_equal(jax.random.key_data(run.init), jax.random.key_data(init))
    np.testing.assert_array_equal(jax.random.key_data(run.train), jax.random.key_data(train))
    np.testing.assert_array_equal(jax.random.key_data(keys.stream(3, keys.SAMPLES)), jax.random.key_data(jax.random.fold_in(jax.random.key(3), 0x5A3)))
    assert keys.numpy_rng(3, keys.TOY_DATA, 7).random() == np.random.default_rng([3, keys.TOY_DATA, 7]).random()
    for bad in (-1, 1.5, True, 2**32, 2**64):
        with pytest.raises(ValueError, match=r"seed: expected an int in \[0, 2\*\*32 - 1\]"):
            keys.stream(bad, keys.SAMPLES)
    # Why 32 bits: JAX (without x64) keeps the low 32 bits, so 2**32 would be seed 0 again.
    np.testing.assert_array_equal(jax.random.key_data(jax.random.key(2**32)), jax.random.key_data(jax.random.key(0)))
    keys.stream(keys.MAX_SEED, keys.SAMPLES)


def test_map_batches_chunks_keys_and_pytrees():
    x = np.arange(10.0)
    key = jax.random.key(0)

    def fn(chunk, k):
        return {"x": chunk * 2, "u": jax.vmap(jax.random.uniform)(k)}

    out = map_batches(fn, x, batch_size=4, key=key)
    np.testing.assert_array_equal(out["x"], x * 2)
    # Chunk [4, 8) draws its keys from fold_in(key, 4).
    expected = jax.vmap(jax.random.uniform)(jax.random.split(jax.random.fold_in(key, 4), 4))
    np.testing.assert_array_equal(out["u"][4:8], expected)
    counted = map_batches(lambda k: jnp.ones(k.shape[0]), batch_size=3, key=key, num=7)
    assert counted.shape == (7,)
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        map_batches(fn, x, batch_size=0, key=key)
    with pytest.raises(ValueError, match="arrays: expected a common leading axis"):
        map_batches(lambda a, b: a, x, x[:3], batch_size=2)
    with pytest.raises(ValueError, match="num: expected a non-negative int"):
        map_batches(lambda k: k, batch_size=2, key=key)
