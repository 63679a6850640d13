"""One home for the distribution math of every family.

Every function is elementwise over its inputs (broadcasting as ``jax.numpy`` does) unless
it names a class ``axis`` it reduces; callers sum over the axes their model factorises.

* Diffusion parameterisations: conversions between the quantities a diffusion network may
  predict (noise ``eps``, the clean sample ``x0``, or the velocity ``v``), written for the
  variance-preserving forward process ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` of Ho
  et al. (arXiv 2006.11239, eq. 4), where ``abar`` is the cumulative product of ``1 - beta``.
* Gaussians with diagonal covariance, parameterised by their log-variance: log-density,
  KL divergence, entropy, and the discretised decoder of Ho et al. (eq. 13).
* Bernoulli distributions parameterised by logits: log-probability, KL divergence and
  entropy, written with log-sigmoids and softplus so that they stay finite for any logit.
* Categorical distributions parameterised by logits, where a logit of ``-inf`` masks a
  class (zero probability, zero gradient): log-probability of a one-hot sample and the KL
  divergence to the uniform distribution.
* The Gumbel-softmax (Concrete) distribution and its binary case, the relaxed Bernoulli:
  log-densities (Jang et al., arXiv 1611.01144, eq. 2; Maddison et al., arXiv 1611.00712).

The Bernoulli, categorical and Concrete functions compute in float32 (float64 under x64)
and return the input's floating dtype; the Gaussian ones compute in the input's dtype.
"""

from __future__ import annotations

import math
from typing import TypeVar

import jax
import jax.numpy as jnp
from jax import lax

from genjax._checks import (
    categorical_logits,
    check_temperature,
    compute_dtype,
    floating,
)

ArrayLike = jax.typing.ArrayLike
RealLike = jax.Array | float
"""A JAX array or a Python number, which the Gaussian functions combine with Python
operators (the stubs type those operators on bools, complex numbers and NumPy arrays
differently from what they return at run time)."""
Real = TypeVar("Real", jax.Array, float)
_LOG_2PI = math.log(2.0 * math.pi)
_BIN_HALF_WIDTH = 1.0 / 255.0


def eps_from_x0(x_t: jax.Array, x0: jax.Array, abar: jax.Array) -> jax.Array:
    """``eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)`` (Ho et al. 2020, eq. 4 solved for eps).

    Args:
      x_t: the noisy sample.
      x0: the clean sample, shaped like ``x_t``.
      abar: alpha-bar at the sample's time, broadcastable to ``x_t``.
    """
    return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def x0_from_eps(x_t: jax.Array, eps: jax.Array, abar: jax.Array) -> jax.Array:
    """``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` (Ho et al. 2020, eq. 4 solved for x0).

    Args:
      x_t: the noisy sample.
      eps: the noise, shaped like ``x_t``.
      abar: alpha-bar at the sample's time, broadcastable to ``x_t``.
    """
    return (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)


def eps_from_v(x_t: jax.Array, v: jax.Array, abar: jax.Array) -> jax.Array:
    """``eps = sqrt(abar) v + sqrt(1 - abar) x_t`` for ``v = alpha eps - sigma x0``.

    Salimans & Ho (2022, arXiv 2202.00512, Sec. 4 and App. D), with ``alpha = sqrt(abar)``
    and ``sigma = sqrt(1 - abar)``.
    """
    return jnp.sqrt(abar) * v + jnp.sqrt(1.0 - abar) * x_t


def x0_from_v(x_t: jax.Array, v: jax.Array, abar: jax.Array) -> jax.Array:
    """``x0 = sqrt(abar) x_t - sqrt(1 - abar) v`` (Salimans & Ho 2022, arXiv 2202.00512, App. D)."""
    return jnp.sqrt(abar) * x_t - jnp.sqrt(1.0 - abar) * v


def v_from_eps_x0(eps: jax.Array, x0: jax.Array, abar: jax.Array) -> jax.Array:
    """The velocity target ``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022, Sec. 4)."""
    return jnp.sqrt(abar) * eps - jnp.sqrt(1.0 - abar) * x0


