"""Models with discrete latent units, trained with any of the estimators of Table 1 of
Jang, Gu & Poole, "Categorical Reparameterization with Gumbel-Softmax", arXiv:1611.01144.

* ``DiscreteVAE``: the VAE of the paper's section 4.2: an MLP encoder (784-512-256) to
  20 categorical variables of 10 classes, or to 200 Bernoulli variables, and the
  mirrored decoder; a uniform prior; a Bernoulli likelihood.
* ``SBN``: the stochastic binary network of section 4.1 for structured output
  prediction: from the upper half of a binarised digit (392 pixels) through two layers
  of 200 stochastic units (Bernoulli, or 20 categorical variables of 10 classes) to the
  Bernoulli pixels of the lower half (392-200-200-392), each arrow a linear map.

The estimators (``ESTIMATORS``) differ only in how a discrete sample is drawn and
differentiated (``sample_latent``); the losses are otherwise identical, which is what
makes Table 1 a comparison of estimators. Math is written for one example and batched
with ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax import estimators as est
from genjax._checks import check_example_keys
from genjax.distributions import (
    bernoulli_kl,
    bernoulli_log_prob,
    categorical_kl_uniform,
    categorical_log_prob,
)
from genjax.nn.mlp import MLP
from genjax.nn.module import apply
from genjax.types import Params

ModelState = dict[str, jax.Array]

LATENT_KINDS = ("categorical", "bernoulli")
ESTIMATORS = ("score_function", "straight_through", "annealed_straight_through", "gumbel_softmax", "st_gumbel_softmax")
# Estimators whose gradient depends on the annealed temperature.
ANNEALED = ("gumbel_softmax", "st_gumbel_softmax", "annealed_straight_through")


def check_estimator(estimator: str) -> None:
    """Raises ValueError unless ``estimator`` is one of ``ESTIMATORS``."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {estimator!r}")


@dataclasses.dataclass(frozen=True)
class DiscreteLatent:
    """The shape of a layer of discrete units.

    Attributes:
      kind: ``"categorical"`` (``num_vars`` one-hot variables of ``num_classes``) or
        ``"bernoulli"`` (``num_vars`` binary units; ``num_classes`` is ignored).
      num_vars: number of variables.
      num_classes: classes per categorical variable (at least 2).
    """

    kind: str
    num_vars: int
    num_classes: int = 2

    def __post_init__(self) -> None:
        if self.kind not in LATENT_KINDS:
            raise ValueError(f"latent: expected one of {LATENT_KINDS}, got {self.kind!r}")
        if self.num_vars <= 0:
            raise ValueError(f"num_vars: expected a positive int, got {self.num_vars}")
        if self.kind == "categorical" and self.num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {self.num_classes}")

    @property
    def size(self) -> int:
        """Width of the flattened sample (and of the logits)."""
        return self.num_vars * (self.num_classes if self.kind == "categorical" else 1)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (num_vars, num_classes) or (num_vars,)."""
        return (self.num_vars, self.num_classes) if self.kind == "categorical" else (self.num_vars,)


def sample_latent(key: jax.Array, logits: jax.Array, latent: DiscreteLatent, estimator: str, temperature: jax.Array | float) -> jax.Array:
    """Draws one sample of a layer of discrete units, differentiable as ``estimator`` says.

    * ``gumbel_softmax``: the relaxed sample of eq. (1) (binary case: the relaxed
      Bernoulli); not discrete.
    * ``st_gumbel_softmax``: its discretised argmax, with the relaxed sample's gradient.
    * ``straight_through``: an exact discrete sample with the gradient of its mean
      (softmax or sigmoid of the logits), Bengio et al. arXiv:1308.3432.
    * ``annealed_straight_through``: the same with the gradient of softmax(logits / tau).
    * ``score_function``: an exact discrete sample that carries no gradient; the gradient
      comes from ``latent_log_prob`` in the caller's surrogate (Williams 1992).

    Args:
      key: one PRNG key.
      logits: unnormalised log-probabilities of shape ``latent.shape``.
      latent: the layer's shape.
      estimator: one of ``ESTIMATORS``.
      temperature: tau > 0, used by the estimators in ``ANNEALED``.

    Returns:
      The sample, of shape ``latent.shape``.
    """
    check_estimator(estimator)
    chex.assert_shape(logits, latent.shape)
    categorical = latent.kind == "categorical"
    if estimator in ("gumbel_softmax", "st_gumbel_softmax"):
        hard = estimator == "st_gumbel_softmax"
        if categorical:
            return est.gumbel_softmax(key, logits, temperature=temperature, hard=hard)
        return est.relaxed_bernoulli(key, logits, temperature=temperature, hard=hard)
    tau = temperature if estimator == "annealed_straight_through" else 1.0
    z = est.straight_through_categorical(key, logits, temperature=tau) if categorical else est.straight_through_bernoulli(key, logits, temperature=tau)
    return jax.lax.stop_gradient(z) if estimator == "score_function" else z


def latent_log_prob(z: jax.Array, logits: jax.Array, latent: DiscreteLatent) -> jax.Array:
    """log q(z) of a discrete sample, summed over the layer's variables."""
    if latent.kind == "categorical":
        return jnp.sum(categorical_log_prob(z, logits))
    return jnp.sum(bernoulli_log_prob(z, logits))


