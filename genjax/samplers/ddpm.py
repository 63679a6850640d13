"""Ancestral DDPM sampling (Ho et al. 2020, arXiv 2006.11239), respaced per Nichol & Dhariwal.

The sampler walks the evenly spaced subset of ``steps`` discrete timesteps of
``base.spaced_timesteps`` (``t_i = round(i (T-1) / (steps-1))``, all of ``0..T-1`` when
``steps == T``) from ``T-1`` down to ``0`` and finishes with a step to ``t = -1``
(``abar = 1``), so it returns data, not a slightly noisy ``x_0``. The network is evaluated
once per step.

``DDPM.step`` is the step the scan of ``base.run`` applies; ``ddpm_update`` is its update
rule given the predicted noise and a normal draw, for comparison with other
implementations that draw their own noise.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from genjax.distributions import x0_from_eps
from genjax.samplers.base import (
    VARIANCES,
    Denoiser,
    Sampler,
    check_alphas_cumprod,
    check_row,
    check_steps,
    evaluate,
    f32,
    maybe_clip,
    spaced_abar,
    spaced_timesteps,
)


@struct.dataclass
class DDPMStepTable:
    """Per-step float32 coefficients of ancestral DDPM sampling, in loop order.

    Each field is ``[steps]`` (decreasing ``t``) as returned by ``DDPM.step_table``; one
    row (``base.table_row``) is what ``DDPM.step`` and ``ddpm_update`` take for one step.

    Attributes:
      t: the timestep the network is evaluated at (float32).
      abar_t: ``abar`` at ``t``.
      coef_x0: ``sqrt(abar_prev) beta / (1 - abar_t)``, with the respaced ``beta = 1 -
        abar_t / abar_prev`` (Ho et al. 2020, eq. 7).
      coef_xt: ``sqrt(alpha) (1 - abar_prev) / (1 - abar_t)``, ``alpha = 1 - beta`` (eq. 7).
      std: the noise scale: ``sqrt(beta_tilde)`` (``"small"``), ``sqrt(beta)`` and 0 on the
        last step (``"large"``), or 1 and 0 on the last step (``"learned"``, multiplied by
        the learned standard deviation).
      log_lo: ``log beta_tilde`` (``"learned"`` only, else 0).
      log_hi: ``log beta`` (``"learned"`` only, else 0).
      variance: the variance choice the table was built for (static, not a pytree leaf),
        which ``ddpm_update`` checks its ``var_frac`` against.
    """

    t: jax.Array
    abar_t: jax.Array
    coef_x0: jax.Array
    coef_xt: jax.Array
    std: jax.Array
    log_lo: jax.Array
    log_hi: jax.Array
    variance: str = struct.field(pytree_node=False, default="small")


def ddpm_update(
    x_t: jax.Array,
    eps: jax.Array,
    noise: jax.Array,
    coefs: DDPMStepTable,
    *,
    clip_x0: bool = True,
    var_frac: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The ancestral update ``x_t -> x_{t'}`` (Ho et al. 2020, arXiv 2006.11239, Algorithm 2).

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (clipped to ``[-1, 1]`` with
    ``clip_x0``), ``mean = coef_x0 x0_hat + coef_xt x_t`` (the posterior mean of eq. 7),
    ``x_{t'} = mean + std noise``. With ``var_frac = v`` (learned variances, Nichol &
    Dhariwal 2021, eq. 15) the noise scale is ``std * exp((v log_hi + (1 - v) log_lo) /
    2)``.

    Args:
      x_t: the current sample (float32).
      eps: the predicted noise at ``(x_t, coefs.t)``.
      noise: a standard normal draw of ``x_t``'s shape.
      coefs: one row of ``DDPM.step_table`` (scalar fields).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``.
      var_frac: the learned variance interpolation; required for a ``"learned"`` table
        and refused for the others.

    Returns:
      ``(x_{t'}, x0_hat)``.

    Raises:
      ValueError: ``coefs`` is not one row, or ``var_frac`` does not fit its variance.
    """
    check_row(coefs, "coefs")
    if (var_frac is None) != (coefs.variance != "learned"):
        raise ValueError(
            f"var_frac: a {coefs.variance!r} table "
            + ("needs the learned variance interpolation, got None" if var_frac is None else "takes no var_frac (only 'learned' does)")
        )
    chex.assert_equal_shape([x_t, eps, noise])
    x0 = maybe_clip(x0_from_eps(x_t, eps, coefs.abar_t), clip_x0)
    mean = coefs.coef_x0 * x0 + coefs.coef_xt * x_t
    std = coefs.std
    if var_frac is not None:
        std = std * jnp.exp(0.5 * (var_frac * coefs.log_hi + (1.0 - var_frac) * coefs.log_lo))
    return mean + std * noise, x0


