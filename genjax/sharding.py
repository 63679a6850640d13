"""Device meshes shared by the training engine and the samplers."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device]) -> jax.sharding.Mesh:
    """A 1-D mesh over ``devices`` with the single axis ``"data"`` (``DATA_AXIS``).

    Batches are split along this axis (``PartitionSpec(DATA_AXIS)``) and parameters are
    replicated (``PartitionSpec()``): plain data parallelism.

    Args:
      devices: the devices, in mesh order; at least one.

    Returns:
      ``jax.sharding.Mesh(np.array(devices), ("data",))``.

    Raises:
      ValueError: naming ``devices`` when it is empty.
    """
    devices = tuple(devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got none")
    return jax.sharding.Mesh(np.array(devices), (DATA_AXIS,))


__all__ = ["DATA_AXIS", "data_mesh"]