def latent_kl(logits: jax.Array, latent: DiscreteLatent) -> jax.Array:
    """KL(q || uniform prior) of a layer, summed over its variables (exact, discrete)."""
    if latent.kind == "categorical":
        return jnp.sum(categorical_kl_uniform(logits))
    return jnp.sum(bernoulli_kl(logits, 0.0))


def latent_mode(logits: jax.Array, latent: DiscreteLatent) -> jax.Array:
    """The most probable value of a layer: one-hot argmax, or the units with p > 1/2."""
    if latent.kind == "categorical":
        return jax.nn.one_hot(jnp.argmax(logits, -1), latent.num_classes, dtype=logits.dtype)
    return (logits > 0).astype(logits.dtype)


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """How a loss estimates its gradient.

    Attributes:
      estimator: one of ``ESTIMATORS``.
      tau0: initial temperature.
      tau_min: floor of the temperature.
      anneal_rate: r in tau = max(tau_min, tau0 * exp(-r * step)) (paper section 4.2).
      anneal_every: the temperature is updated every this many steps.
      baseline_decay: decay of the score-function estimator's moving-average baseline.
    """

    estimator: str = "gumbel_softmax"
    tau0: float = 1.0
    tau_min: float = 0.5
    anneal_rate: float = 1e-4
    anneal_every: int = 1000
    baseline_decay: float = 0.9

    def __post_init__(self) -> None:
        check_estimator(self.estimator)
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"baseline_decay: expected a float in [0, 1), got {self.baseline_decay}")
        for name, ok in (("tau0", self.tau0 > 0), ("tau_min", self.tau_min > 0), ("anneal_rate", self.anneal_rate >= 0)):
            if not ok:
                raise ValueError(f"{name}: expected a {'non-negative' if name == 'anneal_rate' else 'positive'} number, got {getattr(self, name)}")
        if not isinstance(self.anneal_every, int) or self.anneal_every < 1:
            raise ValueError(f"anneal_every: expected an int >= 1, got {self.anneal_every!r}")

    def temperature(self, step: jax.Array | int) -> jax.Array:
        """The annealed temperature at ``step``."""
        return est.temperature_schedule(step, tau0=self.tau0, tau_min=self.tau_min, rate=self.anneal_rate, every=self.anneal_every)


def init_model_state(config: EstimatorConfig) -> ModelState:
    """The loss's state: the score-function baseline (unused by the other estimators)."""
    del config
    return {"baseline": jnp.zeros((), jnp.float32)}


def surrogate_cost(config: EstimatorConfig, cost: jax.Array, log_q: jax.Array, state: ModelState) -> tuple[jax.Array, ModelState]:
    """Per-example costs whose gradient is the estimator's, and the updated state.

    For the score-function estimator the value is ``cost`` and the gradient is
    ``grad(cost) + (cost - b) grad(log q)`` with ``b`` a moving average of the batch's
    mean cost; for the others the gradient flows through the samples and ``cost`` is
    returned as is.

    Args:
      config: the estimator.
      cost: per-example costs [B].
      log_q: per-example log-probabilities of the discrete samples [B].
      state: the model state holding ``baseline``.
    """
    if config.estimator != "score_function":
        return cost, state
    baseline = state["baseline"]
    surrogate = est.score_function_surrogate(cost, log_q, baseline)
    return surrogate, {"baseline": est.ema_baseline_update(baseline, jnp.mean(cost), decay=config.baseline_decay)}


