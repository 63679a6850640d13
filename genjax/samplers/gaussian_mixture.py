"""An isotropic Gaussian mixture with its exact diffusion denoiser and its exact reward tilt.

For toy experiments on inference-time search (Ma et al. 2025, arXiv 2501.09732; Singhal
et al. 2025, arXiv 2501.06848) every quantity should be known in closed form:

* the data density ``p(x) = sum_k w_k N(x; mu_k, s^2 I)`` (``GaussianMixture.log_prob``);
* the exact noise prediction of the DDPM forward process ``x_t = sqrt(abar) x_0 +
  sqrt(1 - abar) eps`` on it (``GaussianMixture.denoiser``). The marginal of ``x_t`` is
  the mixture ``sum_k w_k N(sqrt(abar) mu_k, (abar s^2 + 1 - abar) I)``, so with the
  posterior over components ``pi_k(x_t) = softmax_k(log w_k - |x_t - sqrt(abar) mu_k|^2
  / (2 v))``, ``v = abar s^2 + 1 - abar``, the score is ``-sum_k pi_k (x_t - sqrt(abar)
  mu_k) / v`` and ``eps*(x_t) = E[eps | x_t] = -sqrt(1 - abar) score``;
* the tilted target of a Gaussian log-density reward (``GaussianMixture.tilted``). With
  ``r(x) = log N(x; c, tau^2 I)`` and ``lambda > 0``, ``p(x) exp(lambda r(x)) / Z`` is
  again an isotropic mixture: each component times ``exp(-lambda |x - c|^2 / (2
  tau^2))`` is a Gaussian of precision ``P = 1 / s^2 + lambda / tau^2``, mean ``(mu_k /
  s^2 + lambda c / tau^2) / P``, and mass ``w_k N(mu_k; c, (s^2 + tau^2 / lambda) I)``
  up to a factor common to all ``k`` (the Gaussian integral of the product), so the new
  weights are ``w'_k ∝ w_k N(mu_k; c, (s^2 + tau^2 / lambda) I)``.

The same formulas serve the tests of the searches and the ``search_toy`` experiment.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from genjax.samplers.base import Denoiser, Prediction, abar_at, check_alphas_cumprod
from genjax.samplers.verifiers import Verifier


def _log_normal(x: jax.Array, mean: jax.Array, var: jax.Array | float) -> jax.Array:
    """``log N(x; mean, var I)`` over the last axis (broadcasting)."""
    d = x.shape[-1]
    return -0.5 * jnp.sum((x - mean) ** 2, -1) / var - 0.5 * d * jnp.log(2 * jnp.pi * jnp.asarray(var, jnp.float32))


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """``p(x) = sum_k w_k N(x; mu_k, s^2 I)``: density, samples, exact denoiser and tilt.

    Attributes:
      means: ``[K, D]`` component means ``mu_k`` (float64 numpy).
      std: the common per-coordinate standard deviation ``s > 0``.
      log_weights: ``[K]`` normalised log mixture weights ``log w_k`` (uniform when built
        with ``None``).

    Raises:
      ValueError: naming ``means``, ``std`` or ``log_weights`` when malformed.
    """

    means: np.ndarray
    std: float
    log_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        means = np.asarray(self.means, np.float64)
        if means.ndim != 2 or means.shape[0] < 1:
            raise ValueError(f"means: expected [K, D] with K >= 1, got shape {means.shape}")
        if not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"std: expected a positive finite float, got {self.std!r}")
        k = means.shape[0]
        logw = np.full((k,), -math.log(k)) if self.log_weights is None else np.asarray(self.log_weights, np.float64)
        if logw.shape != (k,) or not np.all(np.isfinite(logw)):
            raise ValueError(f"log_weights: expected {k} finite values, got shape {logw.shape}")
        logw = logw - np.logaddexp.reduce(logw)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "std", float(self.std))
        object.__setattr__(self, "log_weights", logw)

    @property
    def weights(self) -> np.ndarray:
        """The mixture weights ``w_k``, ``[K]``."""
        assert self.log_weights is not None
        return np.exp(self.log_weights)

    def log_prob(self, x: ArrayLike) -> jax.Array:
        """``log p(x)`` for ``x [..., D]``; float32 ``[...]``."""
        x = jnp.asarray(x, jnp.float32)
        comp = _log_normal(x[..., None, :], self._means_like(x), self.std**2)
        logw = jnp.reshape(jnp.asarray(self.log_weights, jnp.float32), (1,) * (x.ndim - 1) + (-1,))
        return jax.nn.logsumexp(comp + logw, -1)

    def _means_like(self, x: jax.Array) -> jax.Array:
        """The means ``[1, ..., 1, K, D]`` broadcastable against ``x[..., None, :]``."""
        return jnp.reshape(jnp.asarray(self.means, jnp.float32), (1,) * (x.ndim - 1) + self.means.shape)

    def sample(self, key: jax.Array, num: int) -> jax.Array:
        """``num`` exact samples, ``[num, D]`` float32."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.asarray(self.log_weights, jnp.float32), shape=(num,))
        noise = jax.random.normal(k_noise, (num, self.means.shape[1]), jnp.float32)
        return jnp.asarray(self.means, jnp.float32)[comp] + self.std * noise

    def nearest(self, x: ArrayLike) -> jax.Array:
        """Index of the nearest component mean of each point of ``x [..., D]``, int32 ``[...]``."""
        x = jnp.asarray(x, jnp.float32)
        dist = jnp.sum((x[..., None, :] - self._means_like(x)) ** 2, -1)
        return jnp.argmin(dist, -1).astype(jnp.int32)

    def denoiser(self, alphas_cumprod: ArrayLike) -> Denoiser:
        """The exact ``eps`` prediction ``E[eps | x_t]`` of the DDPM forward process.

        ``abar`` at a (possibly non-integer) time ``t`` is ``abar_at(alphas_cumprod, t)``,
        as the samplers read it. See the module docstring for the formula.

        Args:
          alphas_cumprod: ``abar`` table ``[T]``.

        Returns:
          ``denoiser(x_t [D], t) -> Prediction(eps=...)`` for one example.
        """
        table = check_alphas_cumprod(alphas_cumprod)
        means = jnp.asarray(self.means, jnp.float32)
        logw = jnp.asarray(self.log_weights, jnp.float32)
        var0 = self.std**2

        def denoise(x_t: jax.Array, t: jax.Array) -> Prediction:
            a = abar_at(table, t)
            var = a * var0 + 1 - a
            diff = x_t[None] - jnp.sqrt(a) * means
            post = jax.nn.softmax(logw - jnp.sum(diff**2, -1) / (2 * var))
            score = -jnp.sum(post[:, None] * diff, 0) / var
            return Prediction(eps=-jnp.sqrt(1 - a) * score)

        return denoise

    def tilted(self, centre: ArrayLike, tau: float, lam: float) -> GaussianMixture:
        """The mixture ``p(x) exp(lam r(x)) / Z`` for ``r(x) = log N(x; centre, tau^2 I)``.

        Closed form (module docstring): std ``1 / sqrt(1 / s^2 + lam / tau^2)``, means
        ``(mu_k / s^2 + lam c / tau^2) s'^2``, log-weights ``log w_k + log N(mu_k; c, (s^2 +
        tau^2 / lam) I)`` normalised. This is the target of Feynman-Kac steering with reward
        ``r`` and ``lambda = lam`` (Singhal et al. 2025, arXiv 2501.06848, Sec. 3).

        Args:
          centre: ``c``, ``[D]``.
          tau: the reward's standard deviation, ``> 0``.
          lam: the tilt ``lambda > 0``.

        Returns:
          The tilted ``GaussianMixture``.

        Raises:
          ValueError: naming ``centre``, ``tau`` or ``lam``.
        """
        c = np.asarray(centre, np.float64)
        if c.shape != (self.means.shape[1],):
            raise ValueError(f"centre: expected shape {(self.means.shape[1],)}, got {c.shape}")
        for name, value in (("tau", tau), ("lam", lam)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive finite float, got {value!r}")
        s2, t2 = self.std**2, tau**2
        var = 1.0 / (1.0 / s2 + lam / t2)
        means = (self.means / s2 + lam * c / t2) * var
        spread = s2 + t2 / lam
        assert self.log_weights is not None
        logw = self.log_weights - 0.5 * np.sum((self.means - c) ** 2, -1) / spread
        return GaussianMixture(means, math.sqrt(var), logw)


def gaussian_log_reward(centre: ArrayLike, tau: float) -> Verifier:
    """The verifier ``r(x, condition) = log N(x; centre, tau^2 I)`` (condition ignored).

    With ``GaussianMixture.tilted(centre, tau, lam)`` it gives the exact target of
    ``fk_steering`` with ``lam`` (Singhal et al. 2025, arXiv 2501.06848).

    Args:
      centre: ``[D]``.
      tau: standard deviation, ``> 0``.

    Returns:
      ``score(x, condition) -> float32 scalar``.

    Raises:
      ValueError: naming ``tau`` when not positive.
    """
    c = jnp.asarray(centre, jnp.float32)
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau: expected a positive finite float, got {tau!r}")

    def score(x: jax.Array, condition: Any) -> jax.Array:
        del condition
        return _log_normal(jnp.asarray(x, jnp.float32), c, tau**2)

    return score


__all__ = ["GaussianMixture", "gaussian_log_reward"]