def normal_log_prob(x: RealLike, mean: RealLike, log_var: RealLike) -> jax.Array:
    """``log N(x; mean, exp(log_var))``, elementwise.

    ``-(log(2 pi) + log_var + (x - mean)^2 exp(-log_var)) / 2``: the Gaussian decoder and
    encoder of Kingma & Welling (arXiv 1312.6114, appendix C.2) and the Gaussian diffusion
    kernels of Sohl-Dickstein et al. (arXiv 1503.03585, eqs. 1 and 4). Sum over the event
    axes for a diagonal Gaussian.

    Args:
      x: the point.
      mean: the mean, broadcastable to ``x``.
      log_var: the log-variance, broadcastable to ``x``.
    """
    return -0.5 * (_LOG_2PI + log_var + jnp.square(x - mean) * jnp.exp(-log_var))


def normal_kl(mean1: RealLike, log_var1: RealLike, mean2: RealLike, log_var2: RealLike) -> jax.Array:
    """``KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2)))`` in nats, elementwise.

    ``(log_var2 - log_var1 + exp(log_var1 - log_var2) + (mean1 - mean2)^2 exp(-log_var2) - 1) / 2``:
    the terms ``L_{t-1}`` and ``L_T`` of the DDPM bound (Ho et al., arXiv 2006.11239,
    eq. 5) and the KL terms of Sohl-Dickstein et al.'s bound (arXiv 1503.03585, eq. 14).
    Sum over the event axes for diagonal Gaussians.

    Args:
      mean1: the mean of the first Gaussian.
      log_var1: its log-variance.
      mean2: the mean of the second Gaussian.
      log_var2: its log-variance.
    """
    return 0.5 * (log_var2 - log_var1 + jnp.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * jnp.exp(-log_var2) - 1.0)


def standard_normal_kl(mean: RealLike, log_var: RealLike) -> jax.Array:
    """``KL(N(mean, exp(log_var)) || N(0, 1))`` in nats, elementwise.

    ``-(1 + log_var - mean^2 - exp(log_var)) / 2``, the analytic KL term of the SGVB
    estimator (Kingma & Welling, arXiv 1312.6114, eq. 10 and appendix B); ``normal_kl``
    against a zero mean and log-variance, which agrees with that closed form to float32
    round-off.

    Args:
      mean: the mean.
      log_var: the log-variance, broadcastable to ``mean``.
    """
    return normal_kl(mean, log_var, 0.0, 0.0)


def normal_entropy(log_var: Real) -> Real:
    """``H(N(mean, exp(log_var))) = (log(2 pi e) + log_var) / 2`` in nats, elementwise.

    The entropies ``H_q(X_T | X_0)``, ``H_q(X_1 | X_0)`` and ``H_p(X_T)`` of Gaussian
    diffusion (Sohl-Dickstein et al., arXiv 1503.03585, eq. 14 and appendix B). Sum over
    the event axes for a diagonal Gaussian.

    Args:
      log_var: the log-variance.
    """
    return 0.5 * (_LOG_2PI + 1.0 + log_var)


