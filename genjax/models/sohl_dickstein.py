"""Diffusion probabilistic models of Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli,
"Deep Unsupervised Learning using Nonequilibrium Thermodynamics", arXiv:1503.03585
(ICML 2015), for the paper's two toy problems (section 3.1, Table 1).

A forward diffusion ``q`` turns data ``x_0`` into noise in ``T`` steps (eqs. 1-3)

    q(x_{0:T}) = q(x_0) prod_{t=1}^T q(x_t | x_{t-1}),

and a learned reverse diffusion ``p`` of the same functional form runs it backwards
(eqs. 4-5): ``p(x_{0:T}) = pi(x_T) prod_t p(x_{t-1} | x_t)``, with ``pi`` the
stationary distribution of the forward kernel. Training maximises the lower bound of
eq. 14 on the log-likelihood,

    K = - sum_{t=2}^T E_q[ D_KL( q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t) ) ]
        + H_q(X_T | X_0) - H_q(X_1 | X_0) - H_p(X_T),

in which every posterior ``q(x_{t-1} | x_t, x_0)``, KL and entropy is in closed form.

Two families:

* ``GaussianDiffusion`` (sections 2.1, 2.4.1, Table App.1): ``q(x_t | x_{t-1}) =
  N(x_{t-1} sqrt(1 - beta_t), beta_t I)``, ``pi = N(0, I)``, and ``p(x_{t-1} | x_t) =
  N(mu, diag(Sigma))`` with mean and variance from an MLP of ``(x_t, t)``. The variance
  ``beta_1`` of the first step is fixed; ``beta_2..T`` are learned by gradient ascent on
  ``K`` when ``learn_beta`` (the paper's choice for Gaussian diffusion, section 2.4.1).
* ``BinomialDiffusion`` (Table App.1): ``q(x_t | x_{t-1}) = B(x_t; x_{t-1} (1 -
  beta_t) + beta_t / 2)`` on binary vectors, ``pi = B(0.5)``, the paper's fixed
  schedule ``beta_t = (T - t + 1)^{-1}`` (which erases a fraction ``1/T`` of the
  signal per step), and ``p(x_{t-1} | x_t) = B(x_{t-1}; f_b(x_t, t))`` from an MLP.

**Reverse parameterisation.** The network outputs a *perturbation* of the reversal of
the forward step with respect to ``pi`` (the reference implementation does the same for
the Gaussian family): for the Gaussian family

    mu = sqrt(1 - beta_t) x_t + sqrt(beta_t) f_mu(x_t, t),
    Sigma = sigmoid(logit(beta_t) + f_Sigma(x_t, t)),

and for the binomial family the probability that bit i flips on the reverse step is
``sigmoid(logit(beta_t / 2) + f_i(x_t, t))``. The last layer starts at zero, so the
initial model is the exact time reversal of the forward chain started at ``pi``: its
marginal is ``p(x_0) = pi(x_0)`` and its bound is tight, ``K = log pi(x_0)``.

**The last step and the exact bound.** As in the paper (Appendix B.2, "edge effect"),
``p(x_0 | x_1)`` is not learned: it is the reversal of the forward step,
``q(x_1 | x_0) pi(x_0) / pi(x_1)``. With that choice and ``p(x_T) = pi`` the exact
variational bound ``E_q[log p(x_{0:T}) - log q(x_{1:T} | x_0)]`` is eq. 14 plus two
terms, ``E_q[log pi(x_T)] + H_p(X_T)`` and ``E_q[log pi(x_0) - log pi(x_1)]``, both in
closed form. For the binomial family they vanish (``pi`` is uniform); for the Gaussian
family they vanish in expectation when ``E|x_0|^2 = data_dim`` (unit-variance data, the
paper's convention), and otherwise are ``O(beta_1 + alpha_bar_T)``. ``bound`` returns
both: ``k`` (exact) and ``k_eq14`` (the paper's formula).

**Oracle kernels (a diagnostic).** When the data distribution is known (a finite set of
binary sequences, or a mixture of Gaussians), ``oracle_reverse`` gives the best kernels of
each family for a fixed schedule: those matching the per-bit marginals (Bernoulli) or the
mean and variance (Gaussian) of the exact reverse kernel ``q(x_{t-1} | x_t)``. Passed as
``reverse=`` to ``bound``, they give the largest K any network could reach.

All math is written for one example (``x_0`` of shape ``[data_dim]``) and batched
with ``jax.vmap``; quantities are in nats (divide by ``log 2`` for bits).
The reverse network is ``genjax.nn.sohl_dickstein_net.ReverseMLP``; the paper's toy
data are ``genjax.data.toy_sequences`` (heartbeat) and ``genjax.data.toy2d.SwissRoll``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, cast, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from genjax._checks import check_example_keys
from genjax.distributions import (
    bernoulli_entropy,
    bernoulli_kl,
    bernoulli_log_prob,
    normal_entropy,
    normal_kl,
    normal_log_prob,
)
from genjax.nn.mlp import get_activation
from genjax.nn.module import apply
from genjax.nn.sohl_dickstein_net import ReverseMLP
from genjax.types import Params

ReverseFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]  # (x_t, t) -> (mean, log_var)
FlipFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t, t) -> reverse flip logits
LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- checks


def check_num_steps(num_steps: int, name: str = "num_steps") -> None:
    """Raises ValueError unless ``num_steps`` (the trajectory length T) is an int >= 1."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"{name}: expected an int T >= 1, got {num_steps!r}")


