"""The sampler contract: the denoiser, the ``Sampler`` interface and the one scan skeleton.

The samplers depend on the model only through two objects:

* ``alphas_cumprod``: float array ``[T]`` of the discrete DDPM forward process,
  ``abar_t = prod_{s<=t} (1 - beta_s)`` for ``t = 0..T-1`` (Ho et al. 2020, arXiv
  2006.11239, eq. 4). It is strictly decreasing and inside ``(0, 1)``. Everything else is
  derived from it: ``beta_t = 1 - abar_t / abar_{t-1}`` with ``abar_{-1} = 1``, the
  posterior variance ``beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t`` (eq. 7),
  ``sigma`` and log-SNR. The index ``t = -1`` stands for clean data (``abar = 1``).
* a single-example ``Denoiser``: ``denoiser(x_t, t) -> Prediction``, where ``x_t`` has the
  image shape (no batch axis) and ``t`` is a float32 scalar, the model's continuous time
  (see ``Denoiser``).

A sampler is a small frozen dataclass carrying its own options (``Sampler``): it builds
a per-step table once, before the loop, and exposes one pure ``step`` that ``run`` - the
only ``jax.lax.scan`` over steps in the package - applies row by row, so the traced
program (and its compile time) does not depend on the number of steps.

The per-step coefficients are computed on the host in float64 when the table is
concrete (the usual case), in float32 when it is traced; they enter the scan as float32
arrays. The carried state and all arithmetic in the loop are float32 whatever the
network's dtype: the denoiser's output is cast to float32 on arrival.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from genjax.distributions import eps_from_v, eps_from_x0

VARIANCES = ("small", "large", "learned")
PARAMETERIZATIONS = ("eps", "x0", "v")


@struct.dataclass
class Prediction:
    """What the denoiser returns for one noisy example.

    Attributes:
      eps: the predicted noise, same shape as ``x_t`` (cast to float32 by the samplers).
      var_frac: the learned variance interpolation ``v`` in ``[0, 1]`` of Nichol &
        Dhariwal (2021, arXiv 2102.09672, eq. 15): ``log sigma^2 = v log beta_t +
        (1 - v) log beta_tilde_t``; ``None`` for fixed variances.
    """

    eps: jax.Array
    var_frac: jax.Array | None = None


class Denoiser(Protocol):
    """The model as the samplers see it: ``denoiser(x_t, t) -> Prediction`` for one example.

    ``x_t`` is float32 of the sample's shape (no batch axis: ``jax.vmap`` adds it) and
    ``t`` a float32 scalar, the model's time as the sampler's step table gives it
    (the ``t`` field of each table row). The time is continuous: for the discrete DDPM
    models of this package it is the timestep index on ``[0, T-1]``, which the ODE
    solvers visit at non-integer values where ``abar`` is the linear interpolation of
    the table (``abar_at``); ``t = -1`` is never passed. A continuous-time model (EDM,
    with ``t = sigma``; flow matching, with ``t`` in ``[0, 1]``) plugs in through a sampler
    whose table carries that time instead; the contract does not change.

    The denoiser must return a ``Prediction``; a plain array is refused with a
    ``TypeError`` (it could be ``eps``, ``x0`` or ``v``): wrap a network with
    ``denoiser_from_apply``, which converts ``x0``/``v`` outputs to ``eps``.
    """

    def __call__(self, x_t: jax.Array, t: jax.Array) -> Prediction: ...


ApplyFn = Callable[[jax.Array, jax.Array], jax.Array]


# ----------------------------------------------------------------------------- checks


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_alphas_cumprod(alphas_cumprod: ArrayLike):
    """Validates the ``abar`` table and returns it unchanged.

    Raises:
      ValueError: naming ``alphas_cumprod`` when it is not 1D, is empty, is not strictly
        decreasing or has values outside the open interval ``(0, 1)``. The value checks
        are skipped when the table is a tracer (inside ``jit`` with the table as an
        argument); its shape is still checked.
    """
    if np.ndim(alphas_cumprod) != 1 or np.shape(alphas_cumprod)[0] < 1:
        raise ValueError(f"alphas_cumprod: expected a non-empty 1D array [T], got shape {np.shape(alphas_cumprod)}")
    if not _is_tracer(alphas_cumprod):
        a = np.asarray(alphas_cumprod, dtype=np.float64)
        if not np.all(np.isfinite(a)) or np.any(a <= 0.0) or np.any(a >= 1.0):
            raise ValueError(f"alphas_cumprod: values must lie in the open interval (0, 1), got range [{a.min()}, {a.max()}]")
        if a.shape[0] > 1 and np.any(np.diff(a) >= 0.0):
            raise ValueError("alphas_cumprod: must be strictly decreasing in t (abar_t = prod_{s<=t} (1 - beta_s))")
    return alphas_cumprod if hasattr(alphas_cumprod, "shape") else np.asarray(alphas_cumprod, np.float32)


def check_steps(steps: int, num_timesteps: int | None = None) -> None:
    """``steps`` must be an integer in ``[1, T]`` (``[1, inf)`` when ``T`` is unknown)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps: expected an int, got {steps!r}")
    upper = "T" if num_timesteps is None else f"T={num_timesteps}"
    if steps < 1 or (num_timesteps is not None and steps > num_timesteps):
        raise ValueError(f"steps: must lie in [1, {upper}], got {steps}")


