"""Ancestral DDPM sampling, DDIM sampling and deterministic DDIM inversion.

Both samplers walk the evenly spaced subset of ``steps`` discrete timesteps of
``base.spaced_timesteps`` (``t_i = round(i (T-1) / (steps-1))``, all of ``0..T-1`` when
``steps == T``) from ``T-1`` down to ``0`` and finish with a step to ``t = -1``
(``abar = 1``), so they return data, not a slightly noisy ``x_0``. Every step runs inside
one ``jax.lax.scan`` over precomputed per-step arrays, so the traced program (and its
compile time) does not depend on ``steps``; the network is evaluated once per step.

The per-step update rules are exposed as pure functions for step-by-step use and for
comparison with other implementations: ``ddpm_step_table`` / ``ddpm_step`` and
``ddim_step_table`` / ``ddim_step`` are exactly what the scans of ``ddpm_sample`` and
``ddim_sample`` evaluate.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from genjax.samplers.base import (
    VARIANCES,
    Denoiser,
    check_alphas_cumprod,
    check_steps,
    evaluate,
    f32,
    maybe_clip,
    record_mask,
    schedule_table,
    spaced_timesteps,
    split_key,
    update_record,
)
from genjax.distributions import x0_from_eps


def _step_tables(alphas_cumprod, steps: int):
    """Per-step ``(t, abar_t, abar_prev, xp)`` in loop order (decreasing ``t``).

    ``abar_prev`` is ``abar`` at the next (smaller) timestep of the subset, and 1 for the
    final step to ``t = -1``. Arrays are float64 numpy (``xp = np``) for a concrete table,
    float32 ``jnp`` for a traced one (``base.schedule_table``).
    """
    table, xp = schedule_table(alphas_cumprod)
    ts = spaced_timesteps(steps, table.shape[0])[::-1]  # T-1, ..., 0
    prev = np.concatenate([ts[1:], [-1]])
    extended = xp.concatenate([xp.ones((1,), table.dtype), table])
    return ts, extended[ts + 1], extended[prev + 1], xp


def _finish(x: jax.Array, buffer: jax.Array, record: tuple[int, ...]):
    return (x, buffer) if record else x


@struct.dataclass
class DDPMStepTable:
    """Per-step float32 coefficients of ancestral DDPM sampling, in loop order.

    Each field is ``[steps]`` (decreasing ``t``) as returned by ``ddpm_step_table``; one
    row (index every field with ``i``) is what ``ddpm_step`` takes for step ``i``.

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
        which ``ddpm_step`` checks its ``var_frac`` against.
    """

    t: jax.Array
    abar_t: jax.Array
    coef_x0: jax.Array
    coef_xt: jax.Array
    std: jax.Array
    log_lo: jax.Array
    log_hi: jax.Array
    variance: str = struct.field(pytree_node=False, default="small")


def ddpm_step_table(alphas_cumprod, steps: int, *, variance: str = "small") -> DDPMStepTable:
    """The per-step coefficients ``ddpm_sample`` scans over (see ``DDPMStepTable``).

    Computed in float64 on the host for a concrete ``alphas_cumprod`` (float32 for a traced
    one) and returned as float32 arrays, on the timesteps ``T-1 = t_0 > ... > t_{steps-1} =
    0`` of ``base.spaced_timesteps`` with ``abar_prev = 1`` on the last step.

    Args:
      alphas_cumprod: ``abar`` table ``[T]``.
      steps: number of reverse steps, in ``[1, T]``.
      variance: ``"small"``, ``"large"`` or ``"learned"`` (see ``ddpm_sample``).

    Returns:
      A ``DDPMStepTable`` of ``[steps]`` float32 arrays.

    Raises:
      ValueError: naming ``alphas_cumprod``, ``steps`` or ``variance``.
    """
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(steps, table.shape[0])
    if variance not in VARIANCES:
        raise ValueError(f"variance: expected one of {VARIANCES}, got {variance!r}")
    t, abar_t, abar_prev, xp = _step_tables(table, steps)
    alpha = abar_t / abar_prev
    beta = 1.0 - alpha
    beta_tilde = (1.0 - abar_prev) / (1.0 - abar_t) * beta
    coef_x0 = xp.sqrt(abar_prev) * beta / (1.0 - abar_t)
    coef_xt = xp.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar_t)
    last = np.arange(steps) == steps - 1
    log_lo = log_hi = xp.zeros_like(beta)
    if variance == "small":
        std = xp.sqrt(beta_tilde)
    elif variance == "large":
        std = xp.where(last, 0.0, xp.sqrt(beta))
    else:  # "learned"
        std = xp.where(last, 0.0, 1.0)  # multiplies the learned standard deviation
        # beta_tilde of the last step is 0: use the one before (beta for a single step).
        clipped = beta if steps == 1 else xp.concatenate([beta_tilde[:-1], beta_tilde[-2:-1]])
        log_lo, log_hi = xp.log(clipped), xp.log(beta)
    return DDPMStepTable(f32(t), f32(abar_t), f32(coef_x0), f32(coef_xt), f32(std), f32(log_lo), f32(log_hi), variance)


def _check_row(coefs: DDPMStepTable | DDIMStepTable) -> None:
    """Refuses a whole table where one row (scalar fields) is expected."""
    if jnp.ndim(coefs.t) != 0:
        raise ValueError(f"coefs: expected one row of the step table (scalar fields), got fields of shape {jnp.shape(coefs.t)}")


def ddpm_step(
    x_t: jax.Array,
    eps: jax.Array,
    noise: jax.Array,
    coefs: DDPMStepTable,
    *,
    clip_x0: bool = True,
    var_frac: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One ancestral step ``x_t -> x_{t'}`` (Ho et al. 2020, arXiv 2006.11239, Algorithm 2).

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (clipped to ``[-1, 1]`` with
    ``clip_x0``), ``mean = coef_x0 x0_hat + coef_xt x_t`` (the posterior mean of eq. 7),
    ``x_{t'} = mean + std noise``. With ``var_frac = v`` (learned variances, Nichol &
    Dhariwal 2021, eq. 15) the noise scale is ``std * exp((v log_hi + (1 - v) log_lo) /
    2)``.

    Args:
      x_t: the current sample (float32).
      eps: the predicted noise at ``(x_t, coefs.t)``.
      noise: a standard normal draw of ``x_t``'s shape.
      coefs: one row of ``ddpm_step_table`` (scalar fields).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``.
      var_frac: the learned variance interpolation; required for a ``"learned"`` table
        and refused for the others.

    Returns:
      ``(x_{t'}, x0_hat)``.

    Raises:
      ValueError: ``coefs`` is not one row, or ``var_frac`` does not fit its variance.
    """
    _check_row(coefs)
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


