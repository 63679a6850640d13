"""Step-by-step parity of genjax's DDPM and DDIM samplers with diffusers' schedulers.

Settings under which genjax's samplers and diffusers' schedulers are the same process
(diffusers is a test-only dependency):

* training schedule: ``beta_schedule="linear"``, ``beta_start=1e-4``, ``beta_end=0.02``,
  ``num_train_timesteps=1000`` (genjax ``beta_schedule("linear", 1000)``), no
  ``trained_betas``, ``rescale_betas_zero_snr=False``. diffusers builds ``abar`` in
  float32 and genjax in float64 (relative difference < 1e-6, checked below); the step
  tests give genjax diffusers' own ``alphas_cumprod`` so both sides use one table.
* timesteps: ``timestep_spacing="linspace"``, ``steps_offset=0``: ``round(linspace(0,
  T-1, steps))``, the grid of genjax's ``spaced_timesteps``, for 10 and 50 steps. The two
  differ where ``i (T-1) / (steps-1)`` is exactly half-way between integers (numpy
  rounds half to even, genjax half up: e.g. 7, 13 or 25 steps of 1000) and at
  ``steps=1`` (diffusers ``[0]``, genjax ``[T-1]``); ``DDPMScheduler`` takes genjax's
  grid as custom ``timesteps`` there.
* prediction and clipping: ``prediction_type="epsilon"``, ``thresholding=False``,
  ``clip_sample=True``, ``clip_sample_range=1.0`` (genjax ``clip_x0=True``); for DDIM
  ``use_clipped_model_output=True`` (genjax recomputes eps from the clipped x0) and
  ``set_alpha_to_one=True`` (the last step goes to ``abar = 1``, genjax's ``t = -1``).
* DDPM variance: genjax ``"small"`` / ``"large"`` / ``"learned"`` = diffusers
  ``"fixed_small"`` / ``"fixed_large"`` / ``"learned_range"`` (model output ``[eps, v]``
  with genjax's ``var_frac = (v + 1) / 2``). diffusers adds no noise at ``t = 0``, as
  genjax does on its last step.
* noise: ``DDPMScheduler.step`` draws ``torch.randn(shape, generator=g)``; the test
  redraws it from an identically seeded generator and feeds it to ``ddpm_update``.
  ``DDIMScheduler.step`` takes ``variance_noise``: it gets genjax's own per-step noise,
  so the whole ``sample(..., sampler=DDIM(...))`` scan is compared, not only the update rule.

What does not match: ``DDIMScheduler.step`` goes from ``t`` to ``t - T //
num_inference_steps``, which with ``"linspace"`` is not the next timestep of its own
list (10 steps: ``999 -> 899`` while the list is ``999, 888, ...``); with ``"leading"``
or ``"trailing"`` the list itself differs from genjax's (it does not contain both 0
and T-1). genjax steps between consecutive entries of its list. The DDIM test therefore
compares the update rule at genjax's ``(t, t')`` pairs, driving ``DDIMScheduler.step``
there by setting its ``num_inference_steps`` to an ``n`` with ``T // n == t - t'`` before
each step.

Each step is compared on the same input ``x_t``, with ``max|genjax - diffusers| <=
2e-5`` for ``x_{t'}`` and ``<= 2e-5 / sqrt(abar_t)`` for the predicted ``x0`` (its
float32 round-off is amplified by ``1 / sqrt(abar_t)``, up to 157 at ``t = 999``);
whole trajectories, each side from its own previous output, end within ``5e-5 *
max|x|``. Measured: 3.5e-6 per step, 5e-6 of the scale over 50 steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

try:
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler
except ImportError:  # the peers extra is not installed: only the genjax-only tests run
    torch = None

needs_peers = pytest.mark.skipif(torch is None, reason="needs the peers extra (torch, diffusers)")

from genjax.models.diffusion import beta_schedule, make_schedule
from genjax.samplers import (
    DDIM,
    DDPM,
    Prediction,
    ddim_update,
    ddpm_update,
    sample,
    timesteps,
)
from genjax.samplers.base import split_key

T = 1000
SHAPE = (2, 3, 8, 8)  # the step rules are elementwise; diffusers splits learned variances on axis 1
STEP_ATOL = 2e-5
TRAJECTORY_RTOL = 5e-5
_PHASE = np.linspace(0.0, 6.0, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)


# A fixed smooth "network", written once for numpy (diffusers) and once for jnp (genjax).
def _eps_np(x: np.ndarray, t) -> np.ndarray:
    return (1.3 * np.tanh(0.9 * x + np.sin(np.float32(0.01) * np.float32(t) + _PHASE))).astype(np.float32)


def _eps_jnp(x: jax.Array, t: jax.Array) -> jax.Array:
    return 1.3 * jnp.tanh(0.9 * x + jnp.sin(jnp.float32(0.01) * t + _PHASE))


def _raw_var_np(x: np.ndarray, t) -> np.ndarray:
    return np.tanh(0.5 * x - np.cos(np.float32(0.003) * np.float32(t) + _PHASE)).astype(np.float32)


def _raw_var_jnp(x: jax.Array, t: jax.Array) -> jax.Array:
    return jnp.tanh(0.5 * x - jnp.cos(jnp.float32(0.003) * t + _PHASE))


def _x_T() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)


def _row(table, i: int):
    return jax.tree.map(lambda a: a[i], table)


def _assert_step(x_prev, x0, ref_prev: torch.Tensor, ref_x0: torch.Tensor, abar_t, where: str) -> None:
    err = float(np.max(np.abs(np.asarray(x_prev) - ref_prev.numpy())))
    assert err <= STEP_ATOL, f"{where}: x_prev differs by {err:.3g}"
    err0 = float(np.max(np.abs(np.asarray(x0) - ref_x0.numpy())))
    bound = STEP_ATOL / float(np.sqrt(abar_t))
    assert err0 <= bound, f"{where}: x0 differs by {err0:.3g} > {bound:.3g}"


def _assert_trajectory(x, ref: torch.Tensor) -> None:
    scale = float(np.max(np.abs(ref.numpy())))
    err = float(np.max(np.abs(np.asarray(x) - ref.numpy())))
    assert err <= TRAJECTORY_RTOL * scale, f"final samples differ by {err:.3g} (scale {scale:.3g})"


@needs_peers
def test_linear_schedule_matches():
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    betas = beta_schedule("linear", T)
    np.testing.assert_allclose(scheduler.betas.numpy(), betas, rtol=1e-6, atol=0)
    abar = np.asarray(make_schedule(betas).alphas_cumprod, np.float64)
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), abar, rtol=1e-6, atol=0)


@needs_peers
@pytest.mark.parametrize("steps", [10, 50, T])
def test_linspace_timesteps_match(steps):
    for cls in (DDPMScheduler, DDIMScheduler):
        scheduler = cls(num_train_timesteps=T, timestep_spacing="linspace", steps_offset=0)
        scheduler.set_timesteps(steps)
        np.testing.assert_array_equal(scheduler.timesteps.numpy(), timesteps("ddpm", steps, T)[:-1])


_VARIANCE_TYPES = {"small": "fixed_small", "large": "fixed_large", "learned": "learned_range"}


@needs_peers
@pytest.mark.parametrize(
    ("variance", "steps"),
    [(v, n) for v in _VARIANCE_TYPES for n in (10, 50, 7)]
    # With one step (T-1 -> -1) genjax adds no noise, as on every last step, while
    # DDPMScheduler adds noise whenever t > 0: sqrt(beta) with beta = 1 - abar_{T-1} for
    # "large" and "learned". Only "small" (beta_tilde = 0 there) agrees.
    + [("small", 1)],
)
def test_ddpm_step_parity(variance, steps):
    variance_type = _VARIANCE_TYPES[variance]
    scheduler = DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        variance_type=variance_type,
        clip_sample=True,
        clip_sample_range=1.0,
        prediction_type="epsilon",
        thresholding=False,
        timestep_spacing="linspace",
        steps_offset=0,
    )
    grid = timesteps("ddpm", steps, T)[:-1]
    if steps in (10, 50):
        scheduler.set_timesteps(steps)  # linspace equals genjax's grid here
    else:
        scheduler.set_timesteps(timesteps=grid.tolist())  # rounding ties (7) and steps=1
    np.testing.assert_array_equal(scheduler.timesteps.numpy(), grid)
    table = DDPM(variance=variance).step_table(scheduler.alphas_cumprod.numpy(), steps)
    np.testing.assert_array_equal(np.asarray(table.t).astype(np.int64), grid)

    @jax.jit
    def genjax_step(x, noise, row):
        var_frac = (_raw_var_jnp(x, row.t) + 1.0) / 2.0 if variance == "learned" else None
        return ddpm_update(x, _eps_jnp(x, row.t), noise, row, clip_x0=True, var_frac=var_frac)

    x_ref = torch.from_numpy(_x_T())
    x_own = jnp.asarray(_x_T())
    for i, t in enumerate(scheduler.timesteps.tolist()):
        output = _eps_np(x_ref.numpy(), t)
        if variance == "learned":
            output = np.concatenate([output, _raw_var_np(x_ref.numpy(), t)], axis=1)
        ref = scheduler.step(torch.from_numpy(output), t, x_ref, generator=torch.Generator().manual_seed(i))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i), dtype=torch.float32).numpy()
        row = _row(table, i)
        x_prev, x0 = genjax_step(jnp.asarray(x_ref.numpy()), noise, row)
        _assert_step(x_prev, x0, ref.prev_sample, ref.pred_original_sample, row.abar_t, f"step {i} (t={t})")
        x_own, _ = genjax_step(x_own, noise, row)
        x_ref = ref.prev_sample
    _assert_trajectory(x_own, x_ref)


@pytest.mark.parametrize("variance", ["small", "learned"])
def test_ddpm_sample_is_the_step_loop(variance, key):
    """``sample`` with ``DDPM`` is ``ddpm_update`` over ``DDPM.step_table`` with its documented noise."""
    steps = 10
    abar = np.asarray(make_schedule(beta_schedule("linear", T)).alphas_cumprod, np.float64)

    def denoiser(x, t):
        return Prediction(_eps_jnp(x, t), (_raw_var_jnp(x, t) + 1.0) / 2.0)

    shape = SHAPE
    x_T = _x_T()
    sampler = DDPM(variance=variance)
    out, x0s = sample(denoiser, abar, key, shape, sampler=sampler, steps=steps, record=tuple(range(steps)), x_T=x_T)
    table = sampler.step_table(abar, steps)
    _, keys = split_key(key, shape, steps, x_T)
    x = jnp.asarray(x_T)
    for i in range(steps):
        row = _row(table, i)
        pred = denoiser(x, row.t)
        noise = jax.random.normal(keys[i], shape, jnp.float32)
        var_frac = pred.var_frac if variance == "learned" else None
        x, x0 = ddpm_update(x, pred.eps, noise, row, clip_x0=True, var_frac=var_frac)
        # Compiled inside the scan or op by op, tanh and sin may round differently.
        np.testing.assert_allclose(x0s[i], x0, rtol=0, atol=STEP_ATOL / float(np.sqrt(row.abar_t)))
    np.testing.assert_allclose(out, x, rtol=0, atol=STEP_ATOL)


def _steps_with_gap(gap: int) -> int:
    """An ``n`` with ``T // n == gap``: DDIMScheduler.step then goes from ``t`` to ``t - gap``."""
    for n in range(1, T + 1):
        if T // n == gap:
            return n
    raise AssertionError(f"no num_inference_steps gives a DDIM step of {gap}")