def check_record(record: Sequence[int], steps: int) -> tuple[int, ...]:
    """``record`` holds step indices in ``[0, steps)``; returned as a tuple of ints."""
    record = tuple(record)
    for r in record:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r < steps:
            raise ValueError(f"record: step indices must be ints in [0, steps={steps}), got {record}")
    return tuple(int(r) for r in record)


# ------------------------------------------------------------------------- schedules


def schedule_table(alphas_cumprod: ArrayLike):
    """``(table, xp)`` for computing per-step coefficients before the scan.

    A concrete table (the usual case) is returned as float64 numpy with ``xp = np``: the
    coefficients are then computed on the host in double precision and enter the program
    as float32 constants. A traced table (passed as an argument of ``jit``) is returned as
    float32 ``jnp`` with ``xp = jnp``. Both paths run the same code.
    """
    if _is_tracer(alphas_cumprod):
        return jnp.asarray(alphas_cumprod, jnp.float32), jnp
    return np.asarray(alphas_cumprod, np.float64), np


def f32(x) -> jax.Array:
    """A per-step coefficient array as float32."""
    return jnp.asarray(x, jnp.float32)


def abar_at(alphas_cumprod: jax.Array, t: jax.Array) -> jax.Array:
    """``abar`` at a possibly non-integer ``t``: linear interpolation of the table.

    ``t`` is clamped to ``[0, T-1]``; at integer ``t`` this is the table entry.
    """
    table = jnp.asarray(alphas_cumprod, jnp.float32)
    num_timesteps = table.shape[0]
    t = jnp.clip(jnp.asarray(t, jnp.float32), 0.0, num_timesteps - 1)
    if num_timesteps == 1:
        return jnp.broadcast_to(table[0], t.shape)
    i = jnp.minimum(jnp.floor(t).astype(jnp.int32), num_timesteps - 2)
    w = t - i.astype(jnp.float32)
    return table[i] * (1.0 - w) + table[i + 1] * w


def t_of_abar(table, abar, xp=jnp):
    """The continuous ``t`` with ``abar_at(t) == abar``: the inverse of ``abar_at``.

    ``abar`` outside the table's range is clamped to the end points ``t = 0`` or ``T-1``.
    ``xp`` is ``np`` or ``jnp`` (see ``schedule_table``).
    """
    grid = xp.arange(table.shape[0], dtype=table.dtype)
    # interp needs increasing abscissae: abar decreases in t, so flip both.
    return xp.interp(abar, table[::-1], grid[::-1])


def spaced_timesteps(steps: int, num_timesteps: int) -> np.ndarray:
    """The ``steps`` discrete timesteps used by ``ddpm`` and ``ddim``, increasing.

    ``t_i = round(i (T-1) / (steps-1))`` for ``i = 0..steps-1`` (halves rounded up, in
    exact integer arithmetic), i.e. evenly spaced in ``[0, T-1]`` with both end points:
    the respacing rule of Nichol & Dhariwal (2021, arXiv 2102.09672, Sec. 4) for one
    section. It starts the reverse process at ``T-1``, where ``x_T ~ N(0, I)`` is drawn,
    and ``steps == T`` gives every timestep. ``steps == 1`` gives ``[T-1]`` (one jump from
    pure noise to the predicted data).
    """
    check_steps(steps, num_timesteps)
    if steps == 1:
        return np.array([num_timesteps - 1], dtype=np.int64)
    i = np.arange(steps, dtype=np.int64)
    return (2 * i * (num_timesteps - 1) + (steps - 1)) // (2 * (steps - 1))


