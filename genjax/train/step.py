"""The one update contract and the two parallel back ends that compile it.

Every family trains through ``build_train_step(update)``, where ``update`` declares what
one step does:

* ``LossUpdate``: one gradient step of one optimiser on one loss, plain
  (``loss(params, batch, keys) -> (loss, metrics)``) or, declared with
  ``stateful=True``, carrying a non-trained ``model_state`` from step to step;
* ``MultiPlayerUpdate``: any other pure update, such as a GAN's critic and generator
  steps (``genjax.models.gan.make_gan_update``), given as a builder that receives the
  engine's ``mean_over_replicas``.

Both become the pure ``update(state, batch, keys) -> (state, metrics)``, which the back
ends compile:

* ``"jit"``: one program over the training mesh (axes ``"data"`` and ``"fsdp"``, see
  ``genjax.sharding``): the batch is split over every device with ``NamedSharding``, the
  state is replicated (``fsdp=1``) or its large leaves split ``fsdp`` ways, and XLA
  inserts the gradient all-reduce (or the gathers and reduce-scatters). On one device
  this is the plain single-device step; on several processes (``jax.distributed``) each
  one passes its own rows of the batch. It is the path that scales to multi-host pods.
* ``"pmap"``: the classic data-parallel step, one replica per device, gradients averaged
  with ``lax.pmean``.

Randomness is drawn per example: the step key is ``fold_in(key, state.step)`` and it is
split into one key per example of the *global* batch, so every back end and device count
draws the same noise for the same example and the results agree to float32 round-off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import sharding
from genjax.distributed import fetch_global
from genjax.sharding import DATA_AXIS
from genjax.train.state import TrainState
from genjax.types import Batch, MeanOverReplicas, Metrics, UpdateFn

LossFn = Callable[..., Any]
"""A plain loss ``loss(params, batch, keys) -> (loss, metrics)`` or a stateful one
``loss(params, batch, keys, *, step, model_state) -> (loss, (metrics, model_state))``."""
UpdateBuilder = Callable[..., UpdateFn]
"""``builder(mean_over_replicas=...) -> update``: builds a pure update for a back end. Under
``pmap`` ``mean_over_replicas`` is ``lax.pmean`` over the device axis and the update must
average its gradients and metrics with it; under ``jit`` it is the identity."""

BACKENDS = ("jit", "pmap")


def _identity(tree: Any) -> Any:
    return tree


def _pmean_over_data(tree: Any) -> Any:
    return jax.lax.pmean(tree, DATA_AXIS)


def example_keys(key: jax.Array, step: jax.Array, global_batch: int) -> jax.Array:
    """One key per example of the global batch for this step: split(fold_in(key, step))."""
    return jax.random.split(jax.random.fold_in(key, step), global_batch)


def make_update(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    stateful: bool = False,
    ema_decay: float | None = None,
    mean_over_replicas: MeanOverReplicas = _identity,
) -> UpdateFn:
    """Builds the pure update ``update(state, batch, keys) -> (state, metrics)`` of a loss.

    A loss comes in one of two forms, declared by ``stateful``:

    * plain (``stateful=False``), for a state whose ``model_state`` is None:
      ``loss(params, batch, keys) -> (scalar loss, metrics)``;
    * stateful (``stateful=True``), for a state with a ``model_state`` pytree (``{}``
      when only the step is needed): ``loss(params, batch, keys, step=step,
      model_state=model_state) -> (scalar loss, (metrics, new_model_state))``. ``step``
      is the number of updates so far (a traced int32), for schedules such as an
      annealed temperature; ``new_model_state`` is carried to the next step without
      being differentiated. Its floating leaves are averaged over replicas, which for a
      batch mean or a moving average of batch means equals the single-device value;
      other leaves must be equal on every replica.

    Both are averaged over the examples of ``batch``; ``keys`` holds one PRNG key per
    example.

    Args:
      loss_fn: the loss, in the declared form.
      optimizer: optax transformation.
      stateful: whether ``loss_fn`` has the stateful form.
      ema_decay: if set, ``ema_params`` is updated as
        ``decay * ema + (1 - decay) * params`` after each step.
      mean_over_replicas: averages gradients, loss, metrics and model state over the
        data-parallel replicas (the engine passes it; the identity on one program).

    Returns:
      The update function. Metrics hold ``loss``, each loss term, ``grad_norm`` and
      ``param_norm`` (global L2 norms, after the update for the parameters).
    """
    if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay: expected a float in [0, 1), got {ema_decay}")

    def update(state: TrainState, batch: Batch, keys: jax.Array) -> tuple[TrainState, Metrics]:
        model_state = state.model_state
        if stateful != (model_state is not None):
            raise ValueError(
                f"model_state: the loss is declared {'stateful' if stateful else 'plain'} but the state's model_state is "
                f"{'None' if model_state is None else 'set'}; build the state with create_train_state(..., model_state="
                f"{'the loss initial state' if stateful else 'None'})"
            )
        if model_state is None:
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, keys)
        else:

            def stateful_loss(params: Any) -> tuple[jax.Array, tuple[Metrics, Any]]:
                return loss_fn(params, batch, keys, step=state.step, model_state=state.model_state)

            (loss, (metrics, model_state)), grads = jax.value_and_grad(stateful_loss, has_aux=True)(state.params)
            model_state = jax.lax.stop_gradient(model_state)
        metrics = {"loss": loss, **metrics}
        grads = mean_over_replicas(grads)
        metrics = mean_over_replicas(metrics)
        model_state = jax.tree.map(lambda x: mean_over_replicas(x) if jnp.issubdtype(x.dtype, jnp.floating) else x, model_state)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if (ema_decay is None) != (ema is None):
            raise ValueError(
                f"ema_decay: is {ema_decay} but the state {'has no' if ema is None else 'has'} ema_params; "
                "build the state with create_train_state(..., ema=ema_decay is not None)"
            )
        if ema_decay is not None:
            ema = optax.incremental_update(params, ema, step_size=1.0 - ema_decay)
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["param_norm"] = optax.tree.norm(params)
        new_state = dataclasses.replace(state, step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema, model_state=model_state)
        return new_state, metrics

    return update


@dataclasses.dataclass(frozen=True)
class LossUpdate:
    """One gradient step of one optimiser on one loss (see ``make_update``).

    Attributes:
      loss_fn: the loss, plain or (with ``stateful=True``) stateful.
      optimizer: the optax transformation of the parameters.
      stateful: whether ``loss_fn`` has the stateful form and the state a ``model_state``.
      ema_decay: decay of the parameters' moving average, or None for none.
    """

    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    stateful: bool = False
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.loss_fn):
            raise ValueError(f"loss_fn: expected a callable loss, got {type(self.loss_fn).__name__}")
        if not isinstance(self.optimizer, optax.GradientTransformation):
            raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(self.optimizer).__name__}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected None or a float in [0, 1), got {self.ema_decay}")

    def build(self, mean_over_replicas: MeanOverReplicas) -> UpdateFn:
        """The pure update for a back end (see ``make_update``)."""
        return make_update(self.loss_fn, self.optimizer, stateful=self.stateful, ema_decay=self.ema_decay, mean_over_replicas=mean_over_replicas)


@dataclasses.dataclass(frozen=True)
class MultiPlayerUpdate:
    """An update that is not one gradient step on one loss, such as a GAN's.

    Attributes:
      builder: ``builder(mean_over_replicas=...) -> update``; the update must average its
        gradients and metrics over replicas with the function it is given.
      optimizer: one optax transformation per top-level parameter group (the players),
        what ``create_train_state`` builds the optimiser states from.
    """

    builder: UpdateBuilder
    optimizer: Mapping[str, optax.GradientTransformation]

    def __post_init__(self) -> None:
        if not callable(self.builder):
            raise ValueError(f"builder: expected a callable update builder, got {type(self.builder).__name__}")
        if not isinstance(self.optimizer, Mapping) or not all(isinstance(o, optax.GradientTransformation) for o in self.optimizer.values()):
            raise ValueError(f"optimizer: expected a mapping from parameter group to optax.GradientTransformation, got {self.optimizer!r}")

    def build(self, mean_over_replicas: MeanOverReplicas) -> UpdateFn:
        """The pure update for a back end."""
        return self.builder(mean_over_replicas=mean_over_replicas)


Update = LossUpdate | MultiPlayerUpdate
"""What one training step does: the argument of ``build_train_step``."""


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """A compiled training step with the helpers that move data to and from its layout.

    Attributes:
      backend: ``"jit"`` or ``"pmap"``.
      devices: the devices the step runs on.
      step: ``step(state, batch, key) -> (state, metrics)``; ``key`` is the run's base
        key, ``state`` must be in the back end's layout (see ``place_state``). The state
        argument is donated.
      place_state: puts a host state in the back end's layout.
      fetch_state: returns a single, host-side copy of a state in that layout (every
        process gets the whole state; every process must call it).
      checkpoint_state: what ``Checkpointer.save`` is given: the global arrays under
        ``jit`` (each process writes its own shards), a host copy under ``pmap``.
      place_batch: puts a global (or, multi-host, process-local) numpy batch in place.
    """

    backend: str
    devices: tuple[jax.Device, ...]
    step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
    place_state: Callable[[TrainState], TrainState]
    fetch_state: Callable[[TrainState], TrainState]
    checkpoint_state: Callable[[TrainState], TrainState]
    place_batch: Callable[[Batch], Batch]


def check_global_batch(global_batch: int, num_devices: int) -> None:
    """Raises ValueError unless ``global_batch`` is a positive multiple of ``num_devices``."""
    if global_batch <= 0:
        raise ValueError(f"train.batch_size: expected a positive int, got {global_batch}")
    if global_batch % num_devices:
        raise ValueError(f"train.batch_size: the global batch {global_batch} must be divisible by the device count {num_devices}")


def build_train_step(
    update: Update,
    *,
    parallel: str = "jit",
    devices: Sequence[jax.Device] | None = None,
    fsdp: int = 1,
    fsdp_min_size: int = sharding.FSDP_MIN_SIZE,
) -> TrainStep:
    """Compiles the training step of ``update`` for a back end; see the module docstring.

    Args:
      update: a ``LossUpdate`` or a ``MultiPlayerUpdate``.
      parallel: ``"jit"`` or ``"pmap"``.
      devices: devices to use (default: all of ``jax.devices()``, over every process).
      fsdp: ``"jit"`` only: how many devices share each large leaf of the state (1:
        replicated); must divide the device count.
      fsdp_min_size: leaves with fewer elements stay replicated (see
        ``genjax.sharding.leaf_spec``).

    Returns:
      A ``TrainStep``.
    """
    if not isinstance(update, (LossUpdate, MultiPlayerUpdate)):
        raise ValueError(f"update: expected a LossUpdate or a MultiPlayerUpdate, got {type(update).__name__}")
    if parallel not in BACKENDS:
        raise ValueError(f"parallel: expected one of {BACKENDS}, got {parallel!r}")
    devices = tuple(jax.devices() if devices is None else devices)
    if parallel == "jit":
        return _build_jit(update, devices, fsdp, fsdp_min_size)
    if fsdp != 1:
        raise ValueError(f"fsdp: parameter sharding needs parallel='jit', got fsdp={fsdp} with parallel='pmap'")
    return _build_pmap(update, devices)


def _to_global(host: Any, shardings: Any) -> Any:
    """Places host arrays that every process holds alike as global arrays; each process
    supplies only the shards of its own devices."""
    return jax.tree.map(lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx: np.asarray(x)[idx]), host, shardings)


def _build_jit(spec: Update, devices: tuple[jax.Device, ...], fsdp: int, min_size: int) -> TrainStep:
    mesh = sharding.train_mesh(devices, fsdp)
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = NamedSharding(mesh, P())
    update = spec.build(_identity)

    def step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        global_batch = jax.tree.leaves(batch)[0].shape[0]
        keys = jax.lax.with_sharding_constraint(example_keys(key, state.step, global_batch), batch_sharding)
        new_state, metrics = update(state, batch, keys)
        new_state = jax.lax.with_sharding_constraint(new_state, sharding.state_shardings(new_state, mesh, min_size))
        return new_state, jax.lax.with_sharding_constraint(metrics, replicated)

    # The state's layout comes from its arrays (``place_state``) and is pinned inside the
    # step, so the step needs no in_shardings and keeps the layout from call to call.
    compiled = jax.jit(step, donate_argnums=0)

    def place_batch(batch: Batch) -> Batch:
        check_global_batch(jax.tree.leaves(batch)[0].shape[0] * jax.process_count(), len(devices))
        if jax.process_count() == 1:
            return jax.device_put(batch, batch_sharding)
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(batch_sharding, x), batch)

    def place_state(state: TrainState) -> TrainState:
        host = fetch_global(state)
        return _to_global(host, sharding.state_shardings(host, mesh, min_size))

    return TrainStep(
        backend="jit",
        devices=devices,
        step=compiled,
        place_state=place_state,
        fetch_state=fetch_global,
        checkpoint_state=lambda s: s,
        place_batch=place_batch,
    )


def _build_pmap(spec: Update, devices: tuple[jax.Device, ...]) -> TrainStep:
    n = len(devices)
    update = spec.build(_pmean_over_data)

    def step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        local = jax.tree.leaves(batch)[0].shape[0]
        keys = example_keys(key, state.step, local * n)
        keys = jax.lax.dynamic_slice_in_dim(keys, jax.lax.axis_index(DATA_AXIS) * local, local)
        return update(state, batch, keys)

    # Metrics are pmean-ed, hence equal on every device: out_axes=None returns one copy.
    mapped = jax.pmap(step, axis_name=DATA_AXIS, in_axes=(0, 0, None), out_axes=(0, None), devices=devices, donate_argnums=0)

    local_devices = sum(d.process_index == jax.process_index() for d in devices)

    def place_batch(batch: Batch) -> Batch:
        # The batch is this process's slice; it is split over this process's devices.
        local_batch = jax.tree.leaves(batch)[0].shape[0]
        check_global_batch(local_batch * jax.process_count(), n)
        return jax.tree.map(lambda x: np.reshape(x, (local_devices, x.shape[0] // local_devices) + x.shape[1:]), batch)

    # An identity pmap puts the stacked copies in the exact layout the step returns, so
    # the first and later steps see the same input type and the step is traced once.
    to_layout = jax.pmap(lambda s: s, axis_name=DATA_AXIS, devices=devices)

    def fetch_first(state: TrainState) -> TrainState:
        return jax.device_get(jax.tree.map(lambda x: x[0], state))

    def place_state(state: TrainState) -> TrainState:
        host = jax.device_get(state)
        return to_layout(jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (local_devices,) + np.shape(x)), host))

    return TrainStep(
        backend="pmap",
        devices=devices,
        step=mapped,
        place_state=place_state,
        fetch_state=fetch_first,
        checkpoint_state=fetch_first,
        place_batch=place_batch,
    )
