"""Gradient estimators for discrete latent variables.

Gumbel-softmax and straight-through Gumbel-softmax: Jang, Gu & Poole, "Categorical
Reparameterization with Gumbel-Softmax", arXiv:1611.01144, eqs. (1)-(2); the binary case is
the Binary Concrete of Maddison, Mnih & Teh, arXiv:1611.00712. Plain straight-through:
Bengio et al., arXiv:1308.3432, slope-annealed as in Chung et al., arXiv:1609.01704.
Score function: REINFORCE (Williams, 1992).

The log-densities, log-probabilities and KL divergences of these distributions live in
``genjax.distributions``.

A logit of ``-inf`` masks a class (never sampled, zero probability, zero gradient). Values
and gradients stay NaN-free for masked classes and logits of +-1e4 while one class is finite.
Arithmetic runs in float32 (float64 under x64) and results come back in the input's floating
dtype. Samplers take one key; batch them with ``jax.vmap`` over split keys.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax._checks import (
    categorical_logits,
    check_temperature,
    compute_dtype,
    concrete,
    floating,
)
from genjax.distributions import masked_log_softmax

__all__ = [
    "ema_baseline_update",
    "gumbel_softmax",
    "relaxed_bernoulli",
    "sample_gumbel",
    "score_function_surrogate",
    "straight_through_bernoulli",
    "straight_through_categorical",
    "temperature_schedule",
]  # fmt: skip

ArrayLike = jax.typing.ArrayLike


def _check_key(key: jax.Array) -> None:
    """Accepts one typed key of shape () or one legacy uint32 key of shape (2,)."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    if not ((typed and shape == ()) or (dtype == jnp.uint32 and shape == (2,))):
        raise ValueError(
            "key: expected a single PRNG key (jax.random.key, shape ()) or a legacy uint32 key of "
            f"shape (2,); got dtype {dtype} and shape {shape}. For a batch, jax.vmap over split keys."
        )


def _masked_softmax(x: jax.Array, mask: jax.Array, axis: int, temperature: ArrayLike = 1.0) -> jax.Array:
    return jnp.where(mask, jnp.exp(masked_log_softmax(x, mask, axis, temperature)), 0.0)


@jax.custom_jvp
def _straight_through(soft: jax.Array, hard: jax.Array) -> jax.Array:
    """Returns ``hard`` exactly, with the tangent (hence gradient) of ``soft``."""
    del soft
    return hard


@_straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    soft_dot, _ = tangents
    return primals[1], soft_dot