def spaced_abar(alphas_cumprod: ArrayLike, steps: int):
    """Per-step ``(t, abar_t, abar_prev, xp)`` of ``ddpm`` and ``ddim``, in loop order.

    ``t`` runs down ``base.spaced_timesteps`` (``T-1, ..., 0``, int64); ``abar_prev`` is
    ``abar`` at the next (smaller) timestep of the subset, and 1 for the final step to
    ``t = -1``. Arrays are float64 numpy (``xp = np``) for a concrete table, float32
    ``jnp`` for a traced one (``schedule_table``).
    """
    table, xp = schedule_table(alphas_cumprod)
    ts = spaced_timesteps(steps, table.shape[0])[::-1]
    prev = np.concatenate([ts[1:], [-1]])
    extended = xp.concatenate([xp.ones((1,), table.dtype), table])
    return ts, extended[ts + 1], extended[prev + 1], xp


def table_row(table: Any, i: int) -> Any:
    """Row ``i`` of a step table: every field indexed at step ``i`` (what ``step`` takes)."""
    return jax.tree.map(lambda a: a[i], table)


def check_row(row: Any, name: str = "row") -> None:
    """Refuses a whole step table where one row (scalar fields) is expected.

    Raises:
      ValueError: naming ``name`` when the first leaf of ``row`` is not a scalar.
    """
    leaves = jax.tree.leaves(row)
    if leaves and jnp.ndim(leaves[0]) != 0:
        raise ValueError(f"{name}: expected one row of the step table (scalar fields), got fields of shape {jnp.shape(leaves[0])}")


# -------------------------------------------------------------------------- denoiser


