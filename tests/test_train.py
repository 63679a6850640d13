"""The training engine: back ends agree, steps do not retrace, EMA, checkpoints, NaN stops."""

import json
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from genjax.models import vae as V
from genjax.train import (
    Checkpointer,
    LossUpdate,
    MetricsWriter,
    MultiPlayerUpdate,
    TrainingDivergedError,
    build_train_step,
    create_train_state,
    example_keys,
    make_optimizer,
    make_update,
    read_metrics,
    train,
)
from genjax.train.checkpoint import CheckpointError

MODEL = V.VAE(latent_dim=3, data_shape=(4, 4, 1), hidden=(16,))
OPT = make_optimizer("adam", learning_rate=1e-2)


def _params():
    return MODEL.init(jax.random.key(1), jnp.zeros((1, 4, 4, 1)))


def _data(num_steps=20, batch=16):
    rng = np.random.default_rng(0)
    return (rng.random((num_steps, batch, 4, 4, 1)) > 0.5).astype(np.float32)


def _run(parallel, devices, num_steps=20, loss=None, ema_decay=0.9):
    step = build_train_step(LossUpdate(loss or V.make_loss(MODEL), OPT, ema_decay=ema_decay), parallel=parallel, devices=devices)
    state = step.place_state(create_train_state(_params(), OPT, ema=ema_decay is not None))
    data = _data(num_steps)
    losses = []
    key = jax.random.key(7)
    for i in range(num_steps):
        state, metrics = step.step(state, step.place_batch({"image": data[i]}), key)
        losses.append(float(metrics["loss"]))
    return np.array(losses), step.fetch_state(state)


@pytest.fixture(scope="module")
def single_device_run():
    return _run("jit", jax.devices()[:1])


