"""Device meshes and the sharding rules shared by the training engine and the samplers.

genjax's parallel path is jit over a named mesh, the same program from one CPU core to a
multi-host pod (jax.distributed): the batch is split over every device and each array of
the training state gets a ``NamedSharding``. The training mesh has two axes:

* ``"data"`` (``DATA_AXIS``): pure data parallelism; the state is replicated along it.
* ``"fsdp"`` (``FSDP_AXIS``): fully-sharded data parallelism (Rajbhandari et al. 2020,
  ZeRO stage 3): the batch is split along it too, and every large leaf of the parameters
  and optimiser state is split along one of its dimensions, so each device holds
  ``1 / fsdp`` of it; XLA gathers the leaves where a layer needs them and
  reduce-scatters their gradients.

With ``fsdp = 1`` the mesh is ``(num_devices, 1)`` and the step is plain data
parallelism. Sharding changes only the order of floating-point reductions, so losses and
parameters agree with one device to float32 round-off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
"""The training mesh's axes, both of which split the batch."""

FSDP_MIN_SIZE = 2**14
"""Leaves with fewer elements stay replicated: splitting biases and norms saves little
memory and costs a collective each."""


def _check_devices(devices: Sequence[jax.Device]) -> tuple[jax.Device, ...]:
    devices = tuple(devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got none")
    return devices


def data_mesh(devices: Sequence[jax.Device]) -> Mesh:
    """A 1-D mesh over ``devices`` with the single axis ``"data"`` (``DATA_AXIS``).

    The samplers use it: the batch of samples is split along this axis and parameters are
    replicated.

    Args:
      devices: the devices, in mesh order; at least one.

    Returns:
      ``Mesh(np.array(devices), ("data",))``.

    Raises:
      ValueError: naming ``devices`` when it is empty.
    """
    return Mesh(np.array(_check_devices(devices)), (DATA_AXIS,))


def train_mesh(devices: Sequence[jax.Device], fsdp: int = 1) -> Mesh:
    """The training mesh: ``(len(devices) // fsdp, fsdp)`` devices along ``("data", "fsdp")``.

    Devices are laid out in the order given (``jax.devices()`` orders them by process),
    so the ``fsdp`` groups are consecutive devices, on one host where the count allows:
    their all-gathers then stay on the host's fast interconnect.

    Args:
      devices: the devices; at least one.
      fsdp: how many devices share each parameter (1: replicated parameters); must
        divide ``len(devices)``.

    Returns:
      A ``Mesh`` with axis names ``BATCH_AXES``.

    Raises:
      ValueError: naming ``devices`` or ``fsdp``.
    """
    devices = _check_devices(devices)
    if isinstance(fsdp, bool) or not isinstance(fsdp, int) or fsdp < 1 or len(devices) % fsdp:
        raise ValueError(f"fsdp: expected a positive int dividing the device count {len(devices)}, got {fsdp!r}")
    return Mesh(np.array(devices).reshape(len(devices) // fsdp, fsdp), BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (example) axis over every device of a training mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def leaf_spec(shape: Sequence[int], fsdp: int, min_size: int = FSDP_MIN_SIZE) -> P:
    """The ``PartitionSpec`` of one state leaf under ``fsdp``-way parameter sharding.

    A leaf of at least ``min_size`` elements is split along its largest dimension that
    ``fsdp`` divides (the last such on ties: the output features of a kernel); any other
    leaf, and every leaf when ``fsdp == 1``, is replicated.

    Args:
      shape: the leaf's shape.
      fsdp: the size of the mesh's ``"fsdp"`` axis.
      min_size: the smallest leaf that is split.

    Returns:
      ``P()`` or a spec with ``"fsdp"`` at the chosen dimension.
    """
    if fsdp == 1 or math.prod(shape) < min_size:
        return P()
    candidates = [(size, dim) for dim, size in enumerate(shape) if size % fsdp == 0]
    if not candidates:
        return P()
    _, dim = max(candidates)
    return P(*([None] * dim), FSDP_AXIS)


def state_shardings(tree: Any, mesh: Mesh, min_size: int = FSDP_MIN_SIZE) -> Any:
    """The ``NamedSharding`` of every leaf of ``tree`` (arrays or shape structs) on ``mesh``.

    Args:
      tree: a pytree of objects with a ``shape`` (arrays, ``jax.ShapeDtypeStruct``).
      mesh: a training mesh (see ``train_mesh``).
      min_size: see ``leaf_spec``.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``tree``.
    """
    fsdp = mesh.shape[FSDP_AXIS]
    return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), fsdp, min_size)), tree)


def bytes_per_device(tree: Any) -> dict[jax.Device, int]:
    """Bytes of ``tree``'s arrays held on each device, read from their shardings.

    Args:
      tree: a pytree of ``jax.Array`` (or ``jax.ShapeDtypeStruct`` with a sharding).

    Returns:
      Device to bytes, over every device any leaf is placed on.
    """
    held: dict[jax.Device, int] = {}
    for leaf in jax.tree.leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        size = math.prod(shard) * np.dtype(leaf.dtype).itemsize
        for device in leaf.sharding.device_set:
            held[device] = held.get(device, 0) + size
    return held


__all__ = [
    "BATCH_AXES",
    "DATA_AXIS",
    "FSDP_AXIS",
    "FSDP_MIN_SIZE",
    "batch_sharding",
    "bytes_per_device",
    "data_mesh",
    "leaf_spec",
    "state_shardings",
    "train_mesh",
]
