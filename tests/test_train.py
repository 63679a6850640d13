"""The training engine: back ends agree, steps do not retrace, EMA, checkpoints, NaN stops."""

import functools
import json
import resource
import shutil
import sys
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
from genjax.train.checkpoint import MANIFEST, CheckpointError, folder_manifest, state_digest

MODEL = V.VAE(latent_dim=3, data_shape=(4, 4, 1), hidden=(16,))
OPT = make_optimizer("adam", learning_rate=1e-2)


def _params():
    return MODEL.init(jax.random.key(1), jnp.zeros((1, 4, 4, 1)))


def _data(num_steps=20, batch=16):
    rng = np.random.default_rng(0)
    return (rng.random((num_steps, batch, 4, 4, 1)) > 0.5).astype(np.float32)


def _run(parallel, devices, num_steps=20, loss=None, ema_decay=0.9, fsdp=1):
    update = LossUpdate(loss or V.make_loss(MODEL), OPT, ema_decay=ema_decay)
    step = build_train_step(update, parallel=parallel, devices=devices, fsdp=fsdp, fsdp_min_size=1)
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


@pytest.mark.parametrize(("parallel", "fsdp"), [("jit", 1), ("pmap", 1), ("jit", 2), ("jit", 8)])
def test_eight_devices_match_one_device(parallel, fsdp, single_device_run):
    assert len(jax.devices()) == 8
    losses_1, state_1 = single_device_run
    losses_8, state_8 = _run(parallel, jax.devices(), fsdp=fsdp)
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


@functools.cache
def _vae_step():
    """The one compiled step of the checkpoint tests (compiling it once saves seconds per test)."""
    return build_train_step(LossUpdate(V.make_loss(MODEL), OPT), devices=jax.devices()[:1])


def _loop(tmp_path, num_steps, loss=None, checkpoint_every=5, **kwargs):
    data = _data(40)
    step = build_train_step(LossUpdate(loss, OPT), devices=jax.devices()[:1]) if loss else _vae_step()
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
        **kwargs,
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


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _edit_record(folder, edit, *, fix_manifest):
    """Edits a checkpoint's record; with ``fix_manifest`` the manifest is rewritten to
    match, so that only the record's own checks can catch the edit."""
    meta = folder / "meta" / "metadata"
    record = json.loads(meta.read_text())
    edit(record)
    meta.write_text(json.dumps(record))
    if fix_manifest:
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["files"] = folder_manifest(folder)
        (folder / MANIFEST).write_text(json.dumps(manifest))