def denoiser_from_apply(
    apply_fn: ApplyFn,
    *,
    parameterization: str = "eps",
    learned_variance: bool = False,
    alphas_cumprod: ArrayLike,
) -> Denoiser:
    """Wraps a batched network ``apply_fn`` into the single-example denoiser contract.

    The wrapper adds the batch axis (``x[None]``, ``t[None]``), removes it from the
    output, casts the output to float32 at once and converts it to ``eps``. Under
    ``jax.vmap`` the network sees the whole batch: batching of convolutions and dense
    layers folds the mapped axis into the batch axis.

    Args:
      apply_fn: ``apply_fn(x [1, *shape], t [1]) -> out [1, *shape]`` (or ``[1, ..., 2C]``
        with ``learned_variance``); ``t`` is float32.
      parameterization: what the network predicts: ``"eps"`` (Ho et al. 2020), ``"x0"``
        (``eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)``) or ``"v"`` (Salimans & Ho
        2022: ``eps = sqrt(abar) v + sqrt(1 - abar) x_t``). ``abar`` at a non-integer
        ``t`` is interpolated linearly (``abar_at``).
      learned_variance: the last axis holds ``(model output, raw v in [-1, 1])``
        (Nichol & Dhariwal 2021, eq. 15); ``var_frac = (raw + 1) / 2``.
      alphas_cumprod: the ``abar`` table ``[T]``.

    Returns:
      ``denoiser(x_t, t) -> Prediction``.
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: expected one of {PARAMETERIZATIONS}, got {parameterization!r}")
    table = jnp.asarray(check_alphas_cumprod(alphas_cumprod), jnp.float32)

    def denoiser(x_t: jax.Array, t: jax.Array) -> Prediction:
        x_t = jnp.asarray(x_t, jnp.float32)
        t = jnp.asarray(t, jnp.float32)
        out = apply_fn(x_t[None], jnp.reshape(t, (1,)))[0].astype(jnp.float32)
        var_frac = None
        if learned_variance:
            channels = x_t.shape[-1]
            if out.shape[-1] != 2 * channels:
                raise ValueError(f"learned_variance: the network output's last axis must be 2*{channels}, got shape {out.shape}")
            out, raw = out[..., :channels], out[..., channels:]
            var_frac = (raw + 1.0) / 2.0
        elif out.shape != x_t.shape:
            raise ValueError(f"apply_fn: output shape {out.shape} does not match x_t {x_t.shape}")
        if parameterization == "eps":
            eps = out
        else:
            abar = abar_at(table, t)
            eps = eps_from_x0(x_t, out, abar) if parameterization == "x0" else eps_from_v(x_t, out, abar)
        return Prediction(eps=eps, var_frac=var_frac)

    return denoiser


def evaluate(denoiser: Denoiser, x_t: jax.Array, t: jax.Array) -> Prediction:
    """Calls the denoiser, checks its output and casts it to float32 (bfloat16 networks).

    Raises:
      TypeError: naming ``denoiser`` when it returns anything but a ``Prediction``.
      AssertionError: (chex) when ``eps`` does not have the shape of ``x_t``.
    """
    pred = denoiser(x_t, jnp.asarray(t, jnp.float32))
    if not isinstance(pred, Prediction):
        raise TypeError(
            f"denoiser: must return a genjax.samplers.Prediction (e.g. Prediction(eps=...)), got {type(pred).__name__}; "
            "wrap a network that predicts eps, x0 or v with denoiser_from_apply(apply_fn, parameterization=...)"
        )
    chex.assert_equal_shape([x_t, pred.eps])
    var_frac = None if pred.var_frac is None else jnp.asarray(pred.var_frac, jnp.float32)
    return Prediction(eps=jnp.asarray(pred.eps, jnp.float32), var_frac=var_frac)


# ----------------------------------------------------------------- noise and records


def split_key(key: jax.Array, shape: tuple[int, ...], steps: int, x_T: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """The randomness convention shared by every sampler, for reproducibility.

    ``k_init, k_steps = jax.random.split(key)``; ``x_T = jax.random.normal(k_init,
    shape)`` (DDPM scale, unless given); step ``i`` of a stochastic sampler draws
    ``z_i = jax.random.normal(jax.random.split(k_steps, steps)[i], shape)``.

    Returns:
      ``(x_T, step_keys [steps])``.
    """
    if x_T is not None and tuple(np.shape(x_T)) != tuple(shape):
        raise ValueError(f"x_T: expected shape {tuple(shape)}, got {np.shape(x_T)}")
    k_init, k_steps = jax.random.split(key)
    if x_T is None:
        x_T = jax.random.normal(k_init, shape, jnp.float32)
    else:
        x_T = jnp.asarray(x_T, jnp.float32)
    return x_T, jax.random.split(k_steps, steps)


def record_mask(record: tuple[int, ...], steps: int) -> np.ndarray:
    """``mask[i, j]`` is true when step ``i`` fills slot ``j`` of the x0 record."""
    mask = np.zeros((steps, len(record)), dtype=bool)
    for j, r in enumerate(record):
        mask[r, j] = True
    return mask


def update_record(buffer: jax.Array, mask_row: jax.Array, x0: jax.Array) -> jax.Array:
    """Writes ``x0`` into the slots of ``buffer [R, *shape]`` selected by ``mask_row [R]``."""
    row = jnp.reshape(mask_row, mask_row.shape + (1,) * x0.ndim)
    return jnp.where(row, jnp.broadcast_to(x0[None], buffer.shape), buffer)


def maybe_clip(x0: jax.Array, clip_x0: bool) -> jax.Array:
    return jnp.clip(x0, -1.0, 1.0) if clip_x0 else x0


# -------------------------------------------------------------------- the interface


def check_clip_x0(clip_x0: object) -> None:
    """Raises TypeError naming ``clip_x0`` unless it is a bool."""
    if not isinstance(clip_x0, (bool, np.bool_)):
        raise TypeError(f"clip_x0: expected a bool, got {clip_x0!r}")


class Sampler(abc.ABC):
    """A diffusion sampler: its options (dataclass fields), its step table and its step.

    Concrete samplers are frozen dataclasses (hashable, so usable as static arguments)
    that validate their options in ``__post_init__``; ``genjax.samplers.registry`` names
    them. ``run`` draws a sample as::

        table = sampler.step_table(alphas_cumprod, steps)       # once, on the host
        state = sampler.init(table, x_T)
        for i in range(steps):                                   # one lax.scan
            state, x0_i = sampler.step(table_row(table, i), denoiser, state, keys[i])
        x = sampler.result(state)

    which is also the recipe for a custom loop. ``state`` is the sampler's carried pytree
    (``x`` itself unless the sampler needs more, e.g. a multistep solver's history).
    """

    def evaluations_per_step(self, steps: int) -> np.ndarray:
        """Network evaluations of each of the ``steps`` steps, in loop order (int64 ``[steps]``).

        One per step by default. A search that runs only some rows of the table (a
        re-noised segment of ``genjax.samplers.search.path_search``) counts its evaluations
        as the sum over those rows.
        """
        check_steps(steps)
        return np.ones(steps, dtype=np.int64)

    def num_evaluations(self, steps: int) -> int:
        """Network evaluations per sample for ``steps`` steps: the sum of ``evaluations_per_step``."""
        return int(self.evaluations_per_step(steps).sum())

    def timesteps(self, steps: int, num_timesteps: int, alphas_cumprod: ArrayLike | None = None) -> np.ndarray:
        """The ``steps + 1`` times visited, first to last; ``-1`` stands for ``abar = 1``.

        By default the evenly spaced DDPM indices ``t_i = round(i (T-1) / (steps-1))`` for
        ``i = steps-1..0``, then ``-1`` (int64), as DDPM and DDIM visit them.
        """
        del alphas_cumprod
        return np.concatenate([spaced_timesteps(steps, num_timesteps)[::-1], [-1]]).astype(np.int64)

    @abc.abstractmethod
    def step_table(self, alphas_cumprod: ArrayLike, steps: int) -> Any:
        """The per-step coefficients: a pytree of float32 ``[steps]`` arrays in loop order."""

    def init(self, table: Any, x_T: jax.Array) -> Any:
        """The carried state at the start from ``x_T`` (DDPM scale); ``x_T`` by default."""
        del table
        return x_T

    @abc.abstractmethod
    def step(self, row: Any, denoiser: Denoiser, state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        """One step: ``(state, key) -> (next state, predicted x0)`` for one table row."""

    def result(self, state: Any) -> jax.Array:
        """The sample held by the final state; the state itself by default."""
        return state

    def x_t(self, table: Any, state: Any) -> jax.Array:
        """The DDPM-scale ``x_t`` that ``state`` holds at the time of ``table``'s first row.

        The inverse of ``init``: ``x_t(table, init(table, x)) == x``, where ``table`` is the
        step table or the rows of it that remain (``init`` of those rows restarts the
        sampler mid-way, e.g. from a re-noised state). ``result(state)`` by default, for
        samplers whose state holds ``x`` in the DDPM scale.
        """
        del table
        return self.result(state)


def table_rows(table: Any, start: ArrayLike, length: int) -> Any:
    """Rows ``start .. start + length - 1`` of a step table (``start`` may be traced)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, length), table)


