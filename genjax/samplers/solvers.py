"""ODE solvers for the probability-flow ODE of a discrete DDPM: DPM-Solver++(2M) and EDM Heun.

Both are deterministic given ``x_T`` and run their steps inside one ``jax.lax.scan`` over
precomputed per-step arrays, so the compile time does not depend on ``steps``. They query
the network at non-integer ``t``, where ``abar`` is the linear interpolation of the table
(``base.abar_at``) - the same convention ``base.denoiser_from_apply`` uses to convert
``x0``/``v`` outputs, so the noise level the network is told matches the one of its input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.samplers.base import (
    Denoiser,
    check_alphas_cumprod,
    check_steps,
    evaluate,
    f32,
    maybe_clip,
    record_mask,
    schedule_table,
    split_key,
    t_of_abar,
    update_record,
)
from genjax.distributions import x0_from_eps

# ---------------------------------------------------------------------- DPM-Solver++


def dpmpp_times(steps: int, num_timesteps: int) -> np.ndarray:
    """The ``steps + 1`` times of ``dpmpp_2m``: ``t_i = (T-1)(1 - i/steps)``, ``i = 0..steps``.

    Evenly spaced in ``t`` from ``T-1`` down to ``0`` (non-integer in general). The network
    is evaluated at the first ``steps`` of them; the last step ends at ``t = 0``.
    """
    check_steps(steps, num_timesteps)
    return np.linspace(num_timesteps - 1, 0.0, steps + 1)


def dpmpp_2m_sample(
    denoiser: Denoiser,
    alphas_cumprod,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    steps: int,
    clip_x0: bool = False,
    record: tuple[int, ...] = (),
    x_T: jax.Array | None = None,
):
    """DPM-Solver++(2M) of Lu et al. (2022, arXiv 2211.01095), Algorithm 2, data-prediction form.

    With ``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)``, ``lambda_t = log(alpha_t /
    sigma_t)``, ``h_i = lambda_{t_i} - lambda_{t_{i-1}}`` and ``r_i = h_{i-1} / h_i``::

        x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (exp(-h_i) - 1) D_i
        D_i = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2}

    where ``x0_j`` is the data prediction at ``t_j``. The first step uses ``D = x0_0`` (first
    order, as in the algorithm) and so does the final step to ``t = 0`` ("lower order
    final", as the authors' implementation does for few steps: the second-order correction
    is least reliable there). The times are ``dpmpp_times``. The result is ``x`` at ``t = 0``
    (noise level ``sqrt(1 - abar_0)``, as in the authors' discrete-time setting).

    Network evaluations per sample: ``steps``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction``.
      alphas_cumprod: ``abar`` table ``[T]``.
      key: per-sample PRNG key (only ``x_T`` is drawn from it).
      shape: shape of one sample.
      steps: number of steps, in ``[1, T]``.
      clip_x0: clip the data prediction to ``[-1, 1]`` (static thresholding).
      record: step indices in ``[0, steps)`` after which to keep the data prediction.
      x_T: optional starting point of ``shape``.

    Returns:
      The sample (float32), or ``(sample, x0_record [len(record), *shape])``.
    """
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(steps, table.shape[0])
    shape = tuple(shape)
    x, _ = split_key(key, shape, steps, x_T)
    times = dpmpp_times(steps, table.shape[0])
    tab, xp = schedule_table(table)
    abar = xp.interp(times, np.arange(tab.shape[0], dtype=np.float64), tab)  # = abar_at(times)
    alpha, sigma = xp.sqrt(abar), xp.sqrt(1.0 - abar)
    lam = xp.log(alpha) - xp.log(sigma)
    h = lam[1:] - lam[:-1]  # [steps]
    ratio = sigma[1:] / sigma[:-1]
    coef = -alpha[1:] * xp.expm1(-h)
    h_prev = xp.concatenate([h[:1], h[:-1]])
    half_inv_r = h / (2.0 * h_prev)  # 1 / (2 r_i)
    second_order = np.zeros(steps, dtype=bool)
    second_order[1:-1] = True  # first step and lower-order final step are first order
    w_cur = xp.where(second_order, 1.0 + half_inv_r, 1.0)
    w_prev = xp.where(second_order, -half_inv_r, 0.0)
    mask = jnp.asarray(record_mask(record, steps))

    def step(carry, xs):
        x, x0_prev, buffer = carry
        t_i, abar_i, ratio_i, coef_i, w_c, w_p, mask_i = xs
        eps = evaluate(denoiser, x, t_i).eps
        x0 = maybe_clip(x0_from_eps(x, eps, abar_i), clip_x0)
        d = w_c * x0 + w_p * x0_prev
        x = ratio_i * x + coef_i * d
        return (x, x0, update_record(buffer, mask_i, x0)), None

    buffer = jnp.zeros((len(record),) + shape, jnp.float32)
    xs = (f32(times[:-1]), f32(abar[:-1]), f32(ratio), f32(coef), f32(w_cur), f32(w_prev), mask)
    (x, _, buffer), _ = jax.lax.scan(step, (x, jnp.zeros_like(x), buffer), xs)
    return (x, buffer) if record else x


# ------------------------------------------------------------------------ EDM Heun


def karras_sigmas(steps: int, sigma_min, sigma_max, rho: float = 7.0, xp=np):
    """Karras et al. (2022, arXiv 2206.00364) eq. 5: ``steps`` noise levels and a final 0.

    ``sigma_i = (sigma_max^(1/rho) + i / (steps-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
    for ``i < steps`` (``[sigma_max]`` when ``steps == 1``), and ``sigma_steps = 0``.
    """
    frac = np.arange(steps) / max(steps - 1, 1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + frac * (lo - hi)) ** rho
    return xp.concatenate([sigmas, xp.zeros((1,), sigmas.dtype)])


def heun_times(alphas_cumprod, steps: int, sigma_min=None, sigma_max=None, rho: float = 7.0):
    """``(sigmas [steps+1], t [steps+1])`` of ``heun``; ``t = -1`` stands for ``sigma = 0``.

    ``sigma_t = sqrt((1 - abar_t) / abar_t)`` is the variance-exploding noise level of
    ``t``; ``sigma_min``/``sigma_max`` default to ``sigma_0``/``sigma_{T-1}``. ``t(sigma)``
    inverts ``abar_at`` at ``abar = 1 / (1 + sigma^2)`` (piecewise linear in the discrete
    table), so the ``abar(t)`` the network is told is the noise level of its input exactly.
    Arrays are numpy float64 for a concrete table, ``jnp`` float32 for a traced one.

    Raises:
      ValueError: naming ``sigma_min``/``sigma_max`` (or ``rho``) when not ``0 < sigma_min <
        sigma_max`` inside the model's range ``[sigma_0, sigma_{T-1}]`` (range checked for a
        concrete table).
    """
    if not rho > 0:
        raise ValueError(f"rho: must be > 0, got {rho}")
    table, xp = schedule_table(alphas_cumprod)
    sig_lo, sig_hi = (xp.sqrt((1.0 - table[i]) / table[i]) for i in (0, -1))
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if value is None:
            continue
        if not value > 0:
            raise ValueError(f"{name}: must be > 0, got {value}")
        if xp is np and not sig_lo * (1 - 1e-6) <= value <= sig_hi * (1 + 1e-6):
            raise ValueError(f"{name}: must lie in the model's range [{sig_lo}, {sig_hi}], got {value}")
    lo = sig_lo if sigma_min is None else sigma_min
    hi = sig_hi if sigma_max is None else sigma_max
    if xp is np and table.shape[0] > 1 and not lo < hi:
        raise ValueError(f"sigma_min: must be < sigma_max, got {lo} >= {hi}")
    sigmas = karras_sigmas(steps, lo, hi, rho, xp)
    t = t_of_abar(table, 1.0 / (1.0 + sigmas[:-1] ** 2), xp)
    return sigmas, xp.concatenate([t, -xp.ones((1,), t.dtype)])


def heun_sample(
    denoiser: Denoiser,
    alphas_cumprod,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    steps: int,
    sigma_min=None,
    sigma_max=None,
    rho: float = 7.0,
    clip_x0: bool = False,
    record: tuple[int, ...] = (),
    x_T: jax.Array | None = None,
):
    """Deterministic Heun sampler of Karras et al. (2022, arXiv 2206.00364), Algorithm 1 (S_churn = 0).

    The discrete VP model is rewritten in the variance-exploding form ``x_edm = x /
    sqrt(abar)``, ``sigma = sqrt((1 - abar) / abar)``, whose denoiser is ``D(x_edm; sigma) =
    x_edm - sigma eps(x_edm / sqrt(1 + sigma^2), t(sigma))`` (``x_edm / sqrt(1 + sigma^2) =
    sqrt(abar) x_edm`` is the DDPM-scale input). The noise levels are Karras' schedule
    (eq. 5, ``rho = 7``) from ``sigma_max`` (default: ``sigma`` at ``t = T-1``) down to
    ``sigma_min`` (default: ``sigma`` at ``t = 0``), then 0. Each step is an Euler step of
    ``dx/dsigma = (x - D) / sigma`` corrected by the trapezoidal rule; the final step to
    ``sigma = 0`` is Euler only, and it lands exactly on ``D(x; sigma_min)``. ``x_T`` is
    drawn in the DDPM scale and converted with ``x_edm = x_T sqrt(1 + sigma_max^2)``, so all
    samplers start from the same draw. The result is ``x_edm`` at ``sigma = 0``, which is
    the DDPM-scale ``x_0``.

    Network evaluations per sample: ``2 * steps - 1``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction``.
      alphas_cumprod: ``abar`` table ``[T]``.
      key: per-sample PRNG key (only ``x_T`` is drawn from it).
      shape: shape of one sample.
      steps: number of noise levels ``N`` (steps of Algorithm 1), in ``[1, T]``.
      sigma_min, sigma_max: optional ends of the schedule, inside the model's range.
      rho: Karras schedule exponent.
      clip_x0: clip ``D`` to ``[-1, 1]``.
      record: step indices in ``[0, steps)`` after which to keep ``D`` of the step's
        first evaluation.
      x_T: optional starting point of ``shape`` (DDPM scale).

    Returns:
      The sample (float32), or ``(sample, x0_record [len(record), *shape])``.
    """
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(steps, table.shape[0])
    sigmas, t = heun_times(table, steps, sigma_min, sigma_max, rho)
    sigmas, t = f32(sigmas), f32(t)
    shape = tuple(shape)
    x_T, _ = split_key(key, shape, steps, x_T)
    mask = jnp.asarray(record_mask(record, steps))

    def denoise(x, sigma, t):
        eps = evaluate(denoiser, x / jnp.sqrt(1.0 + sigma**2), t).eps
        return maybe_clip(x - sigma * eps, clip_x0)

    def step(carry, xs):
        x, buffer = carry
        s_cur, s_next, t_cur, t_next, mask_i = xs
        d0 = denoise(x, s_cur, t_cur)
        slope = (x - d0) / s_cur
        x_euler = x + (s_next - s_cur) * slope
        d1 = denoise(x_euler, s_next, t_next)
        x = x + (s_next - s_cur) * 0.5 * (slope + (x_euler - d1) / s_next)
        return (x, update_record(buffer, mask_i, d0)), None

    x = x_T * jnp.sqrt(1.0 + sigmas[0] ** 2)
    buffer = jnp.zeros((len(record),) + shape, jnp.float32)
    xs = (sigmas[:-2], sigmas[1:-1], t[:-2], t[1:-1], mask[:-1])
    (x, buffer), _ = jax.lax.scan(step, (x, buffer), xs)
    # Final Euler step to sigma = 0: x + (0 - s)(x - D)/s = D.
    x = denoise(x, sigmas[-2], t[-2])
    buffer = update_record(buffer, mask[-1], x)
    return (x, buffer) if record else x
