"""The training state pytree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    """Everything a training run carries from step to step, as one pytree.

    Attributes:
      step: number of updates applied so far (int32 scalar).
      params: model parameters.
      opt_state: optax optimiser state.
      ema_params: exponential moving average of the parameters, or None.
      model_state: state a loss carries between steps that is not trained by the
        optimiser (e.g. the moving-average baseline of a score-function estimator), or
        None for a plain loss; see ``genjax.train.make_update``.
    """

    step: jax.Array
    params: chex.ArrayTree
    opt_state: optax.OptState
    ema_params: Any = None
    model_state: Any = None

    if TYPE_CHECKING:
        # struct.dataclass adds ``replace`` at run time, where type checkers cannot see it.
        def replace(self, **changes: Any) -> TrainState:
            """A copy with the named fields replaced."""
            ...


def create_train_state(
    params: chex.ArrayTree,
    optimizer: optax.GradientTransformation | Mapping[str, optax.GradientTransformation],
    *,
    ema: bool = False,
    model_state: chex.ArrayTree | None = None,
) -> TrainState:
    """Builds the initial state: step 0, fresh optimiser state, EMA initialised to params.

    Args:
      params: initial parameters.
      optimizer: the optax transformation that the step will apply; or, for an update
        that trains several parameter groups with their own optimisers (the generator
        and critic of a GAN), a mapping from each top-level key of ``params`` to its
        transformation, giving an ``opt_state`` dict with the same keys.
      ema: whether to keep an exponential moving average of the parameters.
      model_state: the initial state of a stateful loss (a pytree, possibly ``{}``), or
        None for a plain loss.
    """
    if isinstance(optimizer, Mapping):
        if not isinstance(params, Mapping) or set(optimizer) != set(params):
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(f"optimizer: a mapping of optimisers needs params with the same top-level keys {sorted(optimizer)}, got {got}")
        opt_state = {name: opt.init(params[name]) for name, opt in optimizer.items()}
    else:
        opt_state = optimizer.init(params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        model_state=model_state,
    )


def num_params(params: chex.ArrayTree) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
