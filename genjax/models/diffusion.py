"""Gaussian diffusion of Ho, Jain & Abbeel (DDPM, arXiv 2006.11239).

The forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) over
timesteps t = 0..T-1 (the paper's t = 1..T shifted by one, as in its reference code);
the reverse process p(x_{t-1} | x_t) is a Gaussian whose mean comes from a network's
prediction of the noise (``"eps"``), of x_0 (``"x0"``) or of v = sqrt(abar) eps -
sqrt(1 - abar) x_0 (``"v"``, Salimans & Ho, arXiv 2202.00512), and whose variance is
fixed (beta_tilde_t, ``"small"``, or beta_t, ``"large"``: the paper's two choices) or
learned as an interpolation between them (Nichol & Dhariwal, arXiv 2102.09672, eq. 15).

Everything here is written for one example (``x`` of the image shape, scalar ``t``) and
batched with ``jax.vmap``. Scheduler quantities are float32 whatever dtype the network
runs in. Data lives in [-1, 1] on the 256 levels 2k/255 - 1 (``to_model_scale``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, cast

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from genjax._checks import check_unit_interval
from genjax.distributions import (
    discretized_gaussian_log_likelihood,
    eps_from_v,
    eps_from_x0,
    normal_kl,
    standard_normal_kl,
    v_from_eps_x0,
    x0_from_eps,
    x0_from_v,
)

SCHEDULES = ("linear", "cosine", "quadratic")
PARAMETERIZATIONS = ("eps", "x0", "v")
LOSSES = ("simple", "vlb", "hybrid")
VARIANCES = ("small", "large", "learned")

Params = Any
# ``apply(params, x [B, H, W, C], t [B], dropout_key | None[, y=labels [B]]) -> output
# [B, H, W, C or 2C]``; a conditional network also takes the class labels ``y``.
ApplyFn = Callable[..., jax.Array]

CONDITION_DROP_SALT = 0xC0D
"""Folded into an example's key to draw whether its condition is dropped; a fold-in
rather than a fourth split keeps the timestep, noise and dropout draws of unconditional
models unchanged."""


def condition_dropout(label: jax.Array, key: jax.Array, drop_prob: float, null_label: int) -> jax.Array:
    """Replaces an example's label by the null label with probability ``drop_prob``.

    Classifier-free guidance trains one network as both the conditional and the
    unconditional model by dropping the condition at random (Ho & Salimans 2022, arXiv
    2207.12598, Algorithm 1; ``p_uncond = 0.1`` in their experiments).

    Args:
      label: the example's int label (a scalar).
      key: the example's key; the draw uses ``fold_in(key, CONDITION_DROP_SALT)``.
      drop_prob: the probability of dropping, in ``[0, 1]``.
      null_label: the label of the learned null condition.
    """
    dropped = jax.random.bernoulli(jax.random.fold_in(key, CONDITION_DROP_SALT), drop_prob)
    return jnp.where(dropped, jnp.asarray(null_label, label.dtype), label)


def beta_schedule(kind: str, num_timesteps: int, *, beta_start: float = 1e-4, beta_end: float = 0.02, cosine_s: float = 0.008) -> np.ndarray:
    """The betas of a named schedule, in float64.

    * ``"linear"``: DDPM sec. 4, beta_t linear from ``beta_start`` to ``beta_end``
      (1e-4 to 0.02 for T = 1000).
    * ``"quadratic"``: linear in sqrt(beta) between the same end points (DDPM code).
    * ``"cosine"``: Nichol & Dhariwal, arXiv 2102.09672 eq. 17, abar_t =
      cos^2(((t/T + s)/(1 + s)) pi/2) normalised, betas clipped to 0.999.

    Args:
      kind: one of ``SCHEDULES``.
      num_timesteps: T, a positive int.
      beta_start: first beta of the linear and quadratic schedules.
      beta_end: last beta of the linear and quadratic schedules.
      cosine_s: the offset s of the cosine schedule.

    Returns:
      float64 array [T].
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {kind!r}")
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, (int, np.integer)) or num_timesteps < 1:
        raise ValueError(f"num_timesteps: expected a positive int, got {num_timesteps!r}")
    if kind == "linear":
        betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
    elif kind == "quadratic":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=np.float64) ** 2
    else:
        steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
        f = np.cos((steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
        betas = np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
    return betas


@struct.dataclass
class Schedule:
    """The float32 tables of a discrete diffusion process (DDPM eqs. 4 and 6-7).

    Attributes:
      betas: beta_t, [T].
      alphas_cumprod: abar_t = prod_{s <= t} (1 - beta_s), [T].
      alphas_cumprod_prev: abar_{t-1} with abar_{-1} = 1, [T].
      posterior_variance: beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (eq. 7), [T].
      posterior_log_variance: log beta_tilde_t, with the t = 0 entry (which is 0) replaced
        by beta_tilde_1 as in the reference code, [T].
      posterior_mean_coef_x0: sqrt(abar_{t-1}) beta_t / (1 - abar_t) (eq. 7), [T].
      posterior_mean_coef_xt: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) (eq. 7), [T].
    """

    betas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance: jax.Array
    posterior_mean_coef_x0: jax.Array
    posterior_mean_coef_xt: jax.Array

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return int(self.betas.shape[0])


def make_schedule(betas: np.ndarray | jax.Array) -> Schedule:
    """Precomputes the tables of ``Schedule`` from the betas (in float64, stored float32).

    Args:
      betas: 1D array of T values, each in (0, 1).

    Raises:
      ValueError: ``betas`` is not 1D or has a value outside (0, 1).
    """
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise ValueError(f"betas: expected a non-empty 1D array, got shape {b.shape}")
    if not np.all((b > 0) & (b < 1)):
        bad = b[~((b > 0) & (b < 1))]
        raise ValueError(f"betas: every beta must lie in (0, 1); got {bad.size} outside, e.g. {bad[0]!r}")
    abar = np.cumprod(1.0 - b)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = b * (1.0 - abar_prev) / (1.0 - abar)
    post_log_var = np.log(np.concatenate([post_var[1:2], post_var[1:]])) if b.size > 1 else np.log(b)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return Schedule(
        betas=f32(b),
        alphas_cumprod=f32(abar),
        alphas_cumprod_prev=f32(abar_prev),
        posterior_variance=f32(post_var),
        posterior_log_variance=f32(post_log_var),
        posterior_mean_coef_x0=f32(np.sqrt(abar_prev) * b / (1.0 - abar)),
        posterior_mean_coef_xt=f32(np.sqrt(1.0 - b) * (1.0 - abar_prev) / (1.0 - abar)),
    )


def check_timesteps(t: Any, num_timesteps: int) -> None:
    """Raises ValueError if a concrete ``t`` has an entry outside [0, T).

    Traced values (inside jit) cannot be checked and are let through.
    """
    try:
        values = np.asarray(t)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if values.size and (values.min() < 0 or values.max() > num_timesteps - 1):
        raise ValueError(f"t: expected timesteps in [0, {num_timesteps}), got values in [{values.min()}, {values.max()}]")


def to_model_scale(images: np.ndarray) -> np.ndarray:
    """Maps images in [0, 1] to the 256 levels 2k/255 - 1 in [-1, 1] the decoder assumes.

    The offline MNIST copy stores k/256 and tfds stores k/255; both are mapped back to
    the integer level k first (DDPM sec. 3.3: data are integers 0..255 scaled to [-1, 1]).
    """
    x = np.asarray(images, np.float64)
    check_unit_interval(x, "images")
    on_256 = x.size and x.max() < 1 and np.allclose(x * 256, np.round(x * 256), atol=1e-4)
    levels = np.round(x * 256) if on_256 else np.round(x * 255)
    return (levels / 127.5 - 1.0).astype(np.float32)


def from_model_scale(x: np.ndarray | jax.Array) -> np.ndarray:
    """Maps model-scale samples in [-1, 1] back to images in [0, 1] (clipped)."""
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Draws x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (DDPM eq. 4).

    Args:
      schedule: the process.
      x0: one example.
      t: scalar timestep in [0, T).
      noise: standard normal draw of ``x0``'s shape.
    """
    chex.assert_equal_shape([x0, noise])
    check_timesteps(t, schedule.num_timesteps)
    abar = schedule.alphas_cumprod[t]
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def q_posterior(schedule: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and log-variance of q(x_{t-1} | x_t, x_0) (DDPM eqs. 6-7).

    Returns:
      ``(mean, log_variance)``; the log-variance is a scalar (``posterior_log_variance``).
    """
    chex.assert_equal_shape([x0, xt])
    check_timesteps(t, schedule.num_timesteps)
    mean = schedule.posterior_mean_coef_x0[t] * x0 + schedule.posterior_mean_coef_xt[t] * xt
    return mean, schedule.posterior_log_variance[t]


def regression_target(schedule: Schedule, parameterization: str, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """What the network regresses on: eps (DDPM eq. 14), x_0, or v (arXiv 2202.00512 sec. 4)."""
    if parameterization == "eps":
        return noise
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return v_from_eps_x0(noise, x0, schedule.alphas_cumprod[t])
    raise ValueError(f"parameterization: expected one of {PARAMETERIZATIONS}, got {parameterization!r}")


def prediction_to_eps_x0(schedule: Schedule, parameterization: str, prediction: jax.Array, xt: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Converts the network's mean output to the implied (eps, x_0) pair."""
    abar = schedule.alphas_cumprod[t]
    if parameterization == "eps":
        return prediction, x0_from_eps(xt, prediction, abar)
    if parameterization == "x0":
        return eps_from_x0(xt, prediction, abar), prediction
    if parameterization == "v":
        return eps_from_v(xt, prediction, abar), x0_from_v(xt, prediction, abar)
    raise ValueError(f"parameterization: expected one of {PARAMETERIZATIONS}, got {parameterization!r}")


@dataclasses.dataclass(frozen=True)
class Diffusion:
    """The hyperparameters of a DDPM (everything but the network and its weights).

    Attributes:
      schedule: the forward process.
      parameterization: what the network's mean output predicts, one of ``PARAMETERIZATIONS``.
      variance: the reverse variance, one of ``VARIANCES``; ``"learned"`` means the
        network outputs 2C channels, the last C interpolating log beta_tilde and log beta.
      loss: ``"simple"`` (DDPM eq. 14), ``"vlb"`` (eq. 5 with the terms of eq. 13) or
        ``"hybrid"`` (L_simple + ``vlb_weight`` L_vlb, arXiv 2102.09672 eq. 16).
      vlb_weight: lambda of the hybrid loss (0.001 in arXiv 2102.09672).
      clip_x0: clip predicted x_0 to [-1, 1] when forming the reverse mean in sampling.
    """

    schedule: Schedule
    parameterization: str = "eps"
    variance: str = "small"
    loss: str = "simple"
    vlb_weight: float = 0.001
    clip_x0: bool = True

    def __post_init__(self) -> None:
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization: expected one of {PARAMETERIZATIONS}, got {self.parameterization!r}")
        if self.variance not in VARIANCES:
            raise ValueError(f"variance: expected one of {VARIANCES}, got {self.variance!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.variance == "learned" and self.loss == "simple":
            raise ValueError("loss: a learned variance is trained only by L_vlb; use loss='hybrid' or 'vlb' with variance='learned'")
        if self.vlb_weight < 0:
            raise ValueError(f"vlb_weight: expected a non-negative float, got {self.vlb_weight}")

    @property
    def learned_variance(self) -> bool:
        """Whether the network outputs the variance interpolation as extra channels."""
        return self.variance == "learned"

    def output_channels(self, channels: int) -> int:
        """The network's output channels for data with ``channels`` channels."""
        return 2 * channels if self.learned_variance else channels


@struct.dataclass
class ReverseStep:
    """The Gaussian p(x_{t-1} | x_t) of one example (DDPM eqs. 1 and 11).

    Attributes:
      mean: mu_theta(x_t, t).
      log_variance: log sigma_t^2, a scalar or per-dimension.
      x0: the predicted x_0 the mean is formed from.
      eps: the predicted noise.
    """

    mean: jax.Array
    log_variance: jax.Array
    x0: jax.Array
    eps: jax.Array


def split_output(diffusion: Diffusion, output: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Splits a network output into (mean prediction, raw variance output or None)."""
    if not diffusion.learned_variance:
        return output, None
    c = output.shape[-1] // 2
    return output[..., :c], output[..., c:]


def reverse_step(diffusion: Diffusion, output: jax.Array, xt: jax.Array, t: jax.Array, *, clip_x0: bool | None = None) -> ReverseStep:
    """p(x_{t-1} | x_t) from the network output (DDPM eq. 11 through the x_0 form of eq. 7).

    The mean is the posterior mean of eq. 7 at the predicted x_0, which for the eps
    parameterisation equals eq. 11. The variance is beta_tilde_t (``"small"``), beta_t
    (``"large"``, with beta_tilde_1 at t = 0 as in the reference code) or
    exp(v log beta_t + (1 - v) log beta_tilde_t) with v = (raw + 1)/2 (``"learned"``,
    arXiv 2102.09672 eq. 15).

    Args:
      diffusion: the hyperparameters.
      output: the network output for this example (float32), C or 2C channels.
      xt: x_t.
      t: scalar timestep.
      clip_x0: clip the predicted x_0 to [-1, 1]; None uses ``diffusion.clip_x0``.
    """
    s = diffusion.schedule
    check_timesteps(t, s.num_timesteps)
    prediction, raw = split_output(diffusion, output.astype(jnp.float32))
    chex.assert_equal_shape([prediction, xt])
    eps, x0 = prediction_to_eps_x0(s, diffusion.parameterization, prediction, xt, t)
    if diffusion.clip_x0 if clip_x0 is None else clip_x0:
        x0 = jnp.clip(x0, -1.0, 1.0)
    mean, small = q_posterior(s, x0, xt, t)
    large = jnp.log(jnp.where(t == 0, s.posterior_variance[jnp.minimum(1, s.num_timesteps - 1)], s.betas[t]))
    if diffusion.variance == "small":
        log_var = small
    elif diffusion.variance == "large":
        log_var = large
    else:
        # split_output returns the raw variance channels whenever the variance is learned.
        frac = (cast(jax.Array, raw) + 1.0) / 2.0
        log_var = frac * jnp.log(s.betas[t]) + (1.0 - frac) * small
    return ReverseStep(mean=mean, log_variance=log_var, x0=x0, eps=eps)


def prior_kl(schedule: Schedule, x0: jax.Array) -> jax.Array:
    """L_T = KL(q(x_T | x_0) || N(0, I)) summed over dimensions, in nats (DDPM eq. 5)."""
    abar = schedule.alphas_cumprod[-1]
    return jnp.sum(standard_normal_kl(jnp.sqrt(abar) * x0, jnp.log1p(-abar)))


def vlb_term(diffusion: Diffusion, output: jax.Array, x0: jax.Array, xt: jax.Array, t: jax.Array) -> jax.Array:
    """L_{t-1} of DDPM eq. 5 for one example and one t, summed over dimensions, in nats.

    For t > 0 it is KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)); for t = 0 it is
    L_0 = -log p(x_0 | x_1) under the discretised decoder of eq. 13. The reverse mean is
    formed without clipping x_0, as the bound requires.
    """
    step = reverse_step(diffusion, output, xt, t, clip_x0=False)
    true_mean, true_log_var = q_posterior(diffusion.schedule, x0, xt, t)
    kl = jnp.sum(normal_kl(true_mean, true_log_var, step.mean, step.log_variance * jnp.ones_like(x0)))
    nll = -jnp.sum(discretized_gaussian_log_likelihood(x0, step.mean, 0.5 * step.log_variance * jnp.ones_like(x0)))
    return jnp.where(t == 0, nll, kl)


@struct.dataclass
class LossTerms:
    """The per-example terms of a diffusion loss.

    Attributes:
      mse: mean squared error of the regression target (L_simple, DDPM eq. 14, averaged
        over dimensions).
      vlb: T * L_{t} + L_T for the sampled t, in nats per dimension: an unbiased
        estimate of L_vlb / D (eq. 5).
      loss: the objective the loss type selects.
    """

    mse: jax.Array
    vlb: jax.Array
    loss: jax.Array


def example_loss(
    diffusion: Diffusion,
    apply_fn: ApplyFn,
    params: Params,
    x0: jax.Array,
    key: jax.Array,
    *,
    train: bool = True,
    label: jax.Array | None = None,
    cond_drop_prob: float = 0.0,
    null_label: int | None = None,
) -> LossTerms:
    """The training loss of one example: t ~ U{0..T-1}, eps ~ N(0, I) (DDPM Algorithm 1).

    With a learned variance the L_vlb term sees the mean prediction through a stop-gradient
    so that only L_simple trains the mean (arXiv 2102.09672 sec. 3.1), except for the
    pure ``"vlb"`` loss, which trains both.

    Args:
      diffusion: the hyperparameters.
      apply_fn: the network, ``apply(params, x [1, ...], t [1], dropout_key)``.
      params: network parameters.
      x0: one example in model scale.
      key: this example's key (timestep, noise and dropout are drawn from it).
      train: run the network with dropout (training) or without (evaluation).
      label: the example's class label, for a conditional network (passed as ``y``).
      cond_drop_prob: while training, replace ``label`` by ``null_label`` with this
        probability (``condition_dropout``).
      null_label: the learned null condition's label.
    """
    s = diffusion.schedule
    t_key, noise_key, dropout_key = jax.random.split(key, 3)
    t = jax.random.randint(t_key, (), 0, s.num_timesteps)
    noise = jax.random.normal(noise_key, x0.shape, jnp.float32)
    xt = q_sample(s, x0, t, noise)
    if label is None:
        output = apply_fn(params, xt[None], t[None], dropout_key if train else None)
    else:
        if train and cond_drop_prob > 0:
            if null_label is None:
                raise ValueError("null_label: condition dropout needs the null condition's label, got None")
            label = condition_dropout(label, key, cond_drop_prob, null_label)
        output = apply_fn(params, xt[None], t[None], dropout_key if train else None, y=label[None])
    output = output[0].astype(jnp.float32)
    prediction, raw = split_output(diffusion, output)
    dims = x0.size
    mse = jnp.mean((regression_target(s, diffusion.parameterization, x0, noise, t) - prediction) ** 2)
    vlb_output = output
    if diffusion.learned_variance and diffusion.loss == "hybrid":
        # split_output returns the raw variance channels whenever the variance is learned.
        vlb_output = jnp.concatenate([jax.lax.stop_gradient(prediction), cast(jax.Array, raw)], axis=-1)
    vlb = (s.num_timesteps * vlb_term(diffusion, vlb_output, x0, xt, t) + prior_kl(s, x0)) / dims
    if diffusion.loss == "simple":
        loss = mse
    elif diffusion.loss == "vlb":
        loss = vlb
    else:
        loss = mse + diffusion.vlb_weight * vlb
    return LossTerms(mse=mse, vlb=vlb, loss=loss)


def make_loss(
    diffusion: Diffusion, apply_fn: ApplyFn, *, cond_drop_prob: float = 0.0, null_label: int | None = None
) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
    """The engine's loss ``loss(params, batch, keys) -> (loss, metrics)`` for ``batch["image"]``.

    Images must already be in model scale ([-1, 1]). A batch with ``"label"`` trains a
    conditional network, dropping labels to ``null_label`` with probability
    ``cond_drop_prob`` (classifier-free guidance). Metrics: ``mse`` and ``vlb_bpd`` (the
    one-t estimate of L_vlb in bits per dimension).
    """
    if not 0.0 <= cond_drop_prob <= 1.0:
        raise ValueError(f"cond_drop_prob: expected a probability in [0, 1], got {cond_drop_prob}")

    def one(xi: jax.Array, k: jax.Array, yi: jax.Array | None, params: Params) -> LossTerms:
        return example_loss(diffusion, apply_fn, params, xi, k, label=yi, cond_drop_prob=cond_drop_prob, null_label=null_label)

    def loss(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = batch["image"]
        chex.assert_rank(x, 4)
        y = batch.get("label")
        if y is None:
            terms = jax.vmap(lambda xi, k: one(xi, k, None, params))(x, keys)
        else:
            chex.assert_shape(y, (x.shape[0],))
            terms = jax.vmap(lambda xi, k, yi: one(xi, k, yi, params))(x, keys, y)
        return jnp.mean(terms.loss), {"mse": jnp.mean(terms.mse), "vlb_bpd": jnp.mean(terms.vlb) / math.log(2.0)}

    return loss