@needs_peers
@pytest.mark.parametrize(("eta", "steps"), [(0.0, 10), (0.0, 50), (1.0, 10), (0.5, 50)])
def test_ddim_step_parity(eta, steps, key):
    scheduler = DDIMScheduler(
        num_train_timesteps=T,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type="epsilon",
        thresholding=False,
        timestep_spacing="linspace",
    )
    scheduler.set_timesteps(steps)
    grid = timesteps("ddim", steps, T)  # t_0 > ... > t_{steps-1} = 0 > -1
    np.testing.assert_array_equal(scheduler.timesteps.numpy(), grid[:-1])
    abar = scheduler.alphas_cumprod.numpy()
    table = DDIM(eta=eta).step_table(abar, steps)

    # genjax's own per-step noise (base.split_key), handed to diffusers as variance_noise.
    x_T = _x_T()
    _, keys = split_key(key, SHAPE, steps, x_T)
    noises = [np.array(jax.random.normal(k, SHAPE, jnp.float32)) for k in keys]

    @jax.jit
    def genjax_step(x, noise, row):
        return ddim_update(x, _eps_jnp(x, row.t), noise if eta else None, row, clip_x0=True)

    x_ref = torch.from_numpy(x_T)
    for i in range(steps):
        t, t_next = int(grid[i]), int(grid[i + 1])
        scheduler.num_inference_steps = _steps_with_gap(t - t_next)
        ref = scheduler.step(
            torch.from_numpy(_eps_np(x_ref.numpy(), t)),
            t,
            x_ref,
            eta=eta,
            use_clipped_model_output=True,
            variance_noise=torch.from_numpy(noises[i]) if eta else None,
        )
        row = _row(table, i)
        x_prev, x0 = genjax_step(jnp.asarray(x_ref.numpy()), noises[i], row)
        _assert_step(x_prev, x0, ref.prev_sample, ref.pred_original_sample, row.abar_t, f"step {i} ({t} -> {t_next})")
        x_ref = ref.prev_sample

    # The whole scan sampler, from the same x_T with the same noise.
    out = sample(lambda x, t: Prediction(_eps_jnp(x, t)), abar, key, SHAPE, sampler=DDIM(eta=eta, clip_x0=True), steps=steps, x_T=x_T)
    _assert_trajectory(out, x_ref)


def test_step_functions_refuse_a_mismatched_table():
    """The public step functions check their row against the table's variance and eta."""
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 100))
    x = jnp.zeros((2, 4, 4, 1))
    learned, small = DDPM(variance="learned").step_table(abar, 5), DDPM().step_table(abar, 5)
    with pytest.raises(ValueError, match="var_frac"):
        ddpm_update(x, x, x, _row(learned, 0))
    with pytest.raises(ValueError, match="var_frac"):
        ddpm_update(x, x, x, _row(small, 0), var_frac=jnp.full_like(x, 0.5))
    with pytest.raises(ValueError, match="coefs"):
        ddpm_update(x, x, x, small)
    stochastic, deterministic = DDIM(eta=0.5).step_table(abar, 5), DDIM().step_table(abar, 5)
    with pytest.raises(ValueError, match="noise"):
        ddim_update(x, x, None, _row(stochastic, 0))
    with pytest.raises(ValueError, match="noise"):
        ddim_update(x, x, x, _row(deterministic, 0))
    with pytest.raises(ValueError, match="coefs"):
        ddim_update(x, x, None, deterministic)
    out, _ = ddpm_update(x, x, x, _row(learned, 0), var_frac=jnp.full_like(x, 0.5))
    assert out.shape == x.shape