class DiscreteVAE(nn.Module):
    """MLP encoder to discrete latents and the mirrored MLP decoder (section 4.2).

    Attributes:
      latent: the latent layer.
      data_dim: number of Bernoulli pixels.
      hidden: encoder widths; the decoder uses them reversed.
      activation: hidden activation name.
    """

    latent: DiscreteLatent
    data_dim: int = 784
    hidden: Sequence[int] = (512, 256)
    activation: str = "relu"

    def setup(self) -> None:
        self.encoder = MLP(tuple(self.hidden), self.latent.size, self.activation)
        self.decoder = MLP(tuple(reversed(self.hidden)), self.data_dim, self.activation)

    def encode(self, x: jax.Array) -> jax.Array:
        """Logits of q(z|x), of shape ``latent.shape``, for one flattened example."""
        chex.assert_shape(x, (self.data_dim,))
        return self.encoder(x).reshape(self.latent.shape)

    def decode(self, z: jax.Array) -> jax.Array:
        """Bernoulli logits of p(x|z) for one latent sample of shape ``latent.shape``."""
        chex.assert_shape(z, self.latent.shape)
        return self.decoder(z.reshape(-1))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Decoder logits at the mode of q(z|x), for one flattened example."""
        return self.decode(latent_mode(self.encode(x), self.latent))


def vae_terms(
    model: DiscreteVAE, params: Params, x: jax.Array, key: jax.Array, estimator: str, temperature: jax.Array | float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reconstruction log-likelihood, KL and log q(z|x) of one example and one sample.

    The negative ELBO is ``kl - log_lik`` (Kingma & Welling eq. 10 with the exact
    discrete KL to the uniform prior, as in the paper's section 4.2). For the
    ``gumbel_softmax`` estimator z is relaxed, so ``log_lik`` is that of the relaxed
    model the estimator optimises.

    Args:
      model: the VAE.
      params: its parameters.
      x: one flattened binary example [data_dim].
      key: one PRNG key.
      estimator: one of ``ESTIMATORS``.
      temperature: tau for the annealed estimators.

    Returns:
      ``(log_lik, kl, log_q)``, scalars.
    """
    logits = apply(model, params, DiscreteVAE.encode, x)
    z = sample_latent(key, logits, model.latent, estimator, temperature)
    log_lik = jnp.sum(bernoulli_log_prob(x, apply(model, params, DiscreteVAE.decode, z)))
    return log_lik, latent_kl(logits, model.latent), latent_log_prob(jax.lax.stop_gradient(z), logits, model.latent)


def discrete_elbo(model: DiscreteVAE, params: Params, x: jax.Array, key: jax.Array, num_samples: int = 1) -> jax.Array:
    """The ELBO of the discrete model for one example: exact discrete samples, exact KL.

    This is the test score of Table 1 (its negative), whatever estimator trained the
    model: z ~ q(z|x) is drawn exactly, never relaxed, and E_q[log p(x|z)] is averaged
    over ``num_samples`` draws.
    """
    keys = jax.random.split(key, num_samples)
    log_lik, kl, _ = jax.vmap(lambda k: vae_terms(model, params, x, k, "score_function", 1.0))(keys)
    return jnp.mean(log_lik) - kl[0]


def flatten_batch(images: jax.Array) -> jax.Array:
    """[B, H, W, C] images to [B, H*W*C] vectors."""
    return images.reshape(images.shape[0], -1)