@pytest.mark.parametrize("parallel", ["jit", "pmap"])
def test_eight_devices_match_one_device(parallel, single_device_run):
    assert len(jax.devices()) == 8
    losses_1, state_1 = single_device_run
    losses_8, state_8 = _run(parallel, jax.devices())
    np.testing.assert_allclose(losses_8, losses_1, rtol=2e-6, atol=1e-4)
    for a, b in zip(jax.tree.leaves(state_8.params), jax.tree.leaves(state_1.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state_8.ema_params), jax.tree.leaves(state_1.ema_params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(state_8.step) == 20
    assert losses_1[-1] < losses_1[0], "training on fixed data must lower the loss"


def test_jit_matches_eager_update():
    update = make_update(V.make_loss(MODEL), OPT, ema_decay=0.5)
    state = create_train_state(_params(), OPT, ema=True)
    batch = {"image": jnp.asarray(_data(1)[0])}
    keys = example_keys(jax.random.key(3), state.step, 16)
    with jax.disable_jit():
        eager_state, eager_metrics = update(state, batch, keys)
    jit_state, jit_metrics = jax.jit(update)(state, batch, keys)
    np.testing.assert_allclose(float(jit_metrics["loss"]), float(eager_metrics["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(jit_state), jax.tree.leaves(eager_state)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ema_is_the_decayed_average():
    update = make_update(V.make_loss(MODEL), OPT, ema_decay=0.75)
    state = create_train_state(_params(), OPT, ema=True)
    batch = {"image": jnp.asarray(_data(1)[0])}
    new, metrics = jax.jit(update)(state, batch, example_keys(jax.random.key(3), state.step, 16))
    for ema, old, p in zip(jax.tree.leaves(new.ema_params), jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        np.testing.assert_allclose(ema, 0.75 * old + 0.25 * p, rtol=1e-6, atol=1e-7)
    assert {"loss", "elbo", "recon", "kl", "grad_norm", "param_norm"} <= set(metrics)
    np.testing.assert_allclose(float(metrics["param_norm"]), float(optax.tree.norm(new.params)), rtol=1e-6)
    with pytest.raises(ValueError, match="ema_decay"):
        update(create_train_state(_params(), OPT, ema=False), batch, example_keys(jax.random.key(3), state.step, 16))


def test_steps_do_not_retrace():
    traces = []
    base = V.make_loss(MODEL)

    def counting_loss(params, batch, keys):
        traces.append(1)
        return base(params, batch, keys)

    for parallel in ("jit", "pmap"):
        traces.clear()
        _run(parallel, jax.devices(), num_steps=5, loss=counting_loss)
        assert len(traces) == 1, f"{parallel}: the loss was traced {len(traces)} times in 5 steps"


def test_per_example_noise_differs_across_examples_and_steps():
    a = jax.random.key_data(example_keys(jax.random.key(0), jnp.int32(0), 4))
    b = jax.random.key_data(example_keys(jax.random.key(0), jnp.int32(1), 4))
    rows = {tuple(r) for r in np.concatenate([a, b]).reshape(8, -1).tolist()}
    assert len(rows) == 8, "every example of every step gets its own key"


def test_batch_must_divide_device_count():
    step = build_train_step(LossUpdate(V.make_loss(MODEL), OPT), parallel="pmap")
    with pytest.raises(ValueError, match="divisible by the device count 8"):
        step.place_batch({"image": np.zeros((12, 4, 4, 1), np.float32)})
    with pytest.raises(ValueError, match="parallel"):
        build_train_step(LossUpdate(V.make_loss(MODEL), OPT), parallel="tpu")


def _loop(tmp_path, num_steps, loss=None, checkpoint_every=5):
    data = _data(40)
    step = build_train_step(LossUpdate(loss or V.make_loss(MODEL), OPT), devices=jax.devices()[:1])
    return train(
        train_step=step,
        state=create_train_state(_params(), OPT),
        batches=lambda s: {"image": data[s % 40]},
        key=jax.random.key(5),
        num_steps=num_steps,
        log_every=2,
        checkpoint_every=checkpoint_every,
        checkpointer=Checkpointer(tmp_path / "ckpt", max_to_keep=2),
        metrics=MetricsWriter(tmp_path / "metrics.jsonl"),
        progress=False,
    )


def test_loop_resumes_exactly_and_keeps_the_last_checkpoints(tmp_path):
    straight = _loop(tmp_path / "a", 20)
    _loop(tmp_path / "b", 12)
    # As if killed after logging step 12 but before saving it: the newest checkpoint is 10.
    shutil.rmtree(tmp_path / "b" / "ckpt" / "12")
    resumed = _loop(tmp_path / "b", 20)
    assert resumed.start_step == 10
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    assert Checkpointer(tmp_path / "b" / "ckpt").all_steps() == [15, 20]
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert steps == list(range(2, 21, 2)), "each step is logged once, also across a resume"


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    _loop(tmp_path, 10)
    ckpt = Checkpointer(tmp_path / "ckpt")
    assert ckpt.all_steps() == [5, 10]
    for f in (tmp_path / "ckpt" / "10").rglob("*"):
        if f.is_file() and "state" in str(f.relative_to(tmp_path)):
            f.write_bytes(b"\x00garbage")
    state, meta = ckpt.restore_latest(create_train_state(_params(), OPT))
    assert int(state.step) == 5 and meta["step"] == 5
    assert "step 10" in caplog.text
    assert (tmp_path / "ckpt_corrupt" / "10").is_dir(), "the unreadable checkpoint is kept aside, not deleted"
    resumed = _loop(tmp_path, 15)
    assert resumed.start_step == 5 and Checkpointer(tmp_path / "ckpt").all_steps() == [10, 15]


def test_checkpoint_whose_bytes_disagree_with_its_digest_is_rejected(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path / "ckpt")
    good = create_train_state(_params(), OPT)
    ckpt.save(good)
    tampered = good.replace(step=good.step + 1, params=jax.tree.map(lambda x: x + 1.0, good.params))
    ckpt.save(tampered)
    meta_file = tmp_path / "ckpt" / "1" / "meta" / "metadata"
    record = json.loads(meta_file.read_text())
    record["digest"] = "0" * 64
    meta_file.write_text(json.dumps(record))
    state, _ = ckpt.restore_latest(good)
    assert int(state.step) == 0
    assert "digest does not match" in caplog.text


def test_checkpoint_from_before_model_state_is_refused_and_stays_in_place(tmp_path):
    """A checkpoint of the 4-field TrainState of earlier versions is neither read nor set
    aside: restoring raises, names the reason, and the checkpoint is still there."""

    @struct.dataclass
    class FourFieldState:
        step: jax.Array
        params: Any
        opt_state: Any
        ema_params: Any = None

    good = create_train_state(_params(), OPT, ema=True)
    old = FourFieldState(step=good.step + 3, params=good.params, opt_state=good.opt_state, ema_params=good.ema_params)
    Checkpointer(tmp_path / "ckpt").save(old)
    with pytest.raises(CheckpointError, match="older than TrainState.model_state .* left in place"):
        Checkpointer(tmp_path / "ckpt").restore_latest(good)
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [3]
    assert not (tmp_path / "ckpt_corrupt").exists()


def test_checkpoint_of_another_layout_is_an_error_and_stays_in_place(tmp_path):
    stateful = create_train_state(_params(), OPT, model_state={"baseline": jnp.float32(2.0)})
    Checkpointer(tmp_path / "ckpt").save(stateful)
    with pytest.raises(CheckpointError, match="model_state"):
        Checkpointer(tmp_path / "ckpt").restore_latest(create_train_state(_params(), OPT))
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [0] and not (tmp_path / "ckpt_corrupt").exists()
    state, _ = Checkpointer(tmp_path / "ckpt").restore_latest(stateful)
    assert float(state.model_state["baseline"]) == 2.0


def test_nan_loss_stops_with_the_step_and_keeps_the_good_checkpoint(tmp_path):
    data = _data(40)
    data[12] = np.nan
    step = build_train_step(LossUpdate(V.make_loss(MODEL), OPT), devices=jax.devices()[:1])
    ckpt = Checkpointer(tmp_path / "ckpt")
    with pytest.raises(TrainingDivergedError, match="at step 13.*last good checkpoint is step 10"):
        train(
            train_step=step,
            state=create_train_state(_params(), OPT),
            batches=lambda s: {"image": data[s]},
            key=jax.random.key(5),
            num_steps=20,
            log_every=2,
            checkpoint_every=5,
            checkpointer=ckpt,
            progress=False,
        )
    assert ckpt.all_steps() == [5, 10]
    state, _ = ckpt.restore_latest(create_train_state(_params(), OPT))
    assert all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "train.num_steps"),
        ({"log_every": -1}, "train.log_every"),
        ({"checkpoint_every": 0}, "train.checkpoint_every"),
    ],
)
def test_loop_rejects_bad_periods(tmp_path, kwargs, match):
    step = build_train_step(LossUpdate(V.make_loss(MODEL), OPT), devices=jax.devices()[:1])
    args = {"num_steps": 5, "log_every": 1, "checkpoint_every": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(train_step=step, state=create_train_state(_params(), OPT), batches=lambda s: {}, key=jax.random.key(0), progress=False, **args)


def test_iwae_schedule_stages():
    from genjax.train.optim import iwae_schedule

    lr = iwae_schedule(1e-3, steps_per_epoch=10)
    # stage i lasts 3^i epochs of 10 steps: boundaries at 10, 40, 130, ...
    for step, stage in [(0, 0), (9, 0), (10, 1), (39, 1), (40, 2), (129, 2), (130, 3), (32_799, 7), (10**7, 7)]:
        np.testing.assert_allclose(float(lr(step)), 1e-3 * 10 ** (-stage / 7), rtol=1e-5)


def test_make_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="schedule: expected one of"):
        make_optimizer("adam", learning_rate=1e-3, schedule="exponential")
    with pytest.raises(ValueError, match="decay_steps"):
        make_optimizer("adam", learning_rate=1e-3, schedule="cosine")
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam", learning_rate=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("lion", learning_rate=1e-3)


def test_build_train_step_takes_a_declared_update():
    with pytest.raises(ValueError, match="update: expected a LossUpdate or a MultiPlayerUpdate, got function"):
        build_train_step(V.make_loss(MODEL))
    with pytest.raises(ValueError, match="optimizer: expected an optax.GradientTransformation"):
        LossUpdate(V.make_loss(MODEL), None)
    with pytest.raises(ValueError, match="ema_decay: expected None or a float"):
        LossUpdate(V.make_loss(MODEL), OPT, ema_decay=1.5)
    with pytest.raises(ValueError, match="builder: expected a callable"):
        MultiPlayerUpdate(None, {"a": OPT})
    with pytest.raises(ValueError, match="optimizer: expected a mapping from parameter group"):
        MultiPlayerUpdate(lambda mean_over_replicas: None, OPT)
    # A builder is given the back end's mean over replicas: the identity under jit,
    # lax.pmean over the device axis under pmap.
    seen = []

    def builder(*, mean_over_replicas):
        seen.append(mean_over_replicas)
        return make_update(V.make_loss(MODEL), OPT, mean_over_replicas=mean_over_replicas)

    build_train_step(MultiPlayerUpdate(builder, {"params": OPT}), parallel="jit")
    build_train_step(MultiPlayerUpdate(builder, {"params": OPT}), parallel="pmap")
    assert len(seen) == 2
    tree = {"x": jnp.arange(3.0)}
    assert seen[0](tree) is tree
    pmapped = jax.pmap(seen[1], axis_name="data", devices=jax.devices()[:2])({"x": jnp.stack([jnp.zeros(3), 2 * jnp.ones(3)])})
    np.testing.assert_allclose(pmapped["x"], np.ones((2, 3)))


def test_create_train_state_with_one_optimizer_per_group():
    params = {"a": jnp.ones(3), "b": {"w": jnp.zeros((2, 2))}}
    state = create_train_state(params, {"a": optax.sgd(0.1), "b": optax.adam(1e-3)})
    assert set(state.opt_state) == {"a", "b"}
    assert int(state.opt_state["b"][0].count) == 0
    with pytest.raises(ValueError, match=r"optimizer: a mapping of optimisers needs params with the same top-level keys \['a', 'c'\]"):
        create_train_state(params, {"a": optax.sgd(0.1), "c": optax.sgd(0.1)})


def test_linear_decay_schedule_and_rmsprop():
    opt = make_optimizer("sgd", learning_rate=1.0, schedule="linear", decay_steps=4)
    params = jnp.zeros(())
    state = opt.init(params)
    steps = []
    for _ in range(5):
        updates, state = opt.update(jnp.ones(()), state, params)
        steps.append(-float(updates))
    np.testing.assert_allclose(steps, [1.0, 0.75, 0.5, 0.25, 0.0])
    with pytest.raises(ValueError, match="decay_steps: the linear schedule needs a positive int"):
        make_optimizer("adam", learning_rate=1e-3, schedule="linear")
    rms = make_optimizer("rmsprop", learning_rate=0.1, b2=0.99)
    updates, _ = rms.update(jnp.full((), 2.0), rms.init(params), params)
    # First step: v = (1 - 0.99) * 4, update = -0.1 * 2 / sqrt(v).
    np.testing.assert_allclose(float(updates), -0.1 * 2.0 / np.sqrt(0.01 * 4.0), rtol=1e-4)
