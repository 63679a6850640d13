"""Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598) as a denoiser transform.

Guidance changes only what the sampler is told the noise is, so it is written once, here,
as a function from a conditional denoiser to a plain ``Denoiser``; every registered
sampler (DDPM, DDIM, DPM-Solver++, Heun) then samples with guidance unchanged.

For one example with condition ``c`` and the learned null condition ``null`` (the
condition the model was trained on when ``c`` was dropped), the guided noise is eq. 6 of
Ho & Salimans::

    eps_w(x_t, c) = (1 + w) eps(x_t, c) - w eps(x_t, null)
                  = eps(x_t, c) + w (eps(x_t, c) - eps(x_t, null))

``w = 0`` is the conditional model and ``w = -1`` the unconditional one. Given as the
Python number 0, the scale returns the conditional denoiser itself, so that ``w = 0``
reproduces conditional sampling exactly (a traced 0 gives it to float32 round-off: the
network then runs on the pair, whose batch size can change XLA's summation order). The two
evaluations are one network call: the denoiser is vmapped over the pair ``(c, null)``, so
the network sees a batch of two per example (and, under the sampler's vmap, ``2 B``).
An optional interval ``[t_lo, t_hi]`` of the model's time applies the guidance only there
(Kynkaanniemi et al. 2024, arXiv 2404.07724); outside it ``w`` is 0.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from genjax.samplers.base import Denoiser, Prediction


class ConditionalDenoiser(Protocol):
    """``denoiser(x_t, t, condition) -> Prediction`` for one example and its condition
    (a class label, an embedding sequence: any pytree the network takes)."""

    def __call__(self, x_t: jax.Array, t: jax.Array, condition: Any, /) -> Prediction: ...


def check_guidance(scale: float, interval: tuple[float, float] | None = None) -> None:
    """Raises ValueError naming ``guidance`` or ``guidance_interval`` when malformed.

    A scale below -1 would extrapolate away from the unconditional model; the interval
    must be ordered.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= -1.0 or scale == float("inf"):
        raise ValueError(f"guidance: expected a finite scale w >= -1 (0: the conditional model), got {scale!r}")
    if interval is not None and (len(interval) != 2 or not interval[0] <= interval[1]):
        raise ValueError(f"guidance_interval: expected (t_lo, t_hi) with t_lo <= t_hi, got {interval!r}")


def guided(
    denoiser: ConditionalDenoiser,
    condition: Any,
    null_condition: Any,
    scale: jax.Array | float,
    *,
    interval: tuple[float, float] | None = None,
) -> Denoiser:
    """The classifier-free guided denoiser of one example (see the module docstring).

    Args:
      denoiser: the conditional denoiser.
      condition: this example's condition.
      null_condition: the null condition, a pytree shaped like ``condition``.
      scale: the guidance scale ``w`` (a float, or a traced scalar so that one compiled
        sampler serves every ``w``).
      interval: apply guidance only for model times ``t`` in ``[t_lo, t_hi]``.

    Returns:
      ``denoiser(x_t, t) -> Prediction`` with the guided ``eps``; a learned variance
      (``var_frac``) is the conditional one.
    """
    if isinstance(scale, (int, float)) and scale == 0 and interval is None:
        return lambda x_t, t: denoiser(x_t, t, condition)

    def guided_denoiser(x_t: jax.Array, t: jax.Array) -> Prediction:
        pair = jax.tree.map(lambda c, u: jnp.stack([jnp.asarray(c), jnp.asarray(u)]), condition, null_condition)
        both = jax.vmap(denoiser, in_axes=(None, None, 0))(x_t, t, pair)
        if not isinstance(both, Prediction):
            raise TypeError(f"denoiser: expected it to return a Prediction, got {type(both).__name__}")
        eps_c, eps_u = both.eps[0].astype(jnp.float32), both.eps[1].astype(jnp.float32)
        w = jnp.asarray(scale, jnp.float32)
        if interval is not None:
            w = jnp.where((t >= interval[0]) & (t <= interval[1]), w, jnp.zeros_like(w))
        var_frac = None if both.var_frac is None else both.var_frac[0]
        return Prediction(eps=eps_c + w * (eps_c - eps_u), var_frac=var_frac)

    return guided_denoiser


__all__ = ["ConditionalDenoiser", "check_guidance", "guided"]