@struct.dataclass
class DDIMStepTable:
    """Per-step float32 coefficients of DDIM sampling, in loop order.

    Each field is ``[steps]`` (decreasing ``t``) as returned by ``ddim_step_table``; one
    row is what ``ddim_step`` takes.

    Attributes:
      t: the timestep the network is evaluated at (float32).
      abar_t: ``abar`` at ``t``.
      sqrt_abar_prev: ``sqrt(abar_{t'})`` of the next timestep ``t'`` (1 after ``t = 0``).
      coef_eps: ``sqrt(1 - abar_{t'} - sigma^2)`` (Song et al. 2021, eq. 12).
      sigma: ``eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})``
        (eq. 16).
      stochastic: whether ``eta > 0`` (static, not a pytree leaf): ``ddim_step`` then
        requires noise, since ``coef_eps`` already leaves room for ``sigma``.
    """

    t: jax.Array
    abar_t: jax.Array
    sqrt_abar_prev: jax.Array
    coef_eps: jax.Array
    sigma: jax.Array
    stochastic: bool = struct.field(pytree_node=False, default=False)


def ddim_step_table(alphas_cumprod, steps: int, *, eta: float = 0.0) -> DDIMStepTable:
    """The per-step coefficients ``ddim_sample`` scans over (see ``DDIMStepTable``).

    Same timesteps and precision rules as ``ddpm_step_table``.

    Args:
      alphas_cumprod: ``abar`` table ``[T]``.
      steps: number of steps, in ``[1, T]``.
      eta: stochasticity ``>= 0``.

    Returns:
      A ``DDIMStepTable`` of ``[steps]`` float32 arrays.

    Raises:
      ValueError: naming ``alphas_cumprod``, ``steps`` or ``eta``.
    """
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(steps, table.shape[0])
    if eta < 0:
        raise ValueError(f"eta: must be >= 0, got {eta}")
    t, abar_t, abar_prev, xp = _step_tables(table, steps)
    sigma = eta * xp.sqrt((1.0 - abar_prev) / (1.0 - abar_t)) * xp.sqrt(1.0 - abar_t / abar_prev)
    coef_eps = xp.sqrt(xp.maximum(1.0 - abar_prev - sigma**2, 0.0))
    return DDIMStepTable(f32(t), f32(abar_t), f32(xp.sqrt(abar_prev)), f32(coef_eps), f32(sigma), bool(eta > 0))