def check_betas(betas: Sequence[float] | np.ndarray, *, allow_one: bool, name: str = "betas") -> np.ndarray:
    """Checks a diffusion schedule and returns it as float64.

    Args:
      betas: ``beta_1..beta_T``.
      allow_one: whether ``beta_t = 1`` is allowed (binomial diffusion: the paper's
        schedule ends with ``beta_T = 1``); ``beta_t`` must otherwise lie in (0, 1).
      name: the argument's name for the error message.

    Raises:
      ValueError: empty, not 1D, or a value outside (0, 1) (or (0, 1]).
    """
    arr = np.asarray(betas, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1D sequence of beta_t, got shape {arr.shape}")
    hi_ok = arr <= 1.0 if allow_one else arr < 1.0
    if not np.all((arr > 0.0) & hi_ok):
        bad = arr[~((arr > 0.0) & hi_ok)][0]
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"{name}: every beta_t must lie in {interval}, got {bad!r}")
    return arr


def check_data(x0: jax.Array | np.ndarray, data_dim: int, name: str = "x0") -> None:
    """Raises ValueError unless ``x0`` has shape ``[data_dim]`` or ``[batch, data_dim]``."""
    shape = tuple(np.shape(x0))
    if len(shape) not in (1, 2) or shape[-1] != data_dim:
        raise ValueError(f"{name}: expected shape [data_dim={data_dim}] or [batch, {data_dim}], got {shape}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _check_open_unit(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name}: expected a float in (0, 1), got {value!r}")


# -------------------------------------------------------------------- schedules


def binomial_betas(num_steps: int) -> np.ndarray:
    """The paper's binomial schedule ``beta_t = (T - t + 1)^{-1}``, t = 1..T (float64).

    With it the signal left after t steps, ``prod_{s<=t} (1 - beta_s) = 1 - t / T``,
    decays linearly and ``beta_T = 1`` makes ``q(x_T | x_0)`` exactly ``B(0.5)``.
    """
    check_num_steps(num_steps)
    t = np.arange(1, num_steps + 1, dtype=np.float64)
    return 1.0 / (num_steps - t + 1.0)


def log_snr_betas(num_steps: int, beta_1: float, final_alpha_bar: float) -> np.ndarray:
    """A Gaussian schedule whose log signal-to-noise ratio falls linearly in t (float64).

    ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` goes from ``1 - beta_1`` at t = 1 to
    ``final_alpha_bar`` at t = T with ``log(alpha_bar / (1 - alpha_bar))`` linear in t.
    It is the starting point of the learned schedule of ``GaussianDiffusion``.

    Args:
      num_steps: T.
      beta_1: variance of the first step.
      final_alpha_bar: fraction of the data's variance left at t = T.
    """
    check_num_steps(num_steps)
    _check_open_unit("beta_1", beta_1)
    _check_open_unit("final_alpha_bar", final_alpha_bar)
    if num_steps == 1:
        return np.array([beta_1])
    if final_alpha_bar >= 1.0 - beta_1:
        raise ValueError(f"final_alpha_bar: expected a value below 1 - beta_1 = {1.0 - beta_1}, got {final_alpha_bar!r}")
    start, end = math.log((1.0 - beta_1) / beta_1), math.log(final_alpha_bar / (1.0 - final_alpha_bar))
    log_snr = np.linspace(start, end, num_steps)
    log_alpha_bar = -np.logaddexp(0.0, -log_snr)  # log sigmoid
    betas = -np.expm1(np.diff(log_alpha_bar, prepend=0.0))
    betas[0] = beta_1
    return betas


# ------------------------------------------------------------- shared helpers


def _log_alpha_bar(betas: jax.Array) -> jax.Array:
    """``log prod_{s<=t} (1 - beta_s)`` for t = 1..T (``-inf`` after a ``beta_t = 1``)."""
    return jnp.cumsum(jnp.log1p(-betas))


def _step_keys(key: jax.Array, num_steps: int) -> jax.Array:
    return jax.random.split(key, num_steps)


def _uniform_step(key: jax.Array, num_steps: int) -> jax.Array:
    """One ``t`` uniform on {2, ..., T} (T >= 2)."""
    return jax.random.randint(key, (), 2, num_steps + 1)


# ----------------------------------------------------------- Gaussian diffusion


