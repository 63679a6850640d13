"""DDIM sampling and deterministic DDIM inversion (Song et al. 2021, arXiv 2010.02502).

Same timesteps as ``ddpm``: the evenly spaced subset of ``base.spaced_timesteps`` from
``T-1`` down to ``0``, then a step to ``t = -1`` (``abar = 1``). ``DDIM.step`` is the step
the scan of ``base.run`` applies; ``ddim_update`` is its update rule given the predicted
noise and a normal draw, for comparison with other implementations.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from genjax.distributions import eps_from_x0, x0_from_eps
from genjax.samplers.base import (
    Denoiser,
    Sampler,
    check_alphas_cumprod,
    check_clip_x0,
    check_row,
    check_steps,
    evaluate,
    f32,
    maybe_clip,
    schedule_table,
    spaced_abar,
    spaced_timesteps,
)


@struct.dataclass
class DDIMStepTable:
    """Per-step float32 coefficients of DDIM sampling, in loop order.

    Each field is ``[steps]`` (decreasing ``t``) as returned by ``DDIM.step_table``; one
    row is what ``DDIM.step`` and ``ddim_update`` take.

    Attributes:
      t: the timestep the network is evaluated at (float32).
      abar_t: ``abar`` at ``t``.
      sqrt_abar_prev: ``sqrt(abar_{t'})`` of the next timestep ``t'`` (1 after ``t = 0``).
      coef_eps: ``sqrt(1 - abar_{t'} - sigma^2)`` (Song et al. 2021, eq. 12).
      sigma: ``eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})``
        (eq. 16).
      stochastic: whether ``eta > 0`` (static, not a pytree leaf): ``ddim_update`` then
        requires noise, since ``coef_eps`` already leaves room for ``sigma``.
    """

    t: jax.Array
    abar_t: jax.Array
    sqrt_abar_prev: jax.Array
    coef_eps: jax.Array
    sigma: jax.Array
    stochastic: bool = struct.field(pytree_node=False, default=False)


def ddim_update(
    x_t: jax.Array,
    eps: jax.Array,
    noise: jax.Array | None,
    coefs: DDIMStepTable,
    *,
    clip_x0: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """The DDIM update ``x_t -> x_{t'}`` (Song et al. 2021, arXiv 2010.02502, eq. 12).

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; with ``clip_x0`` it is clipped
    to ``[-1, 1]`` and ``eps`` recomputed from it; then ``x_{t'} = sqrt(abar_{t'}) x0_hat +
    coef_eps eps + sigma noise``.

    Args:
      x_t: the current sample (float32).
      eps: the predicted noise at ``(x_t, coefs.t)``.
      noise: a standard normal draw of ``x_t``'s shape; ``None`` exactly when ``eta = 0``.
      coefs: one row of ``DDIM.step_table`` (scalar fields).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``.

    Returns:
      ``(x_{t'}, x0_hat)``.

    Raises:
      ValueError: ``coefs`` is not one row, or ``noise`` does not fit its ``eta``.
    """
    check_row(coefs, "coefs")
    if (noise is None) == coefs.stochastic:
        raise ValueError("noise: " + ("a table with eta > 0 needs a standard normal draw, got None" if noise is None else "a table with eta = 0 takes None"))
    chex.assert_equal_shape([x_t, eps] if noise is None else [x_t, eps, noise])
    abar = coefs.abar_t
    x0 = x0_from_eps(x_t, eps, abar)
    if clip_x0:
        x0 = maybe_clip(x0, True)
        eps = eps_from_x0(x_t, x0, abar)
    x = coefs.sqrt_abar_prev * x0 + coefs.coef_eps * eps
    if noise is not None:
        x = x + coefs.sigma * noise
    return x, x0


@dataclasses.dataclass(frozen=True)
class DDIM(Sampler):
    """DDIM sampling of Song et al. (2021, arXiv 2010.02502), eq. 12 with ``sigma(eta)`` of eq. 16.

    ``x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})``, where
    ``t'`` is the next timestep of the subset ``base.spaced_timesteps`` (``-1``, i.e.
    ``abar = 1``, after ``t = 0``). ``eta = 0`` is the deterministic DDIM; ``eta = 1`` is
    the ancestral DDPM with ``variance="small"``. Network evaluations per sample: ``steps``.

    Attributes:
      eta: stochasticity ``>= 0``.
      clip_x0: clip ``x0_hat`` to ``[-1, 1]`` and recompute ``eps`` from it (as the
        reference implementations do).
    """

    eta: float = 0.0
    clip_x0: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float, np.floating, np.integer)):
            raise TypeError(f"eta: expected a float, got {self.eta!r}")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"eta: must be >= 0, got {self.eta}")
        check_clip_x0(self.clip_x0)

    def step_table(self, alphas_cumprod: ArrayLike, steps: int) -> DDIMStepTable:
        """The per-step coefficients (see ``DDIMStepTable``); precision as ``DDPM.step_table``.

        Raises:
          ValueError: naming ``alphas_cumprod`` or ``steps``.
        """
        table = check_alphas_cumprod(alphas_cumprod)
        check_steps(steps, table.shape[0])
        t, abar_t, abar_prev, xp = spaced_abar(table, steps)
        sigma = self.eta * xp.sqrt((1.0 - abar_prev) / (1.0 - abar_t)) * xp.sqrt(1.0 - abar_t / abar_prev)
        coef_eps = xp.sqrt(xp.maximum(1.0 - abar_prev - sigma**2, 0.0))
        return DDIMStepTable(f32(t), f32(abar_t), f32(xp.sqrt(abar_prev)), f32(coef_eps), f32(sigma), bool(self.eta > 0))

    def step(self, row: DDIMStepTable, denoiser: Denoiser, state: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One DDIM step: evaluates the denoiser at ``(x_t, row.t)`` and applies
        ``ddim_update``, with ``noise = jax.random.normal(key, x_t.shape)`` when ``eta > 0``
        (the key is unused when ``eta = 0``).

        Args:
          row: one row of ``step_table`` (``base.table_row``).
          denoiser: ``denoiser(x_t, t) -> Prediction``.
          state: ``x_t`` (float32).
          key: this step's PRNG key.

        Returns:
          ``(x_{t'}, x0_hat)``.
        """
        check_row(row)
        eps = evaluate(denoiser, state, row.t).eps
        noise = jax.random.normal(key, state.shape, jnp.float32) if self.eta > 0 else None
        return ddim_update(state, eps, noise, row, clip_x0=self.clip_x0)


def ddim_encode(denoiser: Denoiser, alphas_cumprod: ArrayLike, x0: jax.Array, *, steps: int) -> jax.Array:
    """Deterministic DDIM inversion: runs the ``eta = 0`` ODE of Song et al. (2021, Sec. 4.3,
    eq. 13) forward from data ``x0`` to ``x_T``, on the same timesteps ``DDIM`` uses.

    Step ``i`` moves from ``abar`` of ``t_{i-1}`` (1 for ``i = 0``) to ``abar_{t_i}`` with the
    explicit Euler step ``x <- sqrt(abar_{t_i}) x0_hat + sqrt(1 - abar_{t_i}) eps``, where
    ``eps`` is evaluated at the current point and time ``t_{max(i-1, 0)}`` (the first step
    treats the data as ``x_{t_0}``). No clipping. Decode with ``sample(..., sampler=DDIM(eta=0,
    clip_x0=False), steps=steps, x_T=...)``; the round trip is exact up to the
    discretisation error, which shrinks with ``steps``.

    Network evaluations: ``steps``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction``.
      alphas_cumprod: ``abar`` table ``[T]``.
      x0: one example (no batch axis); vmap for a batch.
      steps: number of steps, in ``[1, T]``.

    Returns:
      ``x_T`` of the shape of ``x0`` (float32).
    """
    table, xp = schedule_table(check_alphas_cumprod(alphas_cumprod))
    check_steps(steps, table.shape[0])
    ts = spaced_timesteps(steps, table.shape[0])  # 0, ..., T-1
    eval_t = ts[np.maximum(np.arange(steps) - 1, 0)]
    abar_next = table[ts]
    abar_cur = xp.concatenate([xp.ones((1,), table.dtype), abar_next[:-1]])

    def step(x, xs):
        t_i, a_cur, a_next = xs
        eps = evaluate(denoiser, x, t_i).eps
        x0_hat = x0_from_eps(x, eps, a_cur)
        return jnp.sqrt(a_next) * x0_hat + jnp.sqrt(1.0 - a_next) * eps, None

    x, _ = jax.lax.scan(step, jnp.asarray(x0, jnp.float32), (f32(eval_t), f32(abar_cur), f32(abar_next)))
    chex.assert_shape(x, np.shape(x0))
    return x


__all__ = ["DDIM", "DDIMStepTable", "ddim_encode", "ddim_update"]