def _largest_array_file(folder):
    return max((p for p in (folder / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


DAMAGE = {
    "record truncated": lambda f: (f / "meta" / "metadata").write_bytes((f / "meta" / "metadata").read_bytes()[:20]),
    "record byte flipped": lambda f: _flip(f / "meta" / "metadata"),
    "record garbage": lambda f: (f / "meta" / "metadata").write_bytes(bytes(range(256))),
    "record deleted": lambda f: (f / "meta" / "metadata").unlink(),
    "meta folder deleted": lambda f: shutil.rmtree(f / "meta"),
    "digest deleted": lambda f: _edit_record(f, lambda r: r.pop("digest"), fix_manifest=False),
    "digest deleted, manifest rewritten": lambda f: _edit_record(f, lambda r: r.pop("digest"), fix_manifest=True),
    "record names another step": lambda f: _edit_record(f, lambda r: r.update(step=3), fix_manifest=True),
    "manifest deleted": lambda f: (f / MANIFEST).unlink(),
    "manifest garbage": lambda f: (f / MANIFEST).write_text("{not json"),
    "array file truncated": lambda f: _largest_array_file(f).write_bytes(_largest_array_file(f).read_bytes()[:10]),
    "array file byte flipped": lambda f: _flip(_largest_array_file(f)),
    "orbax step metadata deleted": lambda f: (f / "_CHECKPOINT_METADATA").unlink(),
    "orbax step metadata garbage": lambda f: (f / "_CHECKPOINT_METADATA").write_text("{garbage"),
    "state metadata garbage": lambda f: (f / "state" / "_METADATA").write_text("garbage"),
    "state folder deleted": lambda f: shutil.rmtree(f / "state"),
    "unexpected file added": lambda f: (f / "state" / "stray.bin").write_bytes(b"x"),
    "step folder emptied": lambda f: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in list(f.iterdir())],
    "stray empty newer step folder": lambda f: (f.parent / "12").mkdir(),
}


@pytest.fixture(scope="module")
def straight_15(tmp_path_factory):
    """The state of an uninterrupted 15-step run, the reference of every damaged one."""
    return _loop(tmp_path_factory.mktemp("straight"), 15).state


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_every_kind_of_damage_to_the_latest_checkpoint_is_set_aside_and_the_run_resumes_exactly(kind, tmp_path, caplog, straight_15):
    _loop(tmp_path, 10)
    DAMAGE[kind](tmp_path / "ckpt" / "10")
    resumed = _loop(tmp_path, 15)
    # The stray folder is the damaged one there; checkpoint 10 itself is intact.
    expected_start, damaged = (10, 12) if kind.startswith("stray") else (5, 10)
    assert resumed.start_step == expected_start
    for a, b in zip(jax.tree.leaves(straight_15), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("genjax")]
    assert len(warnings) == 1 and f"checkpoint {damaged} in" in warnings[0] and "is damaged" in warnings[0] and "\n" not in warnings[0], warnings
    assert (tmp_path / "ckpt_corrupt" / str(damaged)).is_dir(), "a damaged checkpoint is kept aside, not deleted"
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(2, 15, 2)) + [15], "each step is logged once across the resume"


def test_when_every_checkpoint_is_damaged_training_refuses_to_restart_unless_asked(tmp_path, straight_15):
    _loop(tmp_path, 10)
    for step in (5, 10):
        (tmp_path / "ckpt" / str(step) / "meta" / "metadata").unlink()
    for _ in range(2):  # the first call sets both aside, the second finds none left: both refuse
        with pytest.raises(CheckpointError, match=r"every checkpoint in .* is damaged; .*\(10, 5\).*--from-scratch"):
            _loop(tmp_path, 15)
    assert sorted((tmp_path / "ckpt_corrupt").iterdir()) == [tmp_path / "ckpt_corrupt" / "10", tmp_path / "ckpt_corrupt" / "5"]
    restarted = _loop(tmp_path, 15, from_scratch=True)
    assert restarted.start_step == 0
    for a, b in zip(jax.tree.leaves(straight_15), jax.tree.leaves(restarted.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_written_before_manifests_is_read_by_its_digest_alone(tmp_path):
    good = create_train_state(_params(), OPT)
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(good.replace(step=good.step + 1))
    ckpt.save(good.replace(step=good.step + 2))
    for step in (1, 2):
        folder = tmp_path / "ckpt" / str(step)
        (folder / MANIFEST).unlink()
        _edit_record(folder, lambda r: r.pop("format"), fix_manifest=False)
    _edit_record(tmp_path / "ckpt" / "2", lambda r: r.pop("digest"), fix_manifest=False)
    state, record = Checkpointer(tmp_path / "ckpt").restore_latest(good)
    assert int(state.step) == 1 and "format" not in record
    assert Checkpointer(tmp_path / "ckpt").quarantined() == ["2"], "without a manifest the digest is required"


def test_a_failed_save_names_the_error_and_leaves_the_earlier_checkpoints_intact(tmp_path):
    rng = np.random.default_rng(0)
    good = create_train_state({"w": rng.random((300, 300)).astype(np.float32)}, OPT)
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(good)
    unraisable = []
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # A file-size limit makes every write past 64 KB fail with EFBIG, as a full disk would.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(CheckpointError, match=r"saving checkpoint 1 in .* failed \(.*File too large.*\); the earlier checkpoints \[0\] are intact"):
            ckpt.save(good.replace(step=good.step + 1))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        sys.unraisablehook = previous_hook
    assert not unraisable, "orbax's leftover callbacks must not print tracebacks"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["0"], "the partial write is removed"
    state, _ = Checkpointer(tmp_path / "ckpt").restore_latest(good)
    assert state_digest(state) == state_digest(good)


def test_checkpoint_whose_bytes_disagree_with_its_digest_is_rejected(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path / "ckpt")
    good = create_train_state(_params(), OPT)
    ckpt.save(good)
    tampered = good.replace(step=good.step + 1, params=jax.tree.map(lambda x: x + 1.0, good.params))
    ckpt.save(tampered)
    _edit_record(tmp_path / "ckpt" / "1", lambda r: r.update(digest="0" * 64), fix_manifest=True)
    state, _ = ckpt.restore_latest(good)
    assert int(state.step) == 0
    assert "digest does not match" in caplog.text


def test_a_record_check_that_fails_stops_the_restore_and_moves_nothing(tmp_path):
    _loop(tmp_path, 10)

    def refuse(record):
        raise ValueError(f"config of step {record['step']} differs")

    with pytest.raises(ValueError, match="config of step 10 differs"):
        Checkpointer(tmp_path / "ckpt").restore_latest(create_train_state(_params(), OPT), check_record=refuse)
    assert Checkpointer(tmp_path / "ckpt").all_steps() == [5, 10] and not (tmp_path / "ckpt_corrupt").exists()


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
