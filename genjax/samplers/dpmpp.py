"""DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095) for the probability-flow ODE of a DDPM.

Deterministic given ``x_T``. It queries the network at non-integer ``t``, where ``abar``
is the linear interpolation of the table (``base.abar_at``) - the convention
``base.denoiser_from_apply`` uses to convert ``x0``/``v`` outputs, so the noise level the
network is told matches the one of its input.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from genjax.distributions import x0_from_eps
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
)


def dpmpp_times(steps: int, num_timesteps: int) -> np.ndarray:
    """The ``steps + 1`` times of ``DPMpp2M``: ``t_i = (T-1)(1 - i/steps)``, ``i = 0..steps``.

    Evenly spaced in ``t`` from ``T-1`` down to ``0`` (non-integer in general). The network
    is evaluated at the first ``steps`` of them; the last step ends at ``t = 0``.
    """
    check_steps(steps, num_timesteps)
    return np.linspace(num_timesteps - 1, 0.0, steps + 1)


DPMppState = tuple[jax.Array, jax.Array, jax.Array]
"""``(x, previous data prediction, has_previous)``: the carried state of ``DPMpp2M``."""


@struct.dataclass
class DPMppStepTable:
    """Per-step float32 coefficients of DPM-Solver++(2M), in loop order (``[steps]`` each).

    Attributes:
      t: the time ``t_{i-1}`` the network is evaluated at.
      abar_t: ``abar`` at ``t``.
      ratio: ``sigma_{t_i} / sigma_{t_{i-1}}``.
      coef: ``-alpha_{t_i} (exp(-h_i) - 1)``.
      w_cur: weight of the current data prediction in ``D_i``.
      w_prev: weight of the previous data prediction in ``D_i`` (0 on first-order steps).
    """

    t: jax.Array
    abar_t: jax.Array
    ratio: jax.Array
    coef: jax.Array
    w_cur: jax.Array
    w_prev: jax.Array


@dataclasses.dataclass(frozen=True)
class DPMpp2M(Sampler):
    """DPM-Solver++(2M) of Lu et al. (2022, arXiv 2211.01095), Algorithm 2, data-prediction form.

    With ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``, ``lambda_t = log(alpha_t /
    sigma_t)``, ``h_i = lambda_{t_i} - lambda_{t_{i-1}}`` and ``r_i = h_{i-1} / h_i``::

        x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (exp(-h_i) - 1) D_i
        D_i = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2}

    where ``x0_j`` is the data prediction at ``t_j``. The first step uses ``D = x0_0`` (first
    order, as in the algorithm) and so does the final step to ``t = 0`` ("lower order
    final", as the authors' implementation does for few steps: the second-order correction
    is least reliable there). The times are ``dpmpp_times``. The result is ``x`` at ``t = 0``
    (noise level ``sqrt(1 - abar_0)``, as in the authors' discrete-time setting). The
    carried state is ``(x, previous data prediction, has_previous)``: ``init`` clears the
    flag, and a step without a previous prediction is first order whatever its row says,
    so ``init`` of the remaining rows restarts the solver mid-way (the search over paths
    does this from re-noised states). Network evaluations per sample: ``steps``.

    Attributes:
      clip_x0: clip the data prediction to ``[-1, 1]`` (static thresholding).
    """

    clip_x0: bool = False

    def __post_init__(self) -> None:
        check_clip_x0(self.clip_x0)

    def timesteps(self, steps: int, num_timesteps: int, alphas_cumprod: ArrayLike | None = None) -> np.ndarray:
        """``(T-1)(1 - i / steps)``, ``i = 0..steps`` (float64)."""
        return dpmpp_times(steps, num_timesteps)

    def step_table(self, alphas_cumprod: ArrayLike, steps: int) -> DPMppStepTable:
        """The per-step coefficients (see ``DPMppStepTable``), float64 on the host for a
        concrete table, float32 for a traced one."""
        table = check_alphas_cumprod(alphas_cumprod)
        times = dpmpp_times(steps, table.shape[0])
        tab, xp = schedule_table(table)
        abar = xp.interp(times, np.arange(tab.shape[0], dtype=np.float64), tab)  # = abar_at(times)
        alpha, sigma = xp.sqrt(abar), xp.sqrt(1.0 - abar)
        lam = xp.log(alpha) - xp.log(sigma)
        h = lam[1:] - lam[:-1]
        h_prev = xp.concatenate([h[:1], h[:-1]])
        half_inv_r = h / (2.0 * h_prev)  # 1 / (2 r_i)
        second_order = np.zeros(steps, dtype=bool)
        second_order[1:-1] = True  # first step and lower-order final step are first order
        return DPMppStepTable(
            t=f32(times[:-1]),
            abar_t=f32(abar[:-1]),
            ratio=f32(sigma[1:] / sigma[:-1]),
            coef=f32(-alpha[1:] * xp.expm1(-h)),
            w_cur=f32(xp.where(second_order, 1.0 + half_inv_r, 1.0)),
            w_prev=f32(xp.where(second_order, -half_inv_r, 0.0)),
        )

    def init(self, table: DPMppStepTable, x_T: jax.Array) -> DPMppState:
        """``(x_T, 0, False)``: no previous data prediction yet, so the first step is first
        order (from the first row or, restarting, from any row)."""
        del table
        return x_T, jnp.zeros_like(x_T), jnp.asarray(False)

    def step(self, row: DPMppStepTable, denoiser: Denoiser, state: DPMppState, key: jax.Array) -> tuple[DPMppState, jax.Array]:
        """One multistep update from ``t_{i-1}`` to ``t_i`` (Lu et al. 2022, Algorithm 2).

        Args:
          row: one row of ``step_table`` (``base.table_row``).
          denoiser: ``denoiser(x_t, t) -> Prediction``.
          state: ``(x_{t_{i-1}}, x0_{i-2}, has_previous)``; without a previous prediction
            the step is first order (``D = x0_{i-1}``).
          key: unused (the solver is deterministic).

        Returns:
          ``((x_{t_i}, x0_{i-1}, True), x0_{i-1})``.
        """
        del key
        check_row(row)
        x, x0_prev, has_prev = state
        eps = evaluate(denoiser, x, row.t).eps
        x0 = maybe_clip(x0_from_eps(x, eps, row.abar_t), self.clip_x0)
        w_cur = jnp.where(has_prev, row.w_cur, jnp.ones_like(row.w_cur))
        w_prev = jnp.where(has_prev, row.w_prev, jnp.zeros_like(row.w_prev))
        d = w_cur * x0 + w_prev * x0_prev
        return (row.ratio * x + row.coef * d, x0, jnp.asarray(True)), x0

    def result(self, state: DPMppState) -> jax.Array:
        return state[0]


__all__ = ["DPMpp2M", "DPMppStepTable", "dpmpp_times"]
