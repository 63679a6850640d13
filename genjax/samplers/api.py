"""One entry point over the samplers, batching, and the device-spreading builder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from genjax.samplers.base import (
    Denoiser,
    Prediction,
    Sampler,
    check_alphas_cumprod,
    check_steps,
    run,
)
from genjax.samplers.registry import as_sampler
from genjax.sharding import DATA_AXIS, data_mesh

PARALLEL = ("jit", "pmap")


def num_evaluations(sampler: Sampler | str, steps: int) -> int:
    """Network evaluations per sample of a sampler.

    Args:
      sampler: a ``Sampler`` or a registry name.
      steps: the sampler's ``steps`` (``>= 1``).

    Returns:
      ``steps`` for ``DDPM``, ``DDIM`` and ``DPMpp2M``; ``2 * steps - 1`` for ``Heun``
      (Karras et al. 2022, Algorithm 1: no correction on the final step to ``sigma = 0``).
    """
    return as_sampler(sampler).num_evaluations(steps)


def timesteps(sampler: Sampler | str, steps: int, T: int, *, alphas_cumprod: ArrayLike | None = None) -> np.ndarray:
    """The grid of timesteps a sampler walks, ``steps + 1`` entries from the first to the last.

    The network is evaluated at the first ``steps`` entries (``Heun`` also at entries
    ``1..steps-1``, its corrector). ``-1`` stands for ``abar = 1`` (clean data).

    * ``DDPM``, ``DDIM`` (int64): ``t_i = round(i (T-1) / (steps-1))``, ``i = steps-1..0``
      (halves up; ``[T-1]`` when ``steps == 1``), then ``-1``. ``steps == T`` gives
      ``T-1, ..., 0, -1``.
    * ``DPMpp2M`` (float64): ``(T-1)(1 - i / steps)``, ``i = 0..steps``: evenly spaced
      from ``T-1`` to ``0``.
    * ``Heun`` (float64, needs ``alphas_cumprod``): the ``t`` of Karras' noise levels,
      ``t(sigma)`` with ``abar_at(t) = 1 / (1 + sigma^2)``, then ``-1`` for ``sigma = 0``.

    Args:
      sampler: a ``Sampler`` (its options included) or a registry name.
      steps: the sampler's ``steps``, in ``[1, T]``.
      T: number of discrete timesteps of the model.
      alphas_cumprod: the ``abar`` table ``[T]`` (needed for ``Heun`` only).

    Returns:
      The ``steps + 1`` timesteps, in the order the sampler visits them.
    """
    sampler = as_sampler(sampler)
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected a positive int, got {T!r}")
    check_steps(steps, T)
    return sampler.timesteps(steps, T, alphas_cumprod)


def sample(
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
    key: jax.Array,
    shape: Sequence[int],
    *,
    sampler: Sampler | str,
    steps: int,
    record: Sequence[int] = (),
    x_T: jax.Array | None = None,
):
    """Draws one sample with ``sampler``; a pure function of ``key`` (jit/vmap it).

    Samplers (network evaluations per sample in brackets; see each class for the paper,
    equation, options and step schedule): ``DDPM`` [``steps``], ancestral sampling of Ho
    et al. 2020, respaced per Nichol & Dhariwal 2021; ``DDIM`` [``steps``], Song et al.
    2021 eq. 12; ``DPMpp2M`` [``steps``], Lu et al. 2022 Algorithm 2; ``Heun`` [``2 * steps
    - 1``], Karras et al. 2022 Algorithm 1. All run in the one scan of ``base.run``.

    Randomness: ``k_init, k_steps = split(key)``; ``x_T = normal(k_init, shape)`` in the DDPM
    scale for every sampler (``Heun`` rescales it), so all samplers start from the same
    draw; step ``i`` gets the key ``split(k_steps, steps)[i]``, from which a stochastic
    step draws ``normal(key_i, shape)``.

    Args:
      denoiser: ``denoiser(x_t, t) -> Prediction`` for one example.
      alphas_cumprod: ``abar`` table ``[T]``, strictly decreasing in ``(0, 1)``.
      key: PRNG key of this sample.
      shape: shape of one sample.
      sampler: a ``Sampler`` such as ``DDIM(eta=0.5)``, or a registry name (default
        options; ``get_sampler(name, **options)`` for others).
      steps: sampler steps, in ``[1, T]``.
      record: step indices in ``[0, steps)`` after which to keep the predicted ``x_0``
        (progressive generation, Ho et al. Fig. 6); kept in a buffer carried by the scan.
      x_T: optional starting noise of ``shape`` in the DDPM scale (e.g. ``ddim_encode``).

    Returns:
      The float32 sample of ``shape``, or ``(sample, x0_record [len(record), *shape])``
        when ``record`` is not empty.

    Raises:
      ValueError: naming the offending argument.
      TypeError: naming ``denoiser`` when it does not return a ``Prediction``.
    """
    return run(as_sampler(sampler), denoiser, alphas_cumprod, key, shape, steps=steps, record=record, x_T=x_T)


def sample_batch(
    denoiser: Denoiser,
    alphas_cumprod: ArrayLike,
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
      **kw: ``sampler``, ``steps`` and ``record``, as in ``sample``.

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
    denoiser_fn_of_params: Callable[..., Denoiser],
    alphas_cumprod: ArrayLike,
    shape: Sequence[int],
    *,
    sampler: Sampler | str,
    steps: int,
    parallel: str = "jit",
    devices: Sequence[jax.Device] | None = None,
    conditional: bool = False,
) -> Callable[..., jax.Array]:
    """Compiles sampling spread over devices, with the training engine's conventions.

    * ``"jit"``: one program over the 1-D mesh of ``genjax.sharding.data_mesh`` (axis
      ``"data"``); the per-sample keys are split along it with ``NamedSharding``, the
      parameters replicated.
    * ``"pmap"``: ``jax.pmap`` over the devices with the keys reshaped
      ``[n_dev, num / n_dev]``.

    Per-sample keys are ``jax.random.split(key, num)`` in both, so the samples equal
    ``sample_batch(denoiser_fn_of_params(params), ..., key, num, ...)`` whatever the device
    count. Compiled functions are cached per ``num``.

    Args:
      denoiser_fn_of_params: ``params -> denoiser``; with ``conditional``, ``(params,
        condition) -> denoiser`` for one example's condition (e.g. ``guidance.guided``
        over a class label and a guidance scale).
      alphas_cumprod: ``abar`` table ``[T]``.
      shape: shape of one sample.
      sampler: as in ``sample``.
      steps: as in ``sample``.
      parallel: ``"jit"`` or ``"pmap"``.
      devices: devices to use (default: this process's, ``jax.local_devices()``; in a
        multi-process run each process samples on its own devices).
      conditional: each sample has its own condition (a pytree with a leading axis of
        ``num``, split over the devices like the keys).

    Returns:
      ``fn(params, key, num) -> [num, *shape]``, or ``fn(params, key, num, conditions)``
      when ``conditional``; ``num`` must be divisible by the device count
      (``ValueError`` naming ``num`` otherwise).
    """
    if parallel not in PARALLEL:
        raise ValueError(f"parallel: expected one of {PARALLEL}, got {parallel!r}")
    sampler = as_sampler(sampler)
    devices = tuple(jax.local_devices() if devices is None else devices)
    n_dev = len(devices)
    table = check_alphas_cumprod(alphas_cumprod)
    shape = tuple(int(d) for d in shape)
    # Validate everything once, eagerly, with a throwaway abstract trace.
    jax.eval_shape(
        lambda k: sample(lambda x, t: Prediction(x, jnp.zeros_like(x)), table, k, shape, sampler=sampler, steps=steps),
        jax.random.key(0),
    )

    def many(params, keys, conditions):
        if not conditional:
            denoiser = denoiser_fn_of_params(params)
            return jax.vmap(lambda k: sample(denoiser, table, k, shape, sampler=sampler, steps=steps))(keys)
        return jax.vmap(lambda k, c: sample(denoiser_fn_of_params(params, c), table, k, shape, sampler=sampler, steps=steps))(keys, conditions)

    def check_conditions(num: int, conditions: Any) -> None:
        if not conditional:
            if conditions is not None:
                raise ValueError("conditions: this sampler was built without conditional=True")
            return
        sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(conditions)}
        if not sizes or sizes != {num}:
            raise ValueError(f"conditions: expected a leading axis of num={num} on every leaf, got sizes {sorted(sizes, key=str)}")

    cache: dict[int, Callable] = {}

    if parallel == "jit":
        mesh = data_mesh(devices)
        replicated = NamedSharding(mesh, P())
        batch = NamedSharding(mesh, P(DATA_AXIS))

        def compiled_for(num: int) -> Callable:
            def sharded(params, key, conditions):
                keys = jax.lax.with_sharding_constraint(jax.random.split(key, num), batch)
                return many(params, keys, conditions)

            return jax.jit(sharded, in_shardings=(replicated, replicated, batch), out_shardings=batch)

        def call(params, key, num, conditions=None):
            _check_num(num, n_dev)
            check_conditions(num, conditions)
            if num not in cache:
                cache[num] = compiled_for(num)
            placed = None if conditions is None else jax.device_put(conditions, batch)
            return cache[num](jax.device_put(params, replicated), jax.device_put(key, replicated), placed)

    else:
        # Unconditional samplers map over the keys alone: a ``None`` conditions argument has
        # no leaves, and pmap's flattened in_axes must not give it one.
        mapped_axes = (None, 0, 0) if conditional else (None, 0)
        mapped = jax.pmap(
            many if conditional else lambda params, keys: many(params, keys, None),
            in_axes=mapped_axes,
            devices=devices,
            axis_name=DATA_AXIS,
        )

        def compiled_for(num: int) -> Callable:
            split = jax.jit(lambda key: jnp.reshape(jax.random.split(key, num), (n_dev, num // n_dev)))

            def mapped_run(params, key, conditions):
                per_device = jax.tree.map(lambda c: jnp.reshape(c, (n_dev, num // n_dev) + np.shape(c)[1:]), conditions)
                out = mapped(params, split(key), per_device) if conditional else mapped(params, split(key))
                return jnp.reshape(out, (num,) + shape)

            return mapped_run

        def call(params, key, num, conditions=None):
            _check_num(num, n_dev)
            check_conditions(num, conditions)
            if num not in cache:
                cache[num] = compiled_for(num)
            return cache[num](params, key, conditions)

    call.cache = cache  # type: ignore[attr-defined]
    return call


__all__ = ["build_sampler", "num_evaluations", "sample", "sample_batch", "timesteps"]