@dataclasses.dataclass(frozen=True)
class GaussianDiffusion:
    """Gaussian diffusion probabilistic model (sections 2.1-2.4, Table App.1).

    Attributes:
      data_dim: dimension of ``x``.
      num_steps: trajectory length T (40 for the paper's swiss roll).
      beta_1: the fixed variance of the first forward step (also the variance of the
        fixed last reverse step ``p(x_0 | x_1)``; it sets the model's resolution).
      final_alpha_bar: ``alpha_bar_T`` of the initial schedule (``log_snr_betas``).
      learn_beta: learn ``beta_2..T`` (as offsets of their logits) by ascent on K.
      hidden: hidden widths of the reverse MLP.
      num_basis: time bumps per axis.
      activation: hidden activation.
    """

    data_dim: int = 2
    num_steps: int = 40
    beta_1: float = 1e-4
    final_alpha_bar: float = 1e-3
    learn_beta: bool = True
    hidden: tuple[int, ...] = (128, 128)
    num_basis: int = 8
    activation: str = "tanh"

    def __post_init__(self) -> None:
        _check_positive_int("data_dim", self.data_dim)
        check_num_steps(self.num_steps)
        _check_open_unit("beta_1", self.beta_1)
        _check_open_unit("final_alpha_bar", self.final_alpha_bar)
        log_snr_betas(self.num_steps, self.beta_1, self.final_alpha_bar)  # validates the pair
        get_activation(self.activation)

    @property
    def net(self) -> ReverseMLP:
        """The reverse network (2 outputs per coordinate: mean and variance offsets)."""
        return ReverseMLP(self.data_dim, 2, self.num_steps, tuple(self.hidden), self.num_basis, self.activation)

    def base_betas(self) -> np.ndarray:
        """The initial (or, without ``learn_beta``, fixed) schedule."""
        return log_snr_betas(self.num_steps, self.beta_1, self.final_alpha_bar)

    def init(self, key: jax.Array) -> Params:
        """Parameters: ``{"net": ...}`` and, with ``learn_beta``, ``{"beta_offset": [T-1]}``."""
        params = {"net": jax.jit(self.net.init)(key, jnp.zeros((self.data_dim,)), jnp.ones((), jnp.int32))}
        if self.learn_beta:
            params["beta_offset"] = jnp.zeros((self.num_steps - 1,), jnp.float32)
        return params

    def betas(self, params: Params) -> jax.Array:
        """``beta_1..beta_T`` [T]: ``beta_1`` fixed, ``beta_t = sigmoid(logit(base_t) + offset_t)``."""
        base = self.base_betas()
        if not self.learn_beta or self.num_steps == 1:
            return jnp.asarray(base, jnp.float32)
        logits = jnp.asarray(np.log(base[1:]) - np.log1p(-base[1:]), jnp.float32) + params["beta_offset"]
        return jnp.concatenate([jnp.full((1,), self.beta_1, jnp.float32), jax.nn.sigmoid(logits)])

    # -- forward process

    def forward_marginal(self, betas: jax.Array, x0: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and (scalar) variance of ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``, t >= 1."""
        log_abar = _log_alpha_bar(betas)[t - 1]
        return jnp.exp(0.5 * log_abar) * x0, -jnp.expm1(log_abar)

    def posterior(self, betas: jax.Array, x0: jax.Array, x_t: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and (scalar) variance of ``q(x_{t-1} | x_t, x_0)``, for 2 <= t <= T.

        With ``abar_t = prod_{s<=t} (1 - beta_s)``:
        ``var = beta_t (1 - abar_{t-1}) / (1 - abar_t)`` and
        ``mean = [sqrt(abar_{t-1}) beta_t x_0 + sqrt(1 - beta_t) (1 - abar_{t-1}) x_t] / (1 - abar_t)``.
        """
        log_abar = _log_alpha_bar(betas)
        beta_t = betas[t - 1]
        la_prev, la_t = log_abar[t - 2], log_abar[t - 1]
        one_m_prev, one_m_t = -jnp.expm1(la_prev), -jnp.expm1(la_t)
        mean = (jnp.exp(0.5 * la_prev) * beta_t * x0 + jnp.sqrt(1.0 - beta_t) * one_m_prev * x_t) / one_m_t
        return mean, beta_t * one_m_prev / one_m_t

    # -- reverse process

    def reverse(self, params: Params, betas: jax.Array, x_t: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log variance [data_dim] of the learned ``p(x_{t-1} | x_t)``, 2 <= t <= T."""
        out = apply(self.net, params["net"], ReverseMLP.__call__, x_t, t)
        beta_t = betas[t - 1]
        mean = jnp.sqrt(1.0 - beta_t) * x_t + jnp.sqrt(beta_t) * out[..., 0]
        log_var = jax.nn.log_sigmoid(jnp.log(beta_t) - jnp.log1p(-beta_t) + out[..., 1])
        return mean, log_var

    # -- the bound

    def _constant_terms(self, betas: jax.Array, x0: jax.Array) -> dict[str, jax.Array | float]:
        """The closed-form terms of the bound for one example (nats)."""
        d = self.data_dim
        log_abar_T = _log_alpha_bar(betas)[-1]
        h_T = d * normal_entropy(jnp.log(-jnp.expm1(log_abar_T)))
        h_1 = d * normal_entropy(jnp.log(betas[0]))
        h_p = d * normal_entropy(0.0)
        sq = jnp.sum(x0**2)
        # E_q[log pi(x_T) | x_0] and E_q[log pi(x_0) - log pi(x_1) | x_0] for pi = N(0, I).
        e_log_pi_T = -0.5 * d * jnp.log(2.0 * jnp.pi) - 0.5 * (jnp.exp(log_abar_T) * sq - d * jnp.expm1(log_abar_T))
        edge = -0.5 * betas[0] * (sq - d)
        return {"h_q_T": h_T, "h_q_1": h_1, "h_p_T": h_p, "e_log_pi_T": e_log_pi_T, "edge": edge}

    def kl_term(self, params: Params, betas: jax.Array, x0: jax.Array, t: jax.Array, key: jax.Array, reverse: ReverseFn | None = None) -> jax.Array:
        """``D_KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` at one ``x_t ~ q(x_t | x_0)``, 2 <= t <= T.

        ``reverse(x_t, t) -> (mean, log_var)`` replaces the learned kernel if given (e.g.
        ``oracle_reverse``).
        """
        mean_t, var_t = self.forward_marginal(betas, x0, t)
        x_t = mean_t + jnp.sqrt(var_t) * jax.random.normal(key, x0.shape, x0.dtype)
        mean_q, var_q = self.posterior(betas, x0, x_t, t)
        mean_p, log_var_p = self.reverse(params, betas, x_t, t) if reverse is None else reverse(x_t, t)
        return jnp.sum(normal_kl(mean_q, jnp.log(var_q), mean_p, log_var_p), axis=-1)

    def bound(self, params: Params, x0: jax.Array, key: jax.Array, reverse: ReverseFn | None = None) -> dict[str, jax.Array]:
        """The bound for one example with all ``T - 1`` KL terms (one ``x_t`` per t).

        Args:
          params: model parameters (the schedule, and the network unless ``reverse``).
          x0: one example [data_dim].
          key: PRNG key.
          reverse: optional replacement of the learned reverse kernel, see ``kl_term``.

        Returns:
          ``{"k": exact bound, "k_eq14": eq. 14, "kl_sum": sum of the KL terms}`` (nats).
        """
        check_data(x0, self.data_dim)
        betas = self.betas(params)
        c = self._constant_terms(betas, x0)
        if self.num_steps > 1:
            ts = jnp.arange(2, self.num_steps + 1)
            kls = jax.vmap(lambda t, k: self.kl_term(params, betas, x0, t, k, reverse))(ts, _step_keys(key, self.num_steps - 1))
            kl_sum = jnp.sum(kls)
        else:
            kl_sum = jnp.zeros(())
        k_eq14 = -kl_sum + c["h_q_T"] - c["h_q_1"] - c["h_p_T"]
        return {"k": k_eq14 + c["h_p_T"] + c["e_log_pi_T"] + c["edge"], "k_eq14": k_eq14, "kl_sum": kl_sum}

    def oracle_reverse(self, params: Params, centres: jax.Array, noise_var: float) -> ReverseFn:
        """The best diagonal-Gaussian reverse kernel for data ``q(x_0) = mean_j N(c_j, noise_var I)``.

        For a fixed schedule, ``E_q[KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))]`` is
        minimised, for every ``x_t``, by the Gaussian whose mean and per-coordinate
        variance match those of the exact reverse kernel ``q(x_{t-1} | x_t)``, here a
        mixture over the components j with weights ``q(j | x_t)``. The bound of this
        oracle is the largest K any network can reach with this ``beta`` schedule and
        diagonal Gaussian kernels (a diagnostic; it is not trained).

        Args:
          params: parameters holding the schedule.
          centres: ``[S, data_dim]`` component centres (equally weighted).
          noise_var: variance of every component.

        Returns:
          ``reverse(x_t, t) -> (mean, log_var)``.
        """
        betas = self.betas(params)
        log_abar = _log_alpha_bar(betas)
        centres = jnp.asarray(centres, jnp.float32)

        def reverse(x_t: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
            abar_t, abar_prev, beta_t = jnp.exp(log_abar[t - 1]), jnp.exp(log_abar[t - 2]), betas[t - 1]
            s_t = abar_t * noise_var - jnp.expm1(log_abar[t - 1])  # var of x_t given the component
            s_prev = abar_prev * noise_var - jnp.expm1(log_abar[t - 2])
            log_w = -0.5 * jnp.sum((x_t[None, :] - jnp.sqrt(abar_t) * centres) ** 2, axis=-1) / s_t
            w = jax.nn.softmax(log_w)
            # x_{t-1} | x_t, j is Gaussian: condition the pair (x_{t-1}, x_t) given component j.
            means = jnp.sqrt(abar_prev) * centres + jnp.sqrt(1.0 - beta_t) * s_prev / s_t * (x_t[None, :] - jnp.sqrt(abar_t) * centres)
            var_j = s_prev * beta_t / s_t
            mean = w @ means
            var = var_j + w @ (means - mean[None, :]) ** 2
            return mean, jnp.log(var)

        return reverse

    def stochastic_bound(self, params: Params, x0: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        """Unbiased one-sample estimate of ``bound`` (one t uniform on 2..T, times T - 1)."""
        check_data(x0, self.data_dim)
        betas = self.betas(params)
        c = self._constant_terms(betas, x0)
        if self.num_steps > 1:
            k_t, k_x = jax.random.split(key)
            kl_sum = (self.num_steps - 1) * self.kl_term(params, betas, x0, _uniform_step(k_t, self.num_steps), k_x)
        else:
            kl_sum = jnp.zeros(())
        k_eq14 = -kl_sum + c["h_q_T"] - c["h_q_1"] - c["h_p_T"]
        return {"k": k_eq14 + c["h_p_T"] + c["e_log_pi_T"] + c["edge"], "k_eq14": k_eq14, "kl_sum": kl_sum}

    def log_ratio(self, params: Params, x0: jax.Array, key: jax.Array) -> jax.Array:
        """One sample of ``log p(x_{0:T}) - log q(x_{1:T} | x_0)``, ``x_{1:T} ~ q`` (whose mean is K)."""
        check_data(x0, self.data_dim)
        betas = self.betas(params)

        def forward(x_prev: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            beta, k = inp
            x = jnp.sqrt(1.0 - beta) * x_prev + jnp.sqrt(beta) * jax.random.normal(k, x_prev.shape, x_prev.dtype)
            log_q = jnp.sum(normal_log_prob(x, jnp.sqrt(1.0 - beta) * x_prev, jnp.log(beta)), axis=-1)
            return x, (x, log_q)

        x_T, (xs, log_q) = jax.lax.scan(forward, x0, (betas, _step_keys(key, self.num_steps)))
        log_p = jnp.sum(normal_log_prob(x_T, 0.0, 0.0), axis=-1)
        x1 = xs[0]
        log_p += jnp.sum(normal_log_prob(x0, jnp.sqrt(1.0 - betas[0]) * x1, jnp.log(betas[0])), axis=-1)
        if self.num_steps > 1:
            ts = jnp.arange(2, self.num_steps + 1)

            def reverse_log_prob(t: jax.Array) -> jax.Array:
                mean, log_var = self.reverse(params, betas, xs[t - 1], t)
                return jnp.sum(normal_log_prob(xs[t - 2], mean, log_var), axis=-1)

            log_p += jnp.sum(jax.vmap(reverse_log_prob)(ts))
        return log_p - jnp.sum(log_q)

    # -- sampling

    def sample(self, params: Params, key: jax.Array, num: int, *, trajectory: bool = False) -> jax.Array:
        """Ancestral samples of the reverse process from ``x_T ~ N(0, I)``.

        Returns:
          ``x_0`` [num, data_dim], or with ``trajectory`` the whole path ``[T + 1, num,
          data_dim]`` indexed by t (entry t is ``x_t``).
        """
        _check_positive_int("num", num)
        betas = self.betas(params)
        k_T, k_steps, k_last = jax.random.split(key, 3)
        x_T = jax.random.normal(k_T, (num, self.data_dim))

        def step(x: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            t, k = inp
            mean, log_var = jax.vmap(lambda xi: self.reverse(params, betas, xi, t))(x)
            x_prev = mean + jnp.exp(0.5 * log_var) * jax.random.normal(k, x.shape)
            return x_prev, x_prev

        ts = jnp.arange(self.num_steps, 1, -1)
        x1, path = jax.lax.scan(step, x_T, (ts, _step_keys(k_steps, max(self.num_steps - 1, 1))[: self.num_steps - 1]))
        x0 = jnp.sqrt(1.0 - betas[0]) * x1 + jnp.sqrt(betas[0]) * jax.random.normal(k_last, x1.shape)
        if not trajectory:
            return x0
        # path holds x_{T-1}, ..., x_1; assemble x_0..x_T in order of t.
        return jnp.concatenate([x0[None], path[::-1], x_T[None]], axis=0)

    def forward_trajectory(self, params: Params, x0: jax.Array, key: jax.Array) -> jax.Array:
        """Samples of the forward chain from a batch ``x0`` [num, data_dim]: ``[T + 1, num, data_dim]``."""
        check_data(x0, self.data_dim)
        betas = self.betas(params)

        def step(x: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            beta, k = inp
            x = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * jax.random.normal(k, x.shape)
            return x, x

        _, path = jax.lax.scan(step, x0, (betas, _step_keys(key, self.num_steps)))
        return jnp.concatenate([x0[None], path], axis=0)


# ----------------------------------------------------------- binomial diffusion


@dataclasses.dataclass(frozen=True)
class BinomialDiffusion:
    """Binomial diffusion probabilistic model on binary vectors (Table App.1).

    The forward kernel keeps a bit with probability ``1 - beta_t / 2`` and flips it
    with probability ``beta_t / 2``; after t steps a bit differs from ``x_0`` with
    probability ``F_t = (1 - gamma_t) / 2``, ``gamma_t = prod_{s<=t} (1 - beta_s)``.

    Attributes:
      data_dim: number of bits (20 for the heartbeat data).
      num_steps: T (2000 for the heartbeat data).
      hidden: hidden widths of the reverse MLP.
      num_basis: time bumps per axis.
      activation: hidden activation.
      betas_override: a schedule ``beta_1..beta_T`` in (0, 1] to use instead of the
        paper's ``(T - t + 1)^{-1}`` (for tests); None for the paper's.
    """

    data_dim: int = 20
    num_steps: int = 2000
    hidden: tuple[int, ...] = (256, 256)
    num_basis: int = 8
    activation: str = "tanh"
    betas_override: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _check_positive_int("data_dim", self.data_dim)
        check_num_steps(self.num_steps)
        if self.betas_override is not None:
            betas = check_betas(self.betas_override, allow_one=True, name="betas_override")
            if betas.size != self.num_steps:
                raise ValueError(f"betas_override: expected {self.num_steps} values (num_steps), got {betas.size}")
        get_activation(self.activation)

    @property
    def net(self) -> ReverseMLP:
        """The reverse network (1 output per bit: the flip-logit offset)."""
        return ReverseMLP(self.data_dim, 1, self.num_steps, tuple(self.hidden), self.num_basis, self.activation)

    def init(self, key: jax.Array) -> Params:
        """Parameters ``{"net": ...}``."""
        return {"net": jax.jit(self.net.init)(key, jnp.zeros((self.data_dim,)), jnp.ones((), jnp.int32))}

    def betas64(self) -> np.ndarray:
        """``beta_1..beta_T`` in float64."""
        if self.betas_override is not None:
            return np.asarray(self.betas_override, np.float64)
        return binomial_betas(self.num_steps)

    def flip_logits(self) -> tuple[np.ndarray, np.ndarray]:
        """``logit(beta_t / 2)`` for t = 1..T and ``logit(F_t)`` for t = 0..T (float64).

        ``F_0 = 0`` (logit ``-inf``); ``F_t = 1/2`` (logit 0) once a ``beta_s = 1``.
        """
        betas = self.betas64()
        f = betas / 2.0
        step_logit = np.log(f) - np.log1p(-f)
        with np.errstate(divide="ignore"):
            log_gamma = np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])
            big_f = -np.expm1(log_gamma) / 2.0
            marg_logit = np.log(big_f) - np.log1p(-big_f)
        return step_logit, marg_logit

    def posterior_flip_logit(self, x0: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
        """Logit of ``q(x_{t-1} != x_t | x_t, x_0)`` per bit, for 2 <= t <= T.

        By Bayes, ``q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0)``; with
        flip probabilities ``f_t = beta_t / 2`` per step and ``F_{t-1}`` since ``x_0``,
        the odds that bit i flipped on step t are ``f_t / (1 - f_t)`` times
        ``F_{t-1} / (1 - F_{t-1})`` if ``x_t[i] = x_0[i]`` and its inverse otherwise:
        ``logit = logit(f_t) + s_i logit(F_{t-1})``, ``s_i = +1`` (agree) or ``-1``.
        """
        step_logit, marg_logit = self.flip_logits()
        sign = 1.0 - 2.0 * jnp.abs(x_t - x0)
        return jnp.asarray(step_logit, jnp.float32)[t - 1] + sign * jnp.asarray(marg_logit, jnp.float32)[t - 1]

    def reverse_flip_logit(self, params: Params, x_t: jax.Array, t: jax.Array) -> jax.Array:
        """Logit of ``p(x_{t-1} != x_t | x_t)`` per bit: ``logit(beta_t / 2) + f(x_t, t)``, 2 <= t <= T."""
        step_logit = jnp.asarray(self.flip_logits()[0], jnp.float32)
        return step_logit[t - 1] + apply(self.net, params["net"], ReverseMLP.__call__, x_t, t)[..., 0]

    @staticmethod
    def flip_to_rate_logit(x_t: jax.Array, flip_logit: jax.Array) -> jax.Array:
        """Logit of ``P(x_{t-1} = 1)`` given the flip logit: ``+`` if ``x_t = 0``, ``-`` if ``x_t = 1``."""
        return (1.0 - 2.0 * x_t) * flip_logit

    def forward_marginal_logit(self, x0: jax.Array, t: jax.Array) -> jax.Array:
        """Logit of ``q(x_t = 1 | x_0)`` per bit (t >= 1)."""
        return self.flip_to_rate_logit(x0, jnp.asarray(self.flip_logits()[1], jnp.float32)[t])

    def _constant_terms(self) -> dict[str, jax.Array | float]:
        """``H_q(X_T | X_0)``, ``H_q(X_1 | X_0)`` and ``H_p(X_T)`` in nats.

        A bit of ``x_T`` differs from ``x_0`` with probability ``F_T`` and one of ``x_1``
        with probability ``beta_1 / 2``; ``p(x_T) = B(0.5)``.
        """
        step_logit, marg_logit = self.flip_logits()
        d = self.data_dim
        return {"h_q_T": d * bernoulli_entropy(jnp.float32(marg_logit[-1])), "h_q_1": d * bernoulli_entropy(jnp.float32(step_logit[0])), "h_p_T": d * LOG2}

    def kl_term(self, params: Params, x0: jax.Array, t: jax.Array, key: jax.Array, reverse: FlipFn | None = None) -> jax.Array:
        """``D_KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` at one ``x_t ~ q(x_t | x_0)``, 2 <= t <= T.

        ``reverse(x_t, t) -> flip logits`` replaces the learned kernel if given (e.g.
        ``oracle_reverse``).
        """
        x_t = jax.random.bernoulli(key, jax.nn.sigmoid(self.forward_marginal_logit(x0, t))).astype(x0.dtype)
        q_logit = self.posterior_flip_logit(x0, x_t, t)
        p_logit = self.reverse_flip_logit(params, x_t, t) if reverse is None else reverse(x_t, t)
        return jnp.sum(bernoulli_kl(q_logit, p_logit))

    def bound(self, params: Params, x0: jax.Array, key: jax.Array, reverse: FlipFn | None = None) -> dict[str, jax.Array]:
        """The bound for one binary example with all ``T - 1`` KL terms (one ``x_t`` per t).

        Args:
          params: model parameters (unused with ``reverse``).
          x0: one binary example [data_dim].
          key: PRNG key.
          reverse: optional replacement of the learned reverse kernel, see ``kl_term``.

        Returns:
          ``{"k", "k_eq14", "kl_sum"}`` in nats; ``k == k_eq14`` (uniform ``pi``).
        """
        check_data(x0, self.data_dim)
        c = self._constant_terms()
        if self.num_steps > 1:
            ts = jnp.arange(2, self.num_steps + 1)
            kl_sum = jnp.sum(jax.vmap(lambda t, k: self.kl_term(params, x0, t, k, reverse))(ts, _step_keys(key, self.num_steps - 1)))
        else:
            kl_sum = jnp.zeros(())
        k = -kl_sum + c["h_q_T"] - c["h_q_1"] - c["h_p_T"]
        return {"k": k, "k_eq14": k, "kl_sum": kl_sum}

    def oracle_reverse(self, support: jax.Array) -> FlipFn:
        """The best factorised Bernoulli reverse kernel for data uniform on the rows of ``support``.

        For every ``x_t`` the bound's ``E_q[KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))]``
        over factorised ``p`` is minimised by the per-bit marginals of the exact reverse
        kernel ``q(x_{t-1} | x_t) = sum_s q(s | x_t) q(x_{t-1} | x_t, x_0 = s)``. Its bound
        is the largest K any network can reach with this schedule (a diagnostic).

        Args:
          support: ``[S, data_dim]`` equally likely binary data points.

        Returns:
          ``reverse(x_t, t) -> flip logits`` [data_dim].
        """
        support = jnp.asarray(support, jnp.float32)
        marg_logit = jnp.asarray(self.flip_logits()[1], jnp.float32)

        def reverse(x_t: jax.Array, t: jax.Array) -> jax.Array:
            agree = 1.0 - jnp.abs(x_t[None, :] - support)  # [S, D]
            lf = marg_logit[t]  # logit F_t: q(x_t bit != x_0 bit)
            log_w = jnp.sum(bernoulli_log_prob(1.0 - agree, lf), axis=-1)
            log_w = jax.nn.log_softmax(log_w)[:, None]
            post = jax.vmap(lambda s: self.posterior_flip_logit(s, x_t, t))(support)  # [S, D]
            return jax.nn.logsumexp(log_w + jax.nn.log_sigmoid(post), axis=0) - jax.nn.logsumexp(log_w + jax.nn.log_sigmoid(-post), axis=0)

        return reverse

    def stochastic_bound(self, params: Params, x0: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        """Unbiased one-sample estimate of ``bound`` (one t uniform on 2..T, times T - 1)."""
        check_data(x0, self.data_dim)
        c = self._constant_terms()
        if self.num_steps > 1:
            k_t, k_x = jax.random.split(key)
            kl_sum = (self.num_steps - 1) * self.kl_term(params, x0, _uniform_step(k_t, self.num_steps), k_x)
        else:
            kl_sum = jnp.zeros(())
        k = -kl_sum + c["h_q_T"] - c["h_q_1"] - c["h_p_T"]
        return {"k": k, "k_eq14": k, "kl_sum": kl_sum}

    def log_ratio(self, params: Params, x0: jax.Array, key: jax.Array) -> jax.Array:
        """One sample of ``log p(x_{0:T}) - log q(x_{1:T} | x_0)``, ``x_{1:T} ~ q``."""
        check_data(x0, self.data_dim)
        step_logit = jnp.asarray(self.flip_logits()[0], jnp.float32)

        def forward(x_prev: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
            logit, k = inp
            flip = jax.random.bernoulli(k, jax.nn.sigmoid(logit), x_prev.shape).astype(x_prev.dtype)
            log_q = jnp.sum(bernoulli_log_prob(flip, logit))
            x = jnp.abs(x_prev - flip)
            return x, (x, log_q)

        _, (xs, log_q) = jax.lax.scan(forward, x0, (step_logit, _step_keys(key, self.num_steps)))
        flip1 = jnp.abs(x0 - xs[0])
        log_p = -self.data_dim * LOG2 + jnp.sum(bernoulli_log_prob(flip1, step_logit[0]))  # p(x_T) = B(0.5)
        if self.num_steps > 1:

            def reverse_log_prob(t: jax.Array) -> jax.Array:
                logit = self.reverse_flip_logit(params, xs[t - 1], t)
                flip = jnp.abs(xs[t - 2] - xs[t - 1])
                return jnp.sum(bernoulli_log_prob(flip, logit))

            log_p += jnp.sum(jax.vmap(reverse_log_prob)(jnp.arange(2, self.num_steps + 1)))
        return log_p - jnp.sum(log_q)

    def sample(self, params: Params, key: jax.Array, num: int, *, trajectory: bool = False) -> jax.Array:
        """Ancestral samples of the reverse process from ``x_T ~ B(0.5)``.

        Returns:
          ``x_0`` [num, data_dim] (float 0/1), or with ``trajectory`` ``[T + 1, num,
          data_dim]`` indexed by t.
        """
        _check_positive_int("num", num)
        step_logit = jnp.asarray(self.flip_logits()[0], jnp.float32)
        k_T, k_steps, k_last = jax.random.split(key, 3)
        x_T = jax.random.bernoulli(k_T, 0.5, (num, self.data_dim)).astype(jnp.float32)

        def step(x: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            t, k = inp
            logit = jax.vmap(lambda xi: self.reverse_flip_logit(params, xi, t))(x)
            flip = jax.random.bernoulli(k, jax.nn.sigmoid(logit)).astype(x.dtype)
            x_prev = jnp.abs(x - flip)
            return x_prev, x_prev

        ts = jnp.arange(self.num_steps, 1, -1)
        x1, path = jax.lax.scan(step, x_T, (ts, _step_keys(k_steps, max(self.num_steps - 1, 1))[: self.num_steps - 1]))
        flip = jax.random.bernoulli(k_last, jax.nn.sigmoid(step_logit[0]), x1.shape).astype(x1.dtype)
        x0 = jnp.abs(x1 - flip)
        if not trajectory:
            return x0
        return jnp.concatenate([x0[None], path[::-1], x_T[None]], axis=0)

    def forward_trajectory(self, x0: jax.Array, key: jax.Array) -> jax.Array:
        """Samples of the forward chain from a batch ``x0`` [num, data_dim]: ``[T + 1, num, data_dim]``."""
        check_data(x0, self.data_dim)
        step_logit = jnp.asarray(self.flip_logits()[0], jnp.float32)

        def step(x: jax.Array, inp: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            logit, k = inp
            x = jnp.abs(x - jax.random.bernoulli(k, jax.nn.sigmoid(logit), x.shape).astype(x.dtype))
            return x, x

        _, path = jax.lax.scan(step, x0, (step_logit, _step_keys(key, self.num_steps)))
        return jnp.concatenate([x0[None], path], axis=0)


# ------------------------------------------------------------ null model and training


def independent_bernoulli_log_likelihood(x: np.ndarray) -> float:
    """Mean log-likelihood (nats) of ``x`` under independent per-bit Bernoullis fitted to it.

    This is Table 1's "independent binomial" null model of the heartbeat data; for it
    every bit is 1 with probability 1/5 and the value is ``-20 H(0.2)`` nats.
    """
    x = np.asarray(x, np.float64)
    p = np.clip(x.mean(0), 1e-12, 1 - 1e-12)
    return float(np.mean(np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=1)))


Model = GaussianDiffusion | BinomialDiffusion


def make_loss(model: Model) -> Callable[..., Any]:
    """The training loss ``loss(params, batch, keys) -> (-mean K, metrics)`` for the engine.

    ``batch["x0"]`` is ``[batch, data_dim]``; each example uses the unbiased one-t
    estimate of K (``stochastic_bound``) with its own key. The value is ``-K`` in nats
    per example; metrics hold ``K_bits`` (the same estimate in bits) and ``kl_bits``.
    """

    def loss(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x0 = batch["x0"]
        check_data(x0, model.data_dim, name='batch["x0"]')
        check_example_keys(keys, x0.shape[0])
        terms = jax.vmap(lambda x, k: model.stochastic_bound(params, x, k))(x0, keys)
        k = jnp.mean(terms["k"])
        return -k, {"K_bits": k / LOG2, "kl_bits": jnp.mean(terms["kl_sum"]) / LOG2}

    return loss


@functools.lru_cache(maxsize=16)
def _batched_bound(model: Model) -> Callable[[Params, ArrayLike, ArrayLike], dict[str, jax.Array]]:
    """``jit(vmap(model.bound))`` with the params as an argument, compiled once per model and shape."""
    return jax.jit(jax.vmap(model.bound, in_axes=(None, 0, 0)))


def _bound_with(model: Model, reverse: ReverseFn | FlipFn) -> Callable[[Params, jax.Array, jax.Array], dict[str, jax.Array]]:
    """``model.bound`` with ``reverse`` in place of the learned kernel, as a function of ``(params, x0, key)``.

    ``evaluate_bound``'s overloads pair each model with its kind of kernel, which is
    what the casts state.
    """
    if isinstance(model, GaussianDiffusion):
        gaussian_reverse = cast(ReverseFn, reverse)
        return lambda p, x, k: model.bound(p, x, k, gaussian_reverse)
    flip_reverse = cast(FlipFn, reverse)
    return lambda p, x, k: model.bound(p, x, k, flip_reverse)


@overload
def evaluate_bound(
    model: GaussianDiffusion, params: Params, x0: np.ndarray, key: jax.Array, *, chunk: int = 256, reverse: ReverseFn | None = None
) -> dict[str, np.ndarray]: ...


@overload
def evaluate_bound(
    model: BinomialDiffusion, params: Params, x0: np.ndarray, key: jax.Array, *, chunk: int = 256, reverse: FlipFn | None = None
) -> dict[str, np.ndarray]: ...


def evaluate_bound(
    model: Model, params: Params, x0: np.ndarray, key: jax.Array, *, chunk: int = 256, reverse: ReverseFn | FlipFn | None = None
) -> dict[str, np.ndarray]:
    """``bound`` (all T - 1 KL terms) for every row of ``x0``, in chunks; per-example nats.

    Args:
      model: the model.
      params: its parameters.
      x0: ``[num, data_dim]`` examples.
      key: PRNG key; example i uses ``split(key, num)[i]`` whatever ``chunk`` is.
      chunk: examples per compiled call.
      reverse: optional replacement of the learned reverse kernel (``oracle_reverse``).

    Returns:
      ``{"k", "k_eq14", "kl_sum"}``, float64 arrays of shape [num].
    """
    check_data(x0, model.data_dim)
    x0 = np.asarray(x0, np.float32).reshape(-1, model.data_dim)
    chunk = min(chunk, x0.shape[0])
    if reverse is None:
        fn = _batched_bound(model)
    else:
        fn = jax.jit(jax.vmap(_bound_with(model, reverse), in_axes=(None, 0, 0)))
    # One key per example, whatever the chunking: two evaluations with the same key (e.g. the
    # learned and the oracle kernels) then see the same x_t, and their difference is paired.
    all_keys = jax.random.split(key, x0.shape[0])
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, x0.shape[0], chunk):
        xs = x0[start : start + chunk]
        keys = all_keys[start : start + chunk]
        if xs.shape[0] < chunk:  # pad so the jitted function compiles once
            pad = chunk - xs.shape[0]
            out = fn(params, np.concatenate([xs, np.repeat(xs[:1], pad, 0)]), jnp.concatenate([keys, jax.random.split(key, pad)]))
            out = {k: v[: xs.shape[0]] for k, v in out.items()}
        else:
            out = fn(params, xs, keys)
        parts.append({k: np.asarray(v, np.float64) for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
