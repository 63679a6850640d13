"""The deterministic Heun sampler of EDM (Karras et al. 2022, arXiv 2206.00364) for a DDPM.

The discrete VP model is rewritten in the variance-exploding form of EDM; the network is
queried at non-integer ``t``, where ``abar`` is the linear interpolation of the table
(``base.abar_at``), so the noise level the network is told is the one of its input.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

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
    t_of_abar,
)


def karras_sigmas(steps: int, sigma_min, sigma_max, rho: float = 7.0, xp=np):
    """Karras et al. (2022, arXiv 2206.00364) eq. 5: ``steps`` noise levels and a final 0.

    ``sigma_i = (sigma_max^(1/rho) + i / (steps-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i < steps`` (``[sigma_max]`` when ``steps == 1``), and ``sigma_steps = 0``.
    """
    frac = np.arange(steps) / max(steps - 1, 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + frac * (lo - hi)) ** rho
    return xp.concatenate([sigmas, xp.zeros((1,), sigmas.dtype)])


def heun_times(alphas_cumprod: ArrayLike, steps: int, sigma_min=None, sigma_max=None, rho: float = 7.0):
    """``(sigmas [steps+1], t [steps+1])`` of ``Heun``; ``t = -1`` stands for ``sigma = 0``.

    ``sigma_t = sqrt((1 - abar_t) / abar_t)`` is the variance-exploding noise level of
    ``t``; ``sigma_min``/``sigma_max`` default to ``sigma_0``/``sigma_{T-1}``. ``t(sigma)``
    inverts ``abar_at`` at ``abar = 1 / (1 + sigma^2)`` (piecewise linear in the discrete
    table), so the ``abar(t)`` the network is told is the noise level of its input exactly.
    Arrays are numpy float64 for a concrete table, ``jnp`` float32 for a traced one.

    Raises:
      ValueError: naming ``sigma_min``/``sigma_max`` when not inside the model's range
        ``[sigma_0, sigma_{T-1}]`` or not ordered (checked for a concrete table).
    """
    table, xp = schedule_table(alphas_cumprod)
    check_steps(steps, table.shape[0])
    sig_lo, sig_hi = (xp.sqrt((1.0 - table[i]) / table[i]) for i in (0, -1))
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is not None and xp is np and not sig_lo * (1 - 1e-6) <= value <= sig_hi * (1 + 1e-6):
            raise ValueError(f"{name}: must lie in the model's range [{sig_lo}, {sig_hi}], got {value}")
    lo = sig_lo if sigma_min is None else sigma_min
    hi = sig_hi if sigma_max is None else sigma_max
    if xp is np and table.shape[0] > 1 and not lo < hi:
        raise ValueError(f"sigma_min: must be < sigma_max, got {lo} >= {hi}")
    sigmas = karras_sigmas(steps, lo, hi, rho, xp)
    t = t_of_abar(table, 1.0 / (1.0 + sigmas[:-1] ** 2), xp)
    return sigmas, xp.concatenate([t, -xp.ones((1,), t.dtype)])


@struct.dataclass
class HeunStepTable:
    """Per-step float32 noise levels and times of ``Heun``, in loop order (``[steps]`` each).

    Attributes:
      sigma: ``sigma_i`` of Karras' schedule (eq. 5).
      sigma_next: ``sigma_{i+1}`` (0 on the last step).
      t: the model time of ``sigma_i``.
      t_next: the model time of ``sigma_{i+1}`` (``-1`` on the last step, never evaluated).
    """

    sigma: jax.Array
    sigma_next: jax.Array
    t: jax.Array
    t_next: jax.Array


def _check_positive(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a float, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be > 0, got {value}")


@dataclasses.dataclass(frozen=True)
class Heun(Sampler):
    """Deterministic Heun sampler of Karras et al. (2022, arXiv 2206.00364), Algorithm 1 (S_churn = 0).

    The discrete VP model is rewritten in the variance-exploding form ``x_edm = x /
    sqrt(abar)``, ``sigma = sqrt((1 - abar) / abar)``, whose denoiser is ``D(x_edm; sigma) =
    x_edm - sigma eps(x_edm / sqrt(1 + sigma^2), t(sigma))`` (``x_edm / sqrt(1 + sigma^2) =
    sqrt(abar) x_edm`` is the DDPM-scale input). The noise levels are Karras' schedule
    (eq. 5) from ``sigma_max`` down to ``sigma_min``, then 0. Each step is an Euler step of
    ``dx/dsigma = (x - D) / sigma`` corrected by the trapezoidal rule; the final step to
    ``sigma = 0`` is Euler only, and it lands exactly on ``D(x; sigma_min)``. ``x_T`` is
    drawn in the DDPM scale and converted with ``x_edm = x_T sqrt(1 + sigma_max^2)``, so all
    samplers start from the same draw. The result is ``x_edm`` at ``sigma = 0``, which is
    the DDPM-scale ``x_0``. Network evaluations per sample: ``2 * steps - 1``.

    Attributes:
      sigma_min: the smallest nonzero noise level (default: ``sigma`` at ``t = 0``);
        must lie inside the model's range.
      sigma_max: the largest noise level (default: ``sigma`` at ``t = T-1``).
      rho: Karras' schedule exponent (eq. 5), ``> 0``.
      clip_x0: clip ``D`` to ``[-1, 1]``.
    """

    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float = 7.0
    clip_x0: bool = False

    def __post_init__(self) -> None:
        _check_positive("sigma_min", self.sigma_min)
        _check_positive("sigma_max", self.sigma_max)
        _check_positive("rho", self.rho)
        if self.sigma_min is not None and self.sigma_max is not None and not self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min: must be < sigma_max, got {self.sigma_min} >= {self.sigma_max}")
        check_clip_x0(self.clip_x0)

    def evaluations_per_step(self, steps: int) -> np.ndarray:
        """2 per step and 1 for the last (``2 * steps - 1`` in all): no correction on the
        final step to ``sigma = 0`` (Algorithm 1)."""
        check_steps(steps)
        counts = np.full(steps, 2, dtype=np.int64)
        counts[-1] = 1
        return counts

    def timesteps(self, steps: int, num_timesteps: int, alphas_cumprod: ArrayLike | None = None) -> np.ndarray:
        """The ``t`` of Karras' noise levels, ``abar_at(t) = 1 / (1 + sigma^2)``, then ``-1``.

        Raises:
          ValueError: naming ``alphas_cumprod`` when it is missing or not of length ``T``.
        """
        if alphas_cumprod is None:
            raise ValueError("alphas_cumprod: the heun schedule depends on the abar table; pass alphas_cumprod")
        table = check_alphas_cumprod(alphas_cumprod)
        if table.shape[0] != num_timesteps:
            raise ValueError(f"alphas_cumprod: expected length T={num_timesteps}, got {table.shape[0]}")
        _, t = heun_times(table, steps, self.sigma_min, self.sigma_max, self.rho)
        return np.asarray(t, dtype=np.float64)

    def step_table(self, alphas_cumprod: ArrayLike, steps: int) -> HeunStepTable:
        """The noise levels and their model times (see ``HeunStepTable``, ``heun_times``)."""
        sigmas, t = heun_times(check_alphas_cumprod(alphas_cumprod), steps, self.sigma_min, self.sigma_max, self.rho)
        sigmas, t = f32(sigmas), f32(t)
        return HeunStepTable(sigma=sigmas[:-1], sigma_next=sigmas[1:], t=t[:-1], t_next=t[1:])

    def init(self, table: HeunStepTable, x_T: jax.Array) -> jax.Array:
        """``x_T sqrt(1 + sigma_max^2)``: the DDPM-scale draw in the EDM scale."""
        return x_T * jnp.sqrt(1.0 + table.sigma[0] ** 2)

    def x_t(self, table: HeunStepTable, state: jax.Array) -> jax.Array:
        """``x_edm / sqrt(1 + sigma^2)`` at the first row's ``sigma``: the inverse of ``init``."""
        return state / jnp.sqrt(1.0 + table.sigma[0] ** 2)

    def denoise(self, denoiser: Denoiser, x: jax.Array, sigma: jax.Array, t: jax.Array) -> jax.Array:
        """EDM's ``D(x; sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t)``, clipped with ``clip_x0``."""
        eps = evaluate(denoiser, x / jnp.sqrt(1.0 + sigma**2), t).eps
        return maybe_clip(x - sigma * eps, self.clip_x0)

    def step(self, row: HeunStepTable, denoiser: Denoiser, state: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step of Algorithm 1 from ``sigma`` to ``sigma_next`` (EDM scale).

        An Euler step of ``dx/dsigma = (x - D) / sigma``, corrected by the trapezoidal rule
        unless ``sigma_next = 0``, where the Euler step lands on ``D`` and the second
        evaluation is skipped (``jax.lax.cond``: 1 network evaluation instead of 2).

        Args:
          row: one row of ``step_table`` (``base.table_row``).
          denoiser: ``denoiser(x_t, t) -> Prediction``.
          state: ``x`` in the EDM scale at ``row.sigma``.
          key: unused (the sampler is deterministic).

        Returns:
          ``(x at sigma_next, D(x; sigma))``.
        """
        del key
        check_row(row)
        x = state
        d0 = self.denoise(denoiser, x, row.sigma, row.t)

        def corrected() -> jax.Array:
            slope = (x - d0) / row.sigma
            x_euler = x + (row.sigma_next - row.sigma) * slope
            d1 = self.denoise(denoiser, x_euler, row.sigma_next, row.t_next)
            return x + (row.sigma_next - row.sigma) * 0.5 * (slope + (x_euler - d1) / row.sigma_next)

        # Final step to sigma = 0: x + (0 - s)(x - D)/s = D.
        return jax.lax.cond(row.sigma_next > 0, corrected, lambda: d0), d0


__all__ = ["Heun", "HeunStepTable", "heun_times", "karras_sigmas"]