@dataclasses.dataclass(frozen=True)
class DDPM(Sampler):
    """Ancestral sampling of Ho et al. (2020, arXiv 2006.11239), Algorithm 2.

    Each step draws ``x_{t-1} ~ N(mu(x_t, x0_hat), sigma_t^2 I)`` with the posterior mean of
    eq. 7, ``mu = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 -
    abar_{t-1}) / (1 - abar_t) x_t`` at ``x0_hat = (x_t - sqrt(1 - abar_t) eps) /
    sqrt(abar_t)``, which is eq. 11 (``1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t)
    eps)``) when ``x0_hat`` is not clipped. No noise at the last step.

    With ``steps < T`` this is the respaced process of Nichol & Dhariwal (2021, arXiv
    2102.09672, Sec. 4): on the subset ``t_i`` of ``base.spaced_timesteps`` the betas are
    recomputed as ``beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}`` and the network is still
    evaluated at the original ``t_i``. Network evaluations per sample: ``steps``.

    Attributes:
      variance: ``"small"``: ``sigma^2 = beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t)
        beta_t``; ``"large"``: ``sigma^2 = beta_t`` (the two fixed choices of Ho et al.,
        Sec. 3.2); ``"learned"``: ``log sigma^2 = v log beta_t + (1 - v) log beta_tilde_t``
        with ``v = Prediction.var_frac`` (Nichol & Dhariwal, eq. 15; ``beta_tilde`` of the
        last step, which is 0, replaced by the one before as in their reference code).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]`` (the reference implementation's
        ``clip_denoised=True``).
    """

    variance: str = "small"
    clip_x0: bool = True

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise ValueError(f"variance: expected one of {VARIANCES}, got {self.variance!r}")
        if not isinstance(self.clip_x0, (bool, np.bool_)):
            raise TypeError(f"clip_x0: expected a bool, got {self.clip_x0!r}")

    def timesteps(self, steps: int, num_timesteps: int, alphas_cumprod: ArrayLike | None = None) -> np.ndarray:
        """``t_i = round(i (T-1) / (steps-1))`` for ``i = steps-1..0``, then ``-1`` (int64)."""
        return np.concatenate([spaced_timesteps(steps, num_timesteps)[::-1], [-1]]).astype(np.int64)

    def step_table(self, alphas_cumprod: ArrayLike, steps: int) -> DDPMStepTable:
        """The per-step coefficients (see ``DDPMStepTable``).

        Computed in float64 on the host for a concrete ``alphas_cumprod`` (float32 for a
        traced one) and returned as float32 arrays, on the timesteps ``T-1 = t_0 > ... >
        t_{steps-1} = 0`` of ``base.spaced_timesteps`` with ``abar_prev = 1`` on the last
        step.

        Raises:
          ValueError: naming ``alphas_cumprod`` or ``steps``.
        """
        table = check_alphas_cumprod(alphas_cumprod)
        check_steps(steps, table.shape[0])
        t, abar_t, abar_prev, xp = spaced_abar(table, steps)
        alpha = abar_t / abar_prev
        beta = 1.0 - alpha
        beta_tilde = (1.0 - abar_prev) / (1.0 - abar_t) * beta
        coef_x0 = xp.sqrt(abar_prev) * beta / (1.0 - abar_t)
        coef_xt = xp.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar_t)
        last = np.arange(steps) == steps - 1
        log_lo = log_hi = xp.zeros_like(beta)
        if self.variance == "small":
            std = xp.sqrt(beta_tilde)
        elif self.variance == "large":
            std = xp.where(last, 0.0, xp.sqrt(beta))
        else:
            std = xp.where(last, 0.0, 1.0)  # multiplies the learned standard deviation
            # beta_tilde of the last step is 0: use the one before (beta for a single step).
            clipped = beta if steps == 1 else xp.concatenate([beta_tilde[:-1], beta_tilde[-2:-1]])
            log_lo, log_hi = xp.log(clipped), xp.log(beta)
        return DDPMStepTable(f32(t), f32(abar_t), f32(coef_x0), f32(coef_xt), f32(std), f32(log_lo), f32(log_hi), self.variance)

    def step(self, row: DDPMStepTable, denoiser: Denoiser, state: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One ancestral step: evaluates the denoiser at ``(x_t, row.t)``, draws
        ``noise = jax.random.normal(key, x_t.shape)`` and applies ``ddpm_update``.

        Args:
          row: one row of ``step_table`` (``base.table_row``).
          denoiser: ``denoiser(x_t, t) -> Prediction``.
          state: ``x_t`` (float32).
          key: this step's PRNG key.

        Returns:
          ``(x_{t'}, x0_hat)``.

        Raises:
          ValueError: naming ``variance`` when it is ``"learned"`` and the denoiser's
            ``Prediction.var_frac`` is ``None``.
        """
        check_row(row)
        pred = evaluate(denoiser, state, row.t)
        var_frac = None
        if self.variance == "learned":
            if pred.var_frac is None:
                raise ValueError("variance: 'learned' needs a denoiser whose Prediction.var_frac is not None")
            var_frac = pred.var_frac
        noise = jax.random.normal(key, state.shape, jnp.float32)
        return ddpm_update(state, pred.eps, noise, row, clip_x0=self.clip_x0, var_frac=var_frac)


__all__ = ["DDPM", "DDPMStepTable", "ddpm_update"]
