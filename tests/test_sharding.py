"""The training mesh and FSDP parameter sharding on 8 simulated devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from genjax import experiment, sharding
from genjax.models import vae as V
from genjax.train import LossUpdate, build_train_step, create_train_state, make_optimizer


@pytest.mark.parametrize(
    ("shape", "fsdp", "min_size", "spec"),
    [
        ((128, 256), 8, 1, P(None, "fsdp")),  # the larger dimension
        ((256, 128), 8, 1, P("fsdp")),
        ((3, 3, 64, 64), 8, 1, P(None, None, None, "fsdp")),  # ties go to the output features
        ((7, 9), 8, 1, P()),  # nothing divides
        ((128, 256), 8, 10**6, P()),  # too small to be worth it
        ((128, 256), 1, 1, P()),  # no fsdp axis
        ((), 8, 0, P()),  # scalars
    ],
)
def test_leaf_spec(shape, fsdp, min_size, spec):
    assert sharding.leaf_spec(shape, fsdp, min_size) == spec


def test_train_mesh_shape_and_bad_fsdp():
    mesh = sharding.train_mesh(jax.devices(), 4)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4} and mesh.axis_names == sharding.BATCH_AXES
    with pytest.raises(ValueError, match="fsdp: expected a positive int dividing the device count 8, got 3"):
        sharding.train_mesh(jax.devices(), 3)
    with pytest.raises(ValueError, match="devices: expected at least one device"):
        sharding.train_mesh([], 1)


def _abstract_state(shardings_of):
    """The DDPM CIFAR-10 training state (params, Adam moments, EMA) as shape structs
    carrying the shardings of ``shardings_of(abstract)``: its layout without its 0.6 GB."""
    config = experiment.load_config("experiments/ddpm_cifar10/config.py:paper")
    abstract = jax.eval_shape(experiment.build(config).init_state, jax.random.key(0))
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings_of(abstract))


def test_fsdp_divides_the_ddpm_cifar10_state_per_device_by_the_number_of_shards():
    per_device = {}
    for fsdp in (1, 2, 8):
        mesh = sharding.train_mesh(jax.devices(), fsdp)
        state = _abstract_state(lambda a, mesh=mesh: sharding.state_shardings(a, mesh))
        per_device[fsdp] = {part: max(sharding.bytes_per_device(getattr(state, part)).values()) for part in ("params", "opt_state", "ema_params")}
    params_1 = per_device[1]["params"]
    assert params_1 > 35.7e6 * 4, "the paper's 35.7M float32 parameters, replicated"
    for fsdp in (2, 8):
        for part, held in per_device[fsdp].items():
            ratio = per_device[1][part] / held
            # Only leaves under 16,384 elements (norms, biases: 0.3% of the bytes) stay whole.
            assert fsdp * 0.97 < ratio <= fsdp, (fsdp, part, ratio)


def test_the_fsdp_step_keeps_the_state_sharded_and_smaller_per_device():
    model = V.VAE(latent_dim=4, data_shape=(8, 8, 1), hidden=(64,))
    opt = make_optimizer("adam", learning_rate=1e-3)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    held = {}
    for fsdp in (1, 8):
        step = build_train_step(LossUpdate(V.make_loss(model), opt), devices=jax.devices(), fsdp=fsdp, fsdp_min_size=256)
        state = step.place_state(create_train_state(params, opt))
        batch = step.place_batch({"image": (np.random.default_rng(0).random((16, 8, 8, 1)) > 0.5).astype(np.float32)})
        new_state, _ = step.step(state, batch, jax.random.key(1))
        kernel = new_state.params["params"]["encoder"]["hidden_0"]["kernel"]
        assert kernel.sharding.spec == (P(None, "fsdp") if fsdp == 8 else P())
        held[fsdp] = max(sharding.bytes_per_device(new_state.params).values())
    assert held[1] / held[8] > 6, held