def ddim_step(
    x_t: jax.Array,
    eps: jax.Array,
    noise: jax.Array | None,
    coefs: DDIMStepTable,
    *,
    clip_x0: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """One DDIM step ``x_t -> x_{t'}`` (Song et al. 2021, arXiv 2010.02502, eq. 12).

    ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; with ``clip_x0`` it is clipped
    to ``[-1, 1]`` and ``eps`` recomputed from it; then ``x_{t'} = sqrt(abar_{t'}) x0_hat +
    coef_eps eps + sigma noise``.

    Args:
      x_t: the current sample (float32).
      eps: the predicted noise at ``(x_t, coefs.t)``.
      noise: a standard normal draw of ``x_t``'s shape; ``None`` exactly when ``eta = 0``.
      coefs: one row of ``ddim_step_table`` (scalar fields).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``.

    Returns:
      ``(x_{t'}, x0_hat)``.

    Raises:
      ValueError: ``coefs`` is not one row, or ``noise`` does not fit its ``eta``.
    """
    _check_row(coefs)
    if (noise is None) == coefs.stochastic:
        raise ValueError(
            "noise: " + ("a table with eta > 0 needs a standard normal draw, got None" if noise is None else "a table with eta = 0 takes None")
        )
    chex.assert_equal_shape([x_t, eps] if noise is None else [x_t, eps, noise])
    abar = coefs.abar_t
    x0 = x0_from_eps(x_t, eps, abar)
    if clip_x0:
        x0 = maybe_clip(x0, True)
        eps = (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
    x = coefs.sqrt_abar_prev * x0 + coefs.coef_eps * eps
    if noise is not None:
        x = x + coefs.sigma * noise
    return x, x0


def ddpm_sample(
    denoiser: Denoiser,
    alphas_cumprod,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    steps: int,
    variance: str = "small",
    clip_x0: bool = True,
    record: tuple[int, ...] = (),
    x_T: jax.Array | None = None,
):
    """Ancestral sampling of Ho et al. (2020, arXiv 2006.11239), Algorithm 2.

    Each step draws ``x_{t-1} ~ N(mu(x_t, x0_hat), sigma_t^2 I)`` with the posterior mean of
    eq. 7, ``mu = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 -
    abar_{t-1}) / (1 - abar_t) x_t`` at ``x0_hat = (x_t - sqrt(1 - abar_t) eps) /
    sqrt(abar_t)``, which is eq. 11 (``1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t)
    eps)``) when ``x0_hat`` is not clipped; with ``clip_x0`` it is clipped to ``[-1, 1]`` first
    (the reference implementation's ``clip_denoised=True``). No noise at the last step.

    With ``steps < T`` this is the respaced process of Nichol & Dhariwal (2021, arXiv
    2102.09672, Sec. 4): on the subset ``t_i`` of ``base.spaced_timesteps`` the betas are
    recomputed as ``beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}`` and the network is still
    evaluated at the original ``t_i``.

    Network evaluations per sample: ``steps``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction``.
      alphas_cumprod: ``abar`` table ``[T]``.
      key: per-sample PRNG key (see ``base.split_key`` for how it is used).
      shape: shape of one sample.
      steps: number of reverse steps, in ``[1, T]``.
      variance: ``"small"``: ``sigma^2 = beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t)
        beta_t``; ``"large"``: ``sigma^2 = beta_t`` (the two fixed choices of Ho et al.,
        Sec. 3.2); ``"learned"``: ``log sigma^2 = v log beta_t + (1 - v) log beta_tilde_t``
        with ``v = Prediction.var_frac`` (Nichol & Dhariwal, eq. 15; ``beta_tilde`` of the
        last step, which is 0, replaced by the one before as in their reference code).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``.
      record: step indices in ``[0, steps)`` after which to keep the predicted ``x_0``.
      x_T: optional starting noise of ``shape`` (replaces the draw from ``key``).

    Returns:
      The sample (float32), or ``(sample, x0_record [len(record), *shape])``.
    """
    coefs = ddpm_step_table(alphas_cumprod, steps, variance=variance)
    shape = tuple(shape)
    x, keys = split_key(key, shape, steps, x_T)
    mask = jnp.asarray(record_mask(record, steps))

    def step(carry, xs):
        x, buffer = carry
        row, key_i, mask_i = xs
        pred = evaluate(denoiser, x, row.t)
        var_frac = None
        if variance == "learned":
            if pred.var_frac is None:
                raise ValueError("variance: 'learned' needs a denoiser whose Prediction.var_frac is not None")
            var_frac = pred.var_frac
        noise = jax.random.normal(key_i, shape, jnp.float32)
        x, x0 = ddpm_step(x, pred.eps, noise, row, clip_x0=clip_x0, var_frac=var_frac)
        return (x, update_record(buffer, mask_i, x0)), None

    buffer = jnp.zeros((len(record),) + shape, jnp.float32)
    (x, buffer), _ = jax.lax.scan(step, (x, buffer), (coefs, keys, mask))
    return _finish(x, buffer, record)


def ddim_sample(
    denoiser: Denoiser,
    alphas_cumprod,
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    steps: int,
    eta: float = 0.0,
    clip_x0: bool = True,
    record: tuple[int, ...] = (),
    x_T: jax.Array | None = None,
):
    """DDIM sampling of Song et al. (2021, arXiv 2010.02502), eq. 12 with ``sigma(eta)`` of eq. 16.

    ``x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})``, where
    ``t'`` is the next timestep of the subset ``base.spaced_timesteps`` (``-1``, i.e.
    ``abar = 1``, after ``t = 0``). ``eta = 0`` is the deterministic DDIM; ``eta = 1`` is
    the ancestral DDPM with ``variance="small"``. With ``clip_x0``, ``x0_hat`` is clipped to
    ``[-1, 1]`` and ``eps`` recomputed from it (as the reference implementations do).

    Network evaluations per sample: ``steps``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction``.
      alphas_cumprod: ``abar`` table ``[T]``.
      key: per-sample PRNG key.
      shape: shape of one sample.
      steps: number of steps, in ``[1, T]``.
      eta: stochasticity ``>= 0``.
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``.
      record: step indices in ``[0, steps)`` after which to keep the predicted ``x_0``.
      x_T: optional starting point of ``shape`` (e.g. from ``ddim_encode``).

    Returns:
      The sample (float32), or ``(sample, x0_record [len(record), *shape])``.
    """
    coefs = ddim_step_table(alphas_cumprod, steps, eta=eta)
    shape = tuple(shape)
    x, keys = split_key(key, shape, steps, x_T)
    mask = jnp.asarray(record_mask(record, steps))

    def step(carry, xs):
        x, buffer = carry
        row, key_i, mask_i = xs
        eps = evaluate(denoiser, x, row.t).eps
        noise = None if eta == 0 else jax.random.normal(key_i, shape, jnp.float32)
        x, x0 = ddim_step(x, eps, noise, row, clip_x0=clip_x0)
        return (x, update_record(buffer, mask_i, x0)), None

    buffer = jnp.zeros((len(record),) + shape, jnp.float32)
    keys = keys if eta != 0 else None  # deterministic: no noise to draw
    (x, buffer), _ = jax.lax.scan(step, (x, buffer), (coefs, keys, mask))
    return _finish(x, buffer, record)


def ddim_encode(denoiser: Denoiser, alphas_cumprod, x0: jax.Array, *, steps: int) -> jax.Array:
    """Deterministic DDIM inversion: runs the ``eta = 0`` ODE of Song et al. (2021, Sec. 4.3,
    eq. 13) forward from data ``x0`` to ``x_T``, on the same timesteps ``ddim`` uses.

    Step ``i`` moves from ``abar`` of ``t_{i-1}`` (1 for ``i = 0``) to ``abar_{t_i}`` with the
    explicit Euler step ``x <- sqrt(abar_{t_i}) x0_hat + sqrt(1 - abar_{t_i}) eps``, where
    ``eps`` is evaluated at the current point and time ``t_{max(i-1, 0)}`` (the first step
    treats the data as ``x_{t_0}``). No clipping. Decode with
    ``sample(..., sampler="ddim", steps=steps, eta=0, clip_x0=False, x_T=...)``; the round
    trip is exact up to the discretisation error, which shrinks with ``steps``.

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
        x0_hat = (x - jnp.sqrt(1.0 - a_cur) * eps) / jnp.sqrt(a_cur)
        return jnp.sqrt(a_next) * x0_hat + jnp.sqrt(1.0 - a_next) * eps, None

    x, _ = jax.lax.scan(step, jnp.asarray(x0, jnp.float32), (f32(eval_t), f32(abar_cur), f32(abar_next)))
    return x
