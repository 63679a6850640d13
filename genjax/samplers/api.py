"""One entry point over the samplers, batching, and the device-spreading builder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax.samplers.base import (
    SAMPLERS,
    VARIANCES,
    Denoiser,
    Prediction,
    check_alphas_cumprod,
    check_record,
    check_sampler,
    check_steps,
    spaced_timesteps,
)
from genjax.samplers.ddpm import ddim_sample, ddpm_sample
from genjax.samplers.solvers import (
    dpmpp_2m_sample,
    dpmpp_times,
    heun_sample,
    heun_times,
)

PARALLEL = ("jit", "pmap")
DATA_AXIS = "data"
# Deterministic and reference-faithful defaults: the two ancestral/implicit samplers of
# the DDPM/DDIM reference code clip the predicted x0, the ODE solvers do not.
_CLIP_DEFAULT = {"ddpm": True, "ddim": True, "dpmpp_2m": False, "heun": False}


def num_evaluations(sampler: str, steps: int) -> int:
    """Network evaluations per sample of a sampler.

    Args:
      sampler: one of ``SAMPLERS``.
      steps: the sampler's ``steps`` (``>= 1``).

    Returns:
      ``steps`` for ``ddpm``, ``ddim`` and ``dpmpp_2m``; ``2 * steps - 1`` for ``heun``
      (Karras et al. 2022, Algorithm 1: no correction on the final step to ``sigma = 0``).
    """
    check_sampler(sampler)
    check_steps(steps)
    return 2 * steps - 1 if sampler == "heun" else steps


def timesteps(
    sampler: str,
    steps: int,
    T: int,
    *,
    alphas_cumprod=None,
    sigma_min=None,
    sigma_max=None,
    rho: float = 7.0,
) -> np.ndarray:
    """The grid of timesteps a sampler walks, ``steps + 1`` entries from the first to the last.

    The network is evaluated at the first ``steps`` entries (``heun`` also at entries
    ``1..steps-1``, its corrector). ``-1`` stands for ``abar = 1`` (clean data).

    * ``ddpm``, ``ddim`` (int64): ``t_i = round(i (T-1) / (steps-1))``, ``i = steps-1..0``
      (halves up; ``[T-1]`` when ``steps == 1``), then ``-1``. ``steps == T`` gives
      ``T-1, ..., 0, -1``.
    * ``dpmpp_2m`` (float64): ``(T-1)(1 - i / steps)``, ``i = 0..steps``: evenly spaced
      from ``T-1`` to ``0``.
    * ``heun`` (float64, needs ``alphas_cumprod``): the ``t`` of Karras' noise levels,
      ``t(sigma)`` with ``abar_at(t) = 1 / (1 + sigma^2)``, then ``-1`` for ``sigma = 0``.

    Args:
      sampler: one of ``SAMPLERS``.
      steps: the sampler's ``steps``, in ``[1, T]``.
      T: number of discrete timesteps of the model.
      alphas_cumprod: the ``abar`` table ``[T]`` (needed for ``heun`` only).
      sigma_min, sigma_max, rho: ``heun``'s schedule options, as in ``sample``.

    Returns:
      The ``steps + 1`` timesteps, in the order the sampler visits them.
    """
    check_sampler(sampler)
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected a positive int, got {T!r}")
    check_steps(steps, T)
    if sampler in ("ddpm", "ddim"):
        return np.concatenate([spaced_timesteps(steps, T)[::-1], [-1]]).astype(np.int64)
    if sampler == "dpmpp_2m":
        return dpmpp_times(steps, T)
    if alphas_cumprod is None:
        raise ValueError("alphas_cumprod: the heun schedule depends on the abar table; pass alphas_cumprod")
    table = check_alphas_cumprod(alphas_cumprod)
    if table.shape[0] != T:
        raise ValueError(f"alphas_cumprod: expected length T={T}, got {table.shape[0]}")
    _, t = heun_times(table, steps, sigma_min, sigma_max, rho)
    return np.asarray(t, dtype=np.float64)


def _check_options(sampler: str, eta: float, variance: str, sigma_min, sigma_max, rho: float) -> None:
    if eta < 0:
        raise ValueError(f"eta: must be >= 0, got {eta}")
    if eta != 0 and sampler != "ddim":
        raise ValueError(f"eta: only the 'ddim' sampler takes eta, got eta={eta} for {sampler!r}")
    if variance not in VARIANCES:
        raise ValueError(f"variance: expected one of {VARIANCES}, got {variance!r}")
    if variance != "small" and sampler != "ddpm":
        raise ValueError(f"variance: only the 'ddpm' sampler takes variance, got {variance!r} for {sampler!r}")
    if sampler != "heun":
        for name, value, default in (("sigma_min", sigma_min, None), ("sigma_max", sigma_max, None), ("rho", rho, 7.0)):
            if value != default:
                raise ValueError(f"{name}: only the 'heun' sampler takes {name}, got {value} for {sampler!r}")


def sample(
    denoiser: Denoiser,
    alphas_cumprod,
    key: jax.Array,
    shape: Sequence[int],
    *,
    sampler: str,
    steps: int,
    eta: float = 0.0,
    variance: str = "small",
    clip_x0: bool | None = None,
    record: Sequence[int] = (),
    x_T: jax.Array | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
):
    """Draws one sample with the named sampler; a pure function of ``key`` (jit/vmap it).

    Samplers (network evaluations per sample in brackets; see each function for the
    paper, equation and step schedule):

    * ``"ddpm"`` [``steps``]: ancestral sampling, Ho et al. 2020 Algorithm 2, respaced
      (Nichol & Dhariwal 2021) when ``steps < T`` (``ddpm.ddpm_sample``).
    * ``"ddim"`` [``steps``]: Song et al. 2021 eq. 12 with ``sigma(eta)`` of eq. 16
      (``ddpm.ddim_sample``).
    * ``"dpmpp_2m"`` [``steps``]: DPM-Solver++(2M), Lu et al. 2022 Algorithm 2
      (``solvers.dpmpp_2m_sample``).
    * ``"heun"`` [``2 * steps - 1``]: Karras et al. 2022 Algorithm 1, deterministic
      (``solvers.heun_sample``).

    Randomness: ``k_init, k_steps = split(key)``; ``x_T = normal(k_init, shape)`` in the DDPM
    scale for every sampler (``heun`` rescales it), so all samplers start from the same
    draw; stochastic steps draw ``normal(split(k_steps, steps)[i], shape)``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``, strictly decreasing in ``(0, 1)``.
      key: PRNG key of this sample.
      shape: shape of one sample.
      sampler: one of ``SAMPLERS``.
      steps: sampler steps, in ``[1, T]``.
      eta: DDIM stochasticity (``ddim`` only).
      variance: ``"small"``, ``"large"`` or ``"learned"`` (``ddpm`` only).
      clip_x0: clip the predicted ``x_0`` to ``[-1, 1]``; default ``True`` for ``ddpm`` and
        ``ddim`` (the reference implementations), ``False`` for ``dpmpp_2m`` and ``heun``.
      record: step indices in ``[0, steps)`` after which to keep the predicted ``x_0``
        (progressive generation, Ho et al. Fig. 6); kept in a buffer carried by the scan.
      x_T: optional starting noise of ``shape`` in the DDPM scale (e.g. ``ddim_encode``).
      sigma_min, sigma_max, rho: ``heun``'s Karras schedule (default: the model's range).

    Returns:
      The float32 sample of ``shape``, or ``(sample, x0_record [len(record), *shape])`` when
      ``record`` is not empty.

    Raises:
      ValueError: naming the offending argument.
    """
    check_sampler(sampler)
    table = check_alphas_cumprod(alphas_cumprod)
    check_steps(steps, table.shape[0])
    _check_options(sampler, eta, variance, sigma_min, sigma_max, rho)
    record = check_record(record, steps)
    shape = tuple(int(d) for d in shape)
    clip = _CLIP_DEFAULT[sampler] if clip_x0 is None else bool(clip_x0)
    common = {"steps": steps, "clip_x0": clip, "record": record, "x_T": x_T}
    if sampler == "ddpm":
        return ddpm_sample(denoiser, table, key, shape, variance=variance, **common)
    if sampler == "ddim":
        return ddim_sample(denoiser, table, key, shape, eta=eta, **common)
    if sampler == "dpmpp_2m":
        return dpmpp_2m_sample(denoiser, table, key, shape, **common)
    return heun_sample(denoiser, table, key, shape, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, **common)


def sample_batch(
    denoiser: Denoiser,
    alphas_cumprod,
    key: jax.Array,
    num: int,
    shape: Sequence[int],
    *,
    x_T: jax.Array | None = None,
    **kw: Any,
):
    """``num`` samples: ``jax.vmap(sample)`` over ``jax.random.split(key, num)``.

    Sample ``i`` equals ``sample(..., jax.random.split(key, num)[i], ...)``. Under the vmap
    the network sees the whole batch at every step.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``.
      key: PRNG key of the batch.
      num: number of samples.
      shape: shape of one sample.
      x_T: optional starting noise ``[num, *shape]``.
      **kw: ``sampler``, ``steps`` and the other options of ``sample``.

    Returns:
      ``[num, *shape]`` float32 samples, or ``(samples, x0_record [num, len(record),
      *shape])`` when ``record`` is given.
    """
    _check_num(num)
    keys = jax.random.split(key, num)
    if x_T is None:
        return jax.vmap(lambda k: sample(denoiser, alphas_cumprod, k, shape, **kw))(keys)
    if tuple(np.shape(x_T)) != (num,) + tuple(shape):
        raise ValueError(f"x_T: expected shape {(num,) + tuple(shape)}, got {np.shape(x_T)}")
    return jax.vmap(lambda k, x: sample(denoiser, alphas_cumprod, k, shape, x_T=x, **kw))(keys, x_T)


def _check_num(num: int, num_devices: int = 1) -> None:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num: expected a positive int, got {num!r}")
    if num % num_devices:
        raise ValueError(f"num: {num} samples must be divisible by the device count {num_devices}")


def build_sampler(
    denoiser_fn_of_params: Callable[[Any], Denoiser],
    alphas_cumprod,
    shape: Sequence[int],
    *,
    sampler: str,
    steps: int,
    parallel: str = "jit",
    devices: Sequence[jax.Device] | None = None,
    **kw: Any,
) -> Callable[[Any, jax.Array, int], jax.Array]:
    """Compiles sampling spread over devices, with the training engine's conventions.

    * ``"jit"``: one program over a 1D mesh (axis ``"data"``); the per-sample keys are
      split along it with ``NamedSharding``, the parameters replicated.
    * ``"pmap"``: ``jax.pmap`` over the devices with the keys reshaped
      ``[n_dev, num / n_dev]``.

    Per-sample keys are ``jax.random.split(key, num)`` in both, so the samples equal
    ``sample_batch(denoiser_fn_of_params(params), ..., key, num, ...)`` whatever the device
    count. Compiled functions are cached per ``num``.

    Args:
      denoiser_fn_of_params: ``params -> denoiser``.
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      sampler, steps, **kw: as in ``sample`` (``record`` and ``x_T`` are not supported).
      parallel: ``"jit"`` or ``"pmap"``.
      devices: devices to use (default: all of ``jax.devices()``).

    Returns:
      ``fn(params, key, num) -> [num, *shape]``; ``num`` must be divisible by the device
      count (``ValueError`` naming ``num`` otherwise).
    """
    if parallel not in PARALLEL:
        raise ValueError(f"parallel: expected one of {PARALLEL}, got {parallel!r}")
    if tuple(kw.pop("record", ())):
        raise ValueError("record: not supported by build_sampler; use sample_batch")
    if kw.pop("x_T", None) is not None:
        raise ValueError("x_T: not supported by build_sampler; use sample_batch")
    devices = tuple(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    table = check_alphas_cumprod(alphas_cumprod)
    shape = tuple(int(d) for d in shape)
    # Validate everything once, eagerly, with a throwaway abstract trace.
    jax.eval_shape(
        lambda k: sample(lambda x, t: Prediction(x, jnp.zeros_like(x)), table, k, shape, sampler=sampler, steps=steps, **kw),
        jax.random.key(0),
    )

    def many(params, keys):
        denoiser = denoiser_fn_of_params(params)
        return jax.vmap(lambda k: sample(denoiser, table, k, shape, sampler=sampler, steps=steps, **kw))(keys)

    cache: dict[int, Callable] = {}

    if parallel == "jit":
        mesh = jax.sharding.Mesh(np.array(devices), (DATA_AXIS,))
        replicated = NamedSharding(mesh, P())
        batch = NamedSharding(mesh, P(DATA_AXIS))

        def compiled_for(num: int) -> Callable:
            def run(params, key):
                keys = jax.lax.with_sharding_constraint(jax.random.split(key, num), batch)
                return many(params, keys)

            return jax.jit(run, in_shardings=(replicated, replicated), out_shardings=batch)

        def call(params, key, num):
            _check_num(num, n_dev)
            if num not in cache:
                cache[num] = compiled_for(num)
            return cache[num](jax.device_put(params, replicated), jax.device_put(key, replicated))

    else:
        mapped = jax.pmap(many, in_axes=(None, 0), devices=devices, axis_name=DATA_AXIS)

        def compiled_for(num: int) -> Callable:
            split = jax.jit(lambda key: jnp.reshape(jax.random.split(key, num), (n_dev, num // n_dev)))

            def run(params, key):
                out = mapped(params, split(key))
                return jnp.reshape(out, (num,) + shape)

            return run

        def call(params, key, num):
            _check_num(num, n_dev)
            if num not in cache:
                cache[num] = compiled_for(num)
            return cache[num](params, key)

    call.cache = cache  # type: ignore[attr-defined]
    return call


__all__ = ["SAMPLERS", "build_sampler", "num_evaluations", "sample", "sample_batch", "timesteps"]