def make_vae_loss(model: DiscreteVAE, config: EstimatorConfig) -> Callable[..., Any]:
    """The stateful training loss of the discrete VAE (see ``genjax.train.make_update``).

    The loss value is the batch's mean of ``recon + kl``; its gradient is the
    estimator's. For every estimator but ``gumbel_softmax`` this is the negative ELBO of
    the discrete model on one sample; for ``gumbel_softmax`` ``recon`` is that of the
    relaxed sample, so the value is the relaxed objective, not a bound of the discrete
    model. Metrics: ``recon``, ``kl``, ``temperature`` and ``baseline``.
    """

    def loss(
        params: Params, batch: dict[str, jax.Array], keys: jax.Array, *, step: jax.Array, model_state: ModelState
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], ModelState]]:
        x = flatten_batch(batch["image"])
        check_example_keys(keys, x.shape[0])
        tau = config.temperature(step)
        log_lik, kl, log_q = jax.vmap(lambda xi, ki: vae_terms(model, params, xi, ki, config.estimator, tau))(x, keys)
        recon, new_state = surrogate_cost(config, -log_lik, log_q, model_state)
        value = jnp.mean(recon + kl)
        metrics = {"recon": jnp.mean(-log_lik), "kl": jnp.mean(kl), "temperature": tau, "baseline": new_state["baseline"]}
        return value, (metrics, new_state)

    return loss


def vae_reconstruct(model: DiscreteVAE, params: Params, x: jax.Array) -> jax.Array:
    """Decoder means at the most probable latent (the mode of q) for a flattened batch."""
    return jax.vmap(lambda xi: jax.nn.sigmoid(apply(model, params, DiscreteVAE.__call__, xi)))(x)


def vae_sample(model: DiscreteVAE, params: Params, key: jax.Array, num: int) -> jax.Array:
    """Decoder means for ``num`` latents drawn from the uniform prior, [num, data_dim]."""
    shape = (num,) + model.latent.shape
    if model.latent.kind == "categorical":
        z = jax.nn.one_hot(jax.random.randint(key, shape[:-1], 0, model.latent.num_classes), model.latent.num_classes)
    else:
        z = jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)
    return jax.vmap(lambda zi: jax.nn.sigmoid(apply(model, params, DiscreteVAE.decode, zi)))(z)


