"""Type aliases and protocols shared by models, samplers and the training engine.

Model modules import their types from here rather than from ``genjax.train``, so that the
math of a family never depends on the engine that trains it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import jax

Params = Any
"""A pytree of parameters (what ``flax.linen.Module.init`` returns)."""
Batch = dict[str, Any]
"""A batch: named arrays whose leading axis is the example axis."""
Metrics = dict[str, jax.Array]
"""Scalar metrics of one step, by name."""

T = TypeVar("T")
MeanOverReplicas = Callable[[T], T]
"""``mean(tree) -> tree``: the mean of every leaf over the data-parallel replicas that run
an update together (``lax.pmean`` over the device axis under ``pmap``; the identity when
one program sees the whole batch). The engine passes it to an update builder, so that no
model needs to know the name of a device axis."""


class UpdateState(Protocol):
    """What an update reads and replaces in a training state (``genjax.train.TrainState``).

    Attributes:
      step: number of updates applied so far.
      params: parameters.
      opt_state: optimiser state.
      ema_params: moving average of the parameters, or None.
      model_state: non-trained state carried by the loss, or None.
    """

    step: jax.Array
    params: Params
    opt_state: Any
    ema_params: Any
    model_state: Any

    def replace(self, **changes: Any) -> UpdateState:
        """A copy with the named fields replaced."""
        ...


S = TypeVar("S", bound=UpdateState)
UpdateFn = Callable[[Any, Batch, jax.Array], tuple[Any, Metrics]]
"""``update(state, batch, keys) -> (state, metrics)``: one pure training update; ``keys``
holds one PRNG key per example of ``batch``."""

__all__ = ["Batch", "MeanOverReplicas", "Metrics", "Params", "UpdateFn", "UpdateState"]
