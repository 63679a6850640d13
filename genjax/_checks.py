"""Argument checks shared by ``genjax.distributions``, ``genjax.estimators`` and the models.

Each check raises ValueError naming the argument. Arithmetic on logits runs in float32
(float64 under x64) whatever their floating dtype (``compute_dtype``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = jax.typing.ArrayLike
_TRACED = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)


def concrete(x: ArrayLike) -> np.ndarray | None:
    """The value of ``x`` if known at trace time, else None."""
    try:
        return np.asarray(x)
    except _TRACED:
        return None


def check_temperature(temperature: ArrayLike) -> None:
    """A scalar; positive when its value is known (a traced temperature cannot be checked)."""
    if jnp.ndim(temperature) != 0:
        raise ValueError(f"temperature: expected a scalar, got shape {jnp.shape(temperature)}")
    value = concrete(temperature)
    if value is not None and not value > 0:
        raise ValueError(f"temperature: expected a positive number, got {value}")


def check_unit_interval(x: ArrayLike, name: str) -> None:
    """Finite values in [0, 1] when known (a traced ``x`` cannot be checked), e.g. Bernoulli
    data or image intensities."""
    value = concrete(x)
    if value is None or value.size == 0:
        return
    bad = int(value.size - np.count_nonzero(np.isfinite(value)))
    if bad:
        raise ValueError(f"{name}: expected finite values in [0, 1], got {bad} NaN or infinite of {value.size}")
    high, low = float(np.max(value)), float(np.min(value))
    if high > 1:
        raise ValueError(f"{name}: expected values in [0, 1] (binarised or grey levels), got max {high}")
    if low < 0:
        raise ValueError(f"{name}: expected values in [0, 1] (binarised or grey levels), got min {low}")


def check_example_keys(keys: jax.Array, num: int, name: str = "keys") -> None:
    """``num`` typed PRNG keys, shape [batch] = (num,): one per example (checkable when traced)."""
    shape, dtype = getattr(keys, "shape", None), getattr(keys, "dtype", None)
    if shape != (num,) or dtype is None or not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        raise ValueError(
            f"{name}: expected shape [batch] = ({num},) of typed PRNG keys, one per example "
            f"(e.g. jax.random.split(key, {num})), got shape {shape} and dtype {dtype}"
        )


def floating(x: ArrayLike, name: str) -> jax.Array:
    """``x`` as an array, which must have a floating dtype."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name}: expected a floating dtype, got {x.dtype}")
    return x


def categorical_logits(logits: ArrayLike, axis: int) -> tuple[jax.Array, int]:
    """Validates categorical logits; returns them and the non-negative class axis."""
    logits = floating(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits: expected at least one (class) dimension, got a scalar")
    if not isinstance(axis, (int, np.integer)) or not -logits.ndim <= axis < logits.ndim:
        raise ValueError(f"axis: expected an int in [{-logits.ndim}, {logits.ndim}), got {axis}")
    axis %= logits.ndim
    if logits.shape[axis] < 2:
        raise ValueError(f"logits: class axis {axis} must have size >= 2, got shape {logits.shape}")
    return logits, axis


def compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The dtype arithmetic runs in: ``dtype`` promoted to at least float32."""
    return jnp.promote_types(dtype, jnp.float32)