def run_rows(sampler: Sampler, denoiser: Denoiser, rows: Any, state: Any, keys: jax.Array) -> tuple[Any, jax.Array]:
    """``sampler.step`` scanned over some rows of its step table, from a given state.

    The segment form of ``run``: it continues a sample from ``state`` (e.g. one built by
    ``sampler.init`` of the remaining rows) over ``rows`` (``table_rows``) with one key per
    row, in one ``jax.lax.scan``.

    Args:
      sampler: the ``Sampler``.
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      rows: the rows to run, a step table of ``L >= 1`` rows.
      state: the sampler's state at the time of the first row.
      keys: ``[L]`` PRNG keys, one per row.

    Returns:
      ``(state after the last row, predicted x0 of the last row)``.
    """

    def body(carry, xs):
        state, _ = carry
        row, key = xs
        return sampler.step(row, denoiser, state, key), None

    (state, x0), _ = jax.lax.scan(body, (state, jnp.zeros_like(sampler.result(state))), (rows, keys))
    return state, x0


def run(
    sampler: Sampler,
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    key: jax.Array,
    shape: Sequence[int],
    *,
    steps: int,
    record: Sequence[int] = (),
    x_T: jax.Array | None = None,
):
    """The scan skeleton every sampler runs in: ``sampler.step`` over its step table.

    Builds the table once, draws ``x_T`` and the per-step keys (``split_key``), then
    ``jax.lax.scan``s ``sampler.step`` over ``(table rows, step keys)``, keeping the
    predicted ``x_0`` of the steps in ``record`` in a buffer carried by the scan.

    Args:
      sampler: a ``Sampler`` (its options included).
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``, strictly decreasing in ``(0, 1)``.
      key: PRNG key of this sample.
      shape: shape of one sample.
      steps: sampler steps, in ``[1, T]``.
      record: step indices in ``[0, steps)`` after which to keep the predicted ``x_0``.
      x_T: optional starting noise of ``shape`` in the DDPM scale.

    Returns:
      The float32 sample of ``shape``, or ``(sample, x0_record [len(record), *shape])``
        when ``record`` is not empty.
    """
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(steps, table.shape[0])
    record = check_record(record, steps)
    shape = tuple(int(d) for d in shape)
    coefs = sampler.step_table(table, steps)
    x, keys = split_key(key, shape, steps, x_T)
    mask = jnp.asarray(record_mask(record, steps))

    def body(carry, xs):
        state, buffer = carry
        row, key_i, mask_i = xs
        state, x0 = sampler.step(row, denoiser, state, key_i)
        return (state, update_record(buffer, mask_i, x0)), None

    buffer = jnp.zeros((len(record),) + shape, jnp.float32)
    (state, buffer), _ = jax.lax.scan(body, (sampler.init(coefs, x), buffer), (coefs, keys, mask))
    x = sampler.result(state)
    chex.assert_shape(x, shape)
    return (x, buffer) if record else x