def discretized_gaussian_log_likelihood(x: RealLike, mean: RealLike, log_scale: RealLike) -> jax.Array:
    """``log p(x_0 | x_1)`` of the discretised Gaussian decoder, elementwise.

    Ho et al. (arXiv 2006.11239, eq. 13): ``x`` is on the 256 levels ``2k/255 - 1`` of
    [-1, 1]; each level owns the bin ``[x - 1/255, x + 1/255]``, with the end bins extended
    to -inf and +inf, and its probability is the Gaussian mass of its bin. The end bins use
    the log-CDF and the log of the complementary CDF, as in the reference code; inner bins
    above the mean use the upper-tail CDFs, which do not cancel in float32.

    Args:
      x: data on the 256 levels.
      mean: decoder mean, broadcastable to ``x``.
      log_scale: log standard deviation, broadcastable to ``x``.
    """
    centred = x - mean
    inv_std = jnp.exp(-log_scale)
    upper = inv_std * (centred + _BIN_HALF_WIDTH)
    lower = inv_std * (centred - _BIN_HALF_WIDTH)
    ndtr = jax.scipy.special.ndtr
    # Above the mean both CDFs are near 1 and their difference cancels in float32, so
    # the bin mass is taken from the mirrored (upper-tail) CDFs there.
    mass = jnp.where(centred > 0, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
    log_cdf_upper = jax.scipy.special.log_ndtr(upper)
    log_one_minus_cdf_lower = jax.scipy.special.log_ndtr(-lower)
    log_mass = jnp.log(jnp.maximum(mass, 1e-12))
    return jnp.where(x < -0.999, log_cdf_upper, jnp.where(x > 0.999, log_one_minus_cdf_lower, log_mass))


def bernoulli_log_prob(x: ArrayLike, logits: ArrayLike) -> jax.Array:
    """``log Bern(x; sigmoid(logits)) = x logits - softplus(logits)``, elementwise.

    The Bernoulli decoder of Kingma & Welling (arXiv 1312.6114, appendix C.1),
    ``x log p + (1 - x) log(1 - p)`` with ``p = sigmoid(logits)``, written so that it is
    exact and finite for any finite logit; ``x`` may be any value in [0, 1] (grey levels).

    Args:
      x: the outcome, in [0, 1].
      logits: the log-odds ``log(p / (1 - p))``, broadcastable to ``x``.
    """
    x, logits = floating(x, "x"), floating(logits, "logits")
    dtype = jnp.result_type(x, logits)
    cdt = compute_dtype(dtype)
    log_odds = logits.astype(cdt)
    return (x.astype(cdt) * log_odds - jax.nn.softplus(log_odds)).astype(dtype)


def bernoulli_kl(logits_q: ArrayLike, logits_p: ArrayLike = 0.0) -> jax.Array:
    """``KL(Bern(sigmoid(logits_q)) || Bern(sigmoid(logits_p)))`` in nats, elementwise.

    ``q (log q - log p) + (1 - q) (log(1 - q) - log(1 - p))`` from log-sigmoids: the KL of
    the binary VAE (Jang et al., arXiv 1611.01144, sec. 4.2, against ``logits_p = 0``) and
    of the binomial diffusion's bound (Sohl-Dickstein et al., arXiv 1503.03585, eq. 14).

    Args:
      logits_q: the log-odds of the first distribution.
      logits_p: the log-odds of the second, broadcastable to ``logits_q``; default 0,
        the uniform Bernoulli prior.

    Returns:
      The KL, in the dtype of ``logits_q``.
    """
    logits_q = floating(logits_q, "logits_q")
    x = logits_q.astype(compute_dtype(logits_q.dtype))
    prior = jnp.asarray(logits_p, x.dtype)
    q = jax.nn.sigmoid(x)
    kl = q * (jax.nn.log_sigmoid(x) - jax.nn.log_sigmoid(prior))
    kl += (1.0 - q) * (jax.nn.log_sigmoid(-x) - jax.nn.log_sigmoid(-prior))
    return kl.astype(logits_q.dtype)


def bernoulli_entropy(logits: ArrayLike) -> jax.Array:
    """``H(Bern(sigmoid(logits))) = -p log p - (1 - p) log(1 - p)`` in nats, elementwise.

    From log-sigmoids, so exact for large ``|logits|``: the entropies ``H_q(X_T | X_0)`` and
    ``H_q(X_1 | X_0)`` of binomial diffusion (Sohl-Dickstein et al., arXiv 1503.03585,
    eq. 14 and appendix B).

    Args:
      logits: the log-odds.
    """
    logits = floating(logits, "logits")
    x = logits.astype(compute_dtype(logits.dtype))
    # sigmoid(-x), not 1 - sigmoid(x), which cancels for large x.
    return (-(jax.nn.sigmoid(x) * jax.nn.log_sigmoid(x) + jax.nn.sigmoid(-x) * jax.nn.log_sigmoid(-x))).astype(logits.dtype)


def masked_log_softmax(x: jax.Array, mask: jax.Array, axis: int, temperature: ArrayLike = 1.0) -> jax.Array:
    """``log_softmax(x / temperature)`` over the entries where ``mask`` holds; 0 elsewhere.

    The log-probabilities of a categorical distribution whose masked classes have zero
    probability. Double ``where``: masked entries never reach the division, ``exp`` or a
    difference of infinities, so their gradients (also the temperature's) are exact zeros,
    not NaN.

    Args:
      x: logits.
      mask: where the classes exist, the shape of ``x``.
      axis: the class axis.
      temperature: divides the logits (Jang et al., arXiv 1611.01144, eq. 1).
    """
    x = jnp.where(mask, x, 0.0) / temperature
    shift = lax.stop_gradient(jnp.max(jnp.where(mask, x, -jnp.inf), axis=axis, keepdims=True))
    shifted = jnp.where(mask, x - shift, 0.0)
    lse = jnp.log(jnp.sum(jnp.where(mask, jnp.exp(shifted), 0.0), axis=axis, keepdims=True))
    return jnp.where(mask, shifted - lse, 0.0)


def categorical_log_prob(one_hot: ArrayLike, logits: ArrayLike, *, axis: int = -1) -> jax.Array:
    """``log q(z) = sum_i z_i log softmax(logits)_i`` of a one-hot sample z, reduced over ``axis``.

    The log q of the score-function estimator (Williams 1992; Jang et al., arXiv
    1611.01144, sec. 3.1). A sample on a masked class gives ``-inf``; samples on finite
    classes have finite values and gradients.

    Args:
      one_hot: the sample, the shape of ``logits``.
      logits: unnormalised log-probabilities; ``-inf`` masks a class.
      axis: the class axis.
    """
    logits, axis = categorical_logits(logits, axis)
    z = floating(one_hot, "one_hot")
    if z.shape != logits.shape:
        raise ValueError(f"one_hot: expected the shape of logits {logits.shape}, got {z.shape}")
    cdt = compute_dtype(jnp.result_type(z, logits))
    mask = logits != -jnp.inf
    log_p = masked_log_softmax(logits.astype(cdt), mask, axis)
    terms = jnp.where(mask, z.astype(cdt) * log_p, jnp.where(z != 0, -jnp.inf, 0.0))
    return jnp.sum(terms, axis=axis).astype(jnp.result_type(z, logits))


def categorical_kl_uniform(logits: ArrayLike, *, axis: int = -1) -> jax.Array:
    """``KL(Cat(softmax(logits)) || Uniform(k)) = sum_i p_i log p_i + log k``, reduced over ``axis``.

    The KL term of the categorical VAE ELBO (Jang et al., arXiv 1611.01144, sec. 4.2). k
    counts the finite classes; masked ones contribute ``0 log 0 = 0``.

    Args:
      logits: unnormalised log-probabilities; ``-inf`` masks a class.
      axis: the class axis.
    """
    logits, axis = categorical_logits(logits, axis)
    x, mask = logits.astype(compute_dtype(logits.dtype)), logits != -jnp.inf
    log_p = masked_log_softmax(x, mask, axis)
    neg_entropy = jnp.sum(jnp.where(mask, jnp.exp(log_p) * log_p, 0.0), axis=axis)
    return (neg_entropy + jnp.log(jnp.sum(mask, axis=axis, dtype=x.dtype))).astype(logits.dtype)


def categorical_kl(logits_q: ArrayLike, logits_p: ArrayLike, *, axis: int = -1) -> jax.Array:
    """``KL(Cat(softmax(logits_q)) || Cat(softmax(logits_p))) = sum_i q_i (log q_i - log p_i)``.

    Reduced over ``axis``: the cluster term ``sum_c gamma_c log(gamma_c / pi_c)`` of VaDE's
    ELBO (Jiang et al., arXiv 1611.05148, eq. 5). Both arguments are unnormalised
    log-probabilities (any constant shift cancels); classes with ``q_i = 0`` add nothing.

    Args:
      logits_q: the first distribution's logits.
      logits_p: the second's, broadcastable to ``logits_q``.
      axis: the class axis.
    """
    logits_q = floating(logits_q, "logits_q")
    if logits_q.ndim == 0:
        raise ValueError("logits_q: expected at least one (class) dimension, got a scalar")
    cdt = compute_dtype(logits_q.dtype)
    log_q = jax.nn.log_softmax(logits_q.astype(cdt), axis=axis)
    log_p = jax.nn.log_softmax(jnp.broadcast_to(jnp.asarray(logits_p, cdt), log_q.shape), axis=axis)
    q = jnp.exp(log_q)
    return jnp.sum(jnp.where(q > 0, q * (log_q - log_p), 0.0), axis=axis).astype(logits_q.dtype)


def _log_clamped(x: jax.Array) -> jax.Array:
    """log(x) with x clamped to the smallest normal float, so underflowed samples stay finite."""
    return jnp.log(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


def _density_args(y: ArrayLike, logits: jax.Array, temperature: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array, jnp.dtype]:
    """Validated ``y``, logits and tau in the compute dtype, and the result dtype."""
    check_temperature(temperature)
    y = floating(y, "y")
    if y.shape != logits.shape:
        raise ValueError(f"y: expected the shape of logits {logits.shape}, got {y.shape}")
    cdt = compute_dtype(jnp.result_type(y, logits))
    return y.astype(cdt), logits.astype(cdt), jnp.asarray(temperature, cdt), jnp.result_type(y, logits)


def gumbel_softmax_log_prob(y: ArrayLike, logits: ArrayLike, *, temperature: ArrayLike, axis: int = -1) -> jax.Array:
    """Log-density of the Gumbel-softmax distribution, Jang et al., arXiv 1611.01144, eq. (2).

    ``p(y) = Gamma(k) tau^(k-1) (sum_i pi_i / y_i^tau)^(-k) prod_i pi_i / y_i^(tau+1)``, with
    respect to Lebesgue measure on the first k-1 coordinates of the simplex, computed in log
    space with a logsumexp. Masked classes (logit ``-inf``) are absent: k counts the finite
    classes only and their ``y`` entries are ignored. Entries of ``y`` that underflowed to
    0 are clamped to the smallest normal float.

    Args:
      y: points on the simplex, the shape of ``logits``.
      logits: unnormalised log pi; ``-inf`` masks a class.
      temperature: tau > 0, a scalar.
      axis: the class axis, reduced over.

    Returns:
      log p(y), of shape ``logits.shape`` without ``axis``.
    """
    logits, axis = categorical_logits(logits, axis)
    y, x, tau, dtype = _density_args(y, logits, temperature)
    mask = logits != -jnp.inf
    log_pi = masked_log_softmax(x, mask, axis)
    log_y = _log_clamped(jnp.where(mask, y, 1.0))
    k = jnp.sum(mask, axis=axis, dtype=x.dtype)
    lse = jax.nn.logsumexp(jnp.where(mask, log_pi - tau * log_y, 0.0), axis=axis, where=mask)
    total = jnp.sum(jnp.where(mask, log_pi - (tau + 1.0) * log_y, 0.0), axis=axis)
    out = lax.lgamma(k) + (k - 1.0) * jnp.log(tau) - k * lse + total
    return out.astype(dtype)


def relaxed_bernoulli_log_prob(y: ArrayLike, logits: ArrayLike, *, temperature: ArrayLike) -> jax.Array:
    """Elementwise log-density of the Binary Concrete, Maddison et al., arXiv 1611.00712.

    ``p(y) = tau a y^(-tau-1) (1-y)^(-tau-1) / (a y^(-tau) + (1-y)^(-tau))^2`` with
    ``a = exp(logits)``; equal to ``gumbel_softmax_log_prob`` of ``(1-y, y)`` with logits
    ``(0, logits)``.

    Args:
      y: points in (0, 1), the shape of ``logits``.
      logits: the log-odds.
      temperature: tau > 0, a scalar.
    """
    logits = floating(logits, "logits")
    y, x, tau, dtype = _density_args(y, logits, temperature)
    log_y, log_1my = _log_clamped(y), _log_clamped(1.0 - y)
    out = jnp.log(tau) + x - (tau + 1.0) * (log_y + log_1my) - 2.0 * jnp.logaddexp(x - tau * log_y, -tau * log_1my)
    return out.astype(dtype)


__all__ = [
    "bernoulli_entropy",
    "bernoulli_kl",
    "bernoulli_log_prob",
    "categorical_kl",
    "categorical_kl_uniform",
    "categorical_log_prob",
    "discretized_gaussian_log_likelihood",
    "eps_from_v",
    "eps_from_x0",
    "gumbel_softmax_log_prob",
    "masked_log_softmax",
    "normal_entropy",
    "normal_kl",
    "normal_log_prob",
    "relaxed_bernoulli_log_prob",
    "standard_normal_kl",
    "v_from_eps_x0",
    "x0_from_eps",
    "x0_from_v",
]