class SBN(nn.Module):
    """Stochastic binary network for structured output prediction (section 4.1).

    ``x_upper -> h1 -> ... -> hL -> x_lower``: every arrow is a linear map followed by
    the stochastic units of ``latent`` (Bernoulli or categorical), and the last one by
    Bernoulli pixels. With two layers of 200 units this is the paper's 392-200-200-392.

    Attributes:
      latent: the shape of every stochastic layer.
      num_layers: number of stochastic layers.
      in_dim: pixels of the upper half.
      out_dim: pixels of the lower half.
    """

    latent: DiscreteLatent
    num_layers: int = 2
    in_dim: int = 392
    out_dim: int = 392

    def setup(self) -> None:
        self.layers = [nn.Dense(self.latent.size, name=f"stochastic_{i}") for i in range(self.num_layers)]
        self.out = nn.Dense(self.out_dim, name="out")

    def layer_logits(self, h: jax.Array, index: int) -> jax.Array:
        """Logits of the units of layer ``index`` given the previous layer's flat values."""
        return self.layers[index](h).reshape(self.latent.shape)

    def output_logits(self, h: jax.Array) -> jax.Array:
        """Bernoulli logits of the lower half given the last layer's flat values."""
        return self.out(h)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Output logits with every stochastic layer replaced by its mean (for ``init``)."""
        h = x
        for i in range(self.num_layers):
            logits = self.layer_logits(h, i)
            mean = jax.nn.softmax(logits, -1) if self.latent.kind == "categorical" else jax.nn.sigmoid(logits)
            h = mean.reshape(-1)
        return self.output_logits(h)


def sbn_sample(model: SBN, params: Params, x_upper: jax.Array, key: jax.Array, estimator: str, temperature: jax.Array | float) -> tuple[jax.Array, jax.Array]:
    """One forward pass of the stochastic network for one example.

    Returns:
      ``(out_logits, log_q)``: Bernoulli logits of the lower half [out_dim], and the
      log-probability of the discrete samples drawn on the way (for the score function).
    """
    chex.assert_shape(x_upper, (model.in_dim,))
    h = x_upper
    log_q = jnp.zeros((), jnp.float32)
    for i, k in enumerate(jax.random.split(key, model.num_layers)):
        logits = apply(model, params, SBN.layer_logits, h, i)
        z = sample_latent(k, logits, model.latent, estimator, temperature)
        log_q = log_q + latent_log_prob(jax.lax.stop_gradient(z), logits, model.latent)
        h = z.reshape(-1)
    return apply(model, params, SBN.output_logits, h), log_q


def sbn_log_likelihoods(
    model: SBN, params: Params, x_upper: jax.Array, x_lower: jax.Array, key: jax.Array, num_samples: int, estimator: str, temperature: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """log p(x_lower | h^(i)) and log p(h^(i) | x_upper) for ``num_samples`` samples, each [m]."""

    def one(k: jax.Array) -> tuple[jax.Array, jax.Array]:
        out, log_q = sbn_sample(model, params, x_upper, k, estimator, temperature)
        return jnp.sum(bernoulli_log_prob(x_lower, out)), log_q

    return jax.vmap(one)(jax.random.split(key, num_samples))


def sbn_multisample_nll(log_liks: jax.Array) -> jax.Array:
    """-log (1/m sum_i p(x_lower | h^(i))): the m-sample bound on -log p(x_lower | x_upper).

    Its expectation upper-bounds the negative log-likelihood and tightens as m grows
    (Raiko et al. arXiv:1406.2989; Burda et al. arXiv:1509.00519 Theorem 1).
    """
    return -(jax.nn.logsumexp(log_liks) - math.log(log_liks.shape[0]))


def sbn_test_nll(model: SBN, params: Params, x_upper: jax.Array, x_lower: jax.Array, key: jax.Array, num_samples: int, chunk: int) -> jax.Array:
    """The test loss of Table 1 for one example: the ``num_samples``-sample bound with
    exact discrete samples, evaluated ``chunk`` samples at a time to bound memory."""
    if num_samples % chunk:
        raise ValueError(f"num_samples: expected a multiple of chunk={chunk}, got {num_samples}")
    keys = jax.random.split(key, num_samples // chunk)
    log_liks = jax.lax.map(lambda k: sbn_log_likelihoods(model, params, x_upper, x_lower, k, chunk, "score_function", 1.0)[0], keys)
    return sbn_multisample_nll(log_liks.reshape(-1))


def split_halves(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, 1] images to flattened upper and lower halves ([B, H/2*W] each)."""
    b, h, w = images.shape[:3]
    if h % 2:
        raise ValueError(f"images: expected an even height to split in halves, got {h}")
    flat = images.reshape(b, h * w)
    return flat[:, : h * w // 2], flat[:, h * w // 2 :]


def make_sbn_loss(model: SBN, config: EstimatorConfig, num_samples: int = 1) -> Callable[..., Any]:
    """The stateful training loss of the SBN: the mean ``num_samples``-sample bound.

    For the score-function estimator the per-example cost is the bound itself and its
    log-probability is that of all samples drawn for the example.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples}")

    def loss(
        params: Params, batch: dict[str, jax.Array], keys: jax.Array, *, step: jax.Array, model_state: ModelState
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], ModelState]]:
        x_upper, x_lower = split_halves(batch["image"])
        check_example_keys(keys, x_upper.shape[0])
        tau = config.temperature(step)

        def one(xu: jax.Array, xl: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
            log_liks, log_q = sbn_log_likelihoods(model, params, xu, xl, k, num_samples, config.estimator, tau)
            return sbn_multisample_nll(log_liks), jnp.sum(log_q)

        cost, log_q = jax.vmap(one)(x_upper, x_lower, keys)
        surrogate, new_state = surrogate_cost(config, cost, log_q, model_state)
        metrics = {"nll_bound": jnp.mean(cost), "temperature": tau, "baseline": new_state["baseline"]}
        return jnp.mean(surrogate), (metrics, new_state)

    return loss


def sbn_complete(model: SBN, params: Params, x_upper: jax.Array, key: jax.Array) -> jax.Array:
    """Lower-half pixel means for one exact sample of the hidden units, per example."""
    keys = jax.random.split(key, x_upper.shape[0])
    return jax.vmap(lambda xu, k: jax.nn.sigmoid(sbn_sample(model, params, xu, k, "score_function", 1.0)[0]))(x_upper, keys)