def sample_gumbel(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Standard Gumbel(0, 1) noise, g = -log(-log u) with u ~ U(0, 1) (arXiv:1611.01144, sec. 2)."""
    _check_key(key)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype: expected a floating dtype, got {jnp.dtype(dtype)}")
    return jax.random.gumbel(key, shape, dtype)


def _categorical_noise(key, logits, temperature, axis):
    """Validates a categorical sampler's arguments. Returns logits and logits + Gumbel noise in
    the compute dtype, the finite-class mask, the non-negative axis and tau."""
    _check_key(key)
    check_temperature(temperature)
    logits, axis = categorical_logits(logits, axis)
    cdt = compute_dtype(logits.dtype)
    x = logits.astype(cdt)
    return x, x + sample_gumbel(key, logits.shape, cdt), logits != -jnp.inf, axis, jnp.asarray(temperature, cdt)


def gumbel_softmax(key: jax.Array, logits: ArrayLike, *, temperature: ArrayLike, hard: bool = False, axis: int = -1) -> jax.Array:
    """A Gumbel-softmax (Concrete) sample, Jang et al., arXiv:1611.01144, eq. (1).

    y_i = exp((log pi_i + g_i) / tau) / sum_j exp((log pi_j + g_j) / tau), g_i ~ Gumbel(0, 1).
    With ``hard=True`` this is the straight-through Gumbel-softmax of section 2.2: the value
    is exactly one_hot(argmax y), and the gradient is that of the relaxed y.

    Args:
      key: a single PRNG key; vmap over split keys for independent batches.
      logits: unnormalised log-probabilities log pi (+ any constant); ``-inf`` masks a class.
      temperature: tau > 0, a scalar (may be traced).
      hard: return the straight-through one-hot instead of the relaxed sample.
      axis: the class axis.

    Returns:
      An array of the shape and dtype of ``logits``, on the simplex along ``axis``.
    """
    _, noisy, mask, axis, tau = _categorical_noise(key, logits, temperature, axis)
    soft, dtype = _masked_softmax(noisy, mask, axis, tau), jnp.asarray(logits).dtype
    out = soft.astype(dtype)
    if hard:
        # The argmax of the noisy logits, not of the rounded soft sample: the exact
        # Gumbel-max draw, free of ties that rounding could create at small tau.
        index = jnp.argmax(jnp.where(mask, noisy, -jnp.inf), axis=axis)
        out = _straight_through(out, jax.nn.one_hot(index, soft.shape[axis], dtype=dtype, axis=axis))
    chex.assert_shape(out, jnp.shape(logits))
    return out


def _noisy_logits(key, logits, temperature) -> tuple[jax.Array, jax.Array]:
    """Validated logistic-noised logits z = l + log u - log(1 - u), and tau, in the compute dtype."""
    _check_key(key)
    check_temperature(temperature)
    logits = floating(logits, "logits")
    cdt = compute_dtype(logits.dtype)
    noisy = logits.astype(cdt) + jax.random.logistic(key, logits.shape, cdt)
    return noisy, jnp.asarray(temperature, cdt)


def relaxed_bernoulli(key: jax.Array, logits: ArrayLike, *, temperature: ArrayLike, hard: bool = False) -> jax.Array:
    """A Binary Concrete (relaxed Bernoulli) sample, Maddison et al., arXiv:1611.00712.

    y = sigmoid((l + log u - log(1 - u)) / tau), u ~ U(0, 1), elementwise over ``logits``.
    With ``hard=True`` the value is exactly 1[y > 1/2] ~ Bernoulli(sigmoid(l)) and the
    gradient is that of y (the binary straight-through Gumbel-softmax, arXiv:1611.01144).

    Args:
      key: a single PRNG key.
      logits: Bernoulli logits l = log(p / (1 - p)), any shape.
      temperature: tau > 0, a scalar (may be traced).
      hard: return the straight-through {0, 1} sample.

    Returns:
      An array of the shape and dtype of ``logits`` in [0, 1].
    """
    noisy, tau = _noisy_logits(key, logits, temperature)
    soft, dtype = jax.nn.sigmoid(noisy / tau), jnp.asarray(logits).dtype
    out = soft.astype(dtype)
    if hard:
        # noisy > 0 is the exact Bernoulli draw; sigmoid(noisy / tau) > 0.5 can round to 0.5.
        out = _straight_through(out, (noisy > 0).astype(dtype))
    chex.assert_shape(out, jnp.shape(logits))
    return out


def straight_through_categorical(key: jax.Array, logits: ArrayLike, *, temperature: ArrayLike = 1.0, axis: int = -1) -> jax.Array:
    """Straight-through one-hot sample (Bengio et al., arXiv:1308.3432; "ST" in arXiv:1611.01144).

    The value is an exact one-hot draw from Categorical(softmax(logits)) by the Gumbel-max
    trick; the gradient is that of softmax(logits / tau). tau = 1 is plain ST; an annealed
    tau is slope-annealed ST (Chung et al., arXiv:1609.01704).

    Args:
      key: a single PRNG key.
      logits: unnormalised log-probabilities; ``-inf`` masks a class.
      temperature: tau > 0 of the backward softmax, a scalar (may be traced).
      axis: the class axis.

    Returns:
      A one-hot array of the shape and dtype of ``logits``.
    """
    x, noisy, mask, axis, tau = _categorical_noise(key, logits, temperature, axis)
    dtype = jnp.asarray(logits).dtype
    index = jnp.argmax(jnp.where(mask, noisy, -jnp.inf), axis=axis)  # Gumbel-max: exact sample
    one_hot = jax.nn.one_hot(index, x.shape[axis], dtype=dtype, axis=axis)
    return _straight_through(_masked_softmax(x, mask, axis, tau).astype(dtype), one_hot)


def straight_through_bernoulli(key: jax.Array, logits: ArrayLike, *, temperature: ArrayLike = 1.0) -> jax.Array:
    """Straight-through Bernoulli sample (Bengio et al., arXiv:1308.3432).

    The value is an exact draw z ~ Bernoulli(sigmoid(logits)) in {0, 1}; the gradient is
    that of sigmoid(logits / tau) (slope annealing, Chung et al., arXiv:1609.01704).

    Args:
      key: a single PRNG key.
      logits: Bernoulli logits, any shape.
      temperature: tau > 0 of the backward sigmoid, a scalar (may be traced).

    Returns:
      A {0, 1} array of the shape and dtype of ``logits``.
    """
    noisy, tau = _noisy_logits(key, logits, temperature)
    logits = jnp.asarray(logits)
    soft = jax.nn.sigmoid(logits.astype(tau.dtype) / tau).astype(logits.dtype)
    return _straight_through(soft, (noisy > 0).astype(logits.dtype))


def temperature_schedule(step: ArrayLike, *, tau0: float = 1.0, tau_min: float = 0.5, rate: float, every: int = 1) -> jax.Array:
    """Annealed temperature max(tau_min, tau0 exp(-rate t)), t = step rounded down to ``every``.

    The schedule of Jang et al., arXiv:1611.01144, sec. 4.2 (tau = max(0.5, exp(-r t)),
    updated every N steps). ``step`` may be traced; the result is float32.
    """
    for name, value in (("tau0", tau0), ("tau_min", tau_min)):
        if not value > 0:
            raise ValueError(f"{name}: expected a positive number, got {value}")
    if not rate >= 0:
        raise ValueError(f"rate: expected a non-negative number, got {rate}")
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every: expected an int >= 1, got {every!r}")
    t = (jnp.asarray(step) // every * every).astype(jnp.float32)
    return jnp.maximum(jnp.float32(tau_min), jnp.float32(tau0) * jnp.exp(-jnp.float32(rate) * t))


def score_function_surrogate(cost: ArrayLike, log_q: ArrayLike, baseline: ArrayLike) -> jax.Array:
    """REINFORCE surrogate (Williams, 1992): value ``cost``, gradient grad cost + (cost - b) grad log q.

    Elementwise ``cost + stop_gradient(cost - baseline) * (log_q - stop_gradient(log_q))``.
    The caller stops gradients through the discrete sample itself; ``log_q`` must be finite.
    """
    cost, log_q = jnp.asarray(cost), jnp.asarray(log_q)
    if cost.shape != log_q.shape:
        raise ValueError(f"log_q: expected the shape of cost {cost.shape}, got {log_q.shape}")
    return cost + lax.stop_gradient(cost - baseline) * (log_q - lax.stop_gradient(log_q))


def ema_baseline_update(baseline: ArrayLike, value: ArrayLike, *, decay: jax.Array | float) -> jax.Array:
    """Moving-average baseline ``decay * baseline + (1 - decay) * stop_gradient(value)``."""
    d = concrete(decay)
    if d is not None and not (np.all(d >= 0) and np.all(d < 1)):
        raise ValueError(f"decay: expected a value in [0, 1), got {d}")
    return decay * jnp.asarray(baseline) + (1.0 - decay) * lax.stop_gradient(value)
