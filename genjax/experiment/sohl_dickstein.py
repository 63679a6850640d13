"""The diffusion model of Sohl-Dickstein et al. (arXiv 1503.03585) on its toy data, Table 1.

``model.family = "sohl_dickstein"`` with ``data.name``:

* ``"swiss_roll"``: a Gaussian diffusion (``GaussianDiffusion``, section 2 and Appendix
  D.1: T steps, beta_1 fixed, the rest of the schedule learned) of the standardised 2D
  swiss roll (``genjax.data.SwissRoll``: toy2d's roll with noise ``data.noise`` in toy2d
  units, centred and scaled so that its isotropic Gaussian fit is N(0, I)). ``evaluate``
  reports the bound K of eq. 14 in bits from all T - 1 KL terms, K minus the isotropic
  Gaussian null model, and the data's true log-likelihood (the ceiling of K, by
  quadrature); the full evaluation adds the bound of the best diagonal-Gaussian kernels
  for the learned schedule (``oracle_reverse``), paired with K on the same x_0 and x_t.
* ``"heartbeat"``: a binomial diffusion (``BinomialDiffusion``, Appendix D.2) of the
  20-bit heartbeat sequences (period 5, random offset: 5 equally likely sequences), with
  K against the independent-Bernoulli null model and the true log-likelihood -log2 5.

Training data is drawn fresh for every step from the ``genjax.keys.TOY_DATA`` stream.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import keys, viz
from genjax.data import SwissRoll, heartbeat_sequences, sample_heartbeat
from genjax.data.toy2d import SWISS_DIVISOR, SWISS_NOISE
from genjax.experiment.base import Experiment, check_common, local_slice, loss_update
from genjax.experiment.config import base_config
from genjax.models import sohl_dickstein as sd
from genjax.types import Params

DATA = ("swiss_roll", "heartbeat")
LOG2 = math.log(2.0)
HEARTBEAT_LENGTH = 20


def default_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the Sohl-Dickstein family's fields at the swiss-roll setup.

    ``model``: T = ``num_timesteps`` steps, the fixed ``beta_1`` and the final
    ``alpha_bar_T`` of the Gaussian schedule (``learn_beta`` learns the rest, Appendix
    D.1), and the reverse MLP (``hidden``, ``activation``). ``data``: ``name``, the swiss
    roll's ``noise`` (toy2d units) and its ``quadrature_grid``. ``train``: Adam at 2e-3
    with 200 warm-up steps, cosine decay and clipping at 1, batch 256, 8,000 steps.
    ``eval``: ``num_examples`` for K, ``quick_examples`` for the periodic evaluation,
    ``oracle_examples`` for the best-kernel bound (0: skipped), ``chunk`` and
    ``oracle_chunk`` examples per compiled call of the two bounds (speed and memory only:
    every example has its own key whatever the chunk), ``figure_samples`` points per
    panel of the figures.
    """
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "sohl_dickstein"
    c.model.num_timesteps = 40
    c.model.beta_1 = 1e-4
    c.model.final_alpha_bar = 1e-3
    c.model.learn_beta = True
    c.model.hidden = (256, 256, 256)
    c.model.activation = "relu"

    c.data.name = "swiss_roll"
    c.data.source = "toy"
    c.data.binarize = "none"
    c.data.noise = SWISS_NOISE
    c.data.quadrature_grid = 20_000

    c.train.num_steps = 8000
    c.train.batch_size = 256
    c.train.learning_rate = 2e-3
    c.train.schedule = "cosine"
    c.train.warmup_steps = 200
    c.train.decay_steps = 7800
    c.train.grad_clip = 1.0
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 2

    c.eval.num_examples = 20_000
    c.eval.quick_examples = 500
    c.eval.oracle_examples = 1000
    c.eval.chunk = 256
    c.eval.oracle_chunk = 16
    c.eval.figure_samples = 2000
    c.eval.num_grid = 2000
    return c


def mean_and_stderr(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of ``x`` (float64)."""
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0


def isotropic_gaussian_log_likelihood(x: np.ndarray) -> float:
    """Mean log-likelihood (nats) of ``x`` [n, d] under the ML isotropic Gaussian fitted to it:
    the null model of Sohl-Dickstein et al.'s Table 1."""
    x = np.asarray(x, np.float64)
    var = np.mean((x - x.mean(0)) ** 2)
    return -0.5 * x.shape[1] * (math.log(2.0 * math.pi * var) + 1.0)


def _check_config(config: ml_collections.ConfigDict) -> None:
    check_common(config)
    if config.data.name not in DATA:
        raise ValueError(f"data.name: expected one of {DATA} for the sohl_dickstein family, got {config.data.name!r}")
    if config.data.source != "toy":
        raise ValueError(f"data.source: the sohl_dickstein family draws its toy data itself; expected 'toy', got {config.data.source!r}")
    ev = config.eval
    for name in ("num_examples", "quick_examples", "chunk", "oracle_chunk", "figure_samples"):
        if ev[name] < 2:
            raise ValueError(f"eval.{name}: expected an int >= 2, got {ev[name]}")
    if ev.oracle_examples < 0:
        raise ValueError(f"eval.oracle_examples: expected a non-negative int, got {ev.oracle_examples}")
    if config.data.name == "heartbeat" and ev.oracle_examples % 5:
        raise ValueError(f"eval.oracle_examples: a multiple of 5 keeps the heartbeat offsets balanced, got {ev.oracle_examples}")
    if config.data.noise <= 0 or config.data.quadrature_grid < 2:
        raise ValueError(f"data.noise, data.quadrature_grid: expected a positive float and an int >= 2, got {config.data.noise}, {config.data.quadrature_grid}")


class _Parts(NamedTuple):
    """What the two data sets' builders differ in."""

    model: sd.Model
    batches: Callable[[int], dict[str, np.ndarray]]
    evaluate: Callable[[Params, jax.Array, bool], dict[str, float]]
    sample: Callable[[Params, jax.Array, int], np.ndarray]
    figures: Callable[[Params, jax.Array, pathlib.Path], list[pathlib.Path]]


def build(config: ml_collections.ConfigDict) -> Experiment:
    """The Sohl-Dickstein family; see the module docstring.

    ``Experiment.model`` is the ``GaussianDiffusion`` (swiss roll) or ``BinomialDiffusion``
    (heartbeat) of ``genjax.models.sohl_dickstein``.
    """
    _check_config(config)
    parts = _swiss_roll(config) if config.data.name == "swiss_roll" else _heartbeat(config)
    return Experiment(
        config=config,
        model=parts.model,
        init=parts.model.init,
        update=loss_update(config, sd.make_loss(parts.model), steps_per_epoch=0),
        batches=parts.batches,
        evaluate=parts.evaluate,
        sample=parts.sample,
        figures=parts.figures,
    )


def _heartbeat(config: ml_collections.ConfigDict) -> _Parts:
    """The binomial diffusion of the heartbeat sequences (see the module docstring)."""
    m, ev = config.model, config.eval
    model = sd.BinomialDiffusion(data_dim=HEARTBEAT_LENGTH, num_steps=m.num_timesteps, hidden=tuple(m.hidden), activation=m.activation)
    support = heartbeat_sequences(HEARTBEAT_LENGTH)
    draw = _compiled_sampler(model)

    def batches(step: int) -> dict[str, np.ndarray]:
        rng = keys.numpy_rng(config.seed, keys.TOY_DATA, step)
        return {"x0": local_slice(sample_heartbeat(rng, config.train.batch_size, HEARTBEAT_LENGTH))}

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        n = ev.num_examples if full else ev.quick_examples
        # Stratified: every offset equally often, so the expectation over x_0 is exact.
        x_eval = support[np.arange(n) % len(support)]
        bound = sd.evaluate_bound(model, params, x_eval, jax.random.fold_in(key, 1), chunk=ev.chunk)
        k, k_se = mean_and_stderr(bound["k"] / LOG2)
        l_null = sd.independent_bernoulli_log_likelihood(x_eval) / LOG2
        out: dict[str, float] = {
            "K_bits": k,
            "K_bits_stderr": k_se,
            "K_minus_independent_bits": k - l_null,
            "K_minus_independent_bits_stderr": k_se,
            "independent_L_null_bits": l_null,
            "true_log_likelihood_bits": -math.log2(len(support)),
            "num_examples": n,
        }
        if full:
            for offset in range(len(support)):
                out[f"K_offset{offset}_bits"] = float(np.mean(bound["k"][np.arange(n) % len(support) == offset]) / LOG2)
            samples = sample(params, jax.random.fold_in(key, 2), ev.figure_samples)[:, 0, :, 0]
            out["samples_valid_fraction"] = float(np.mean(np.any(np.all(samples[:, None, :] == support[None], axis=-1), axis=1)))
        if full and ev.oracle_examples:
            no = ev.oracle_examples
            best = sd.evaluate_bound(
                model, params, x_eval[:no], jax.random.fold_in(key, 1), chunk=ev.oracle_chunk, reverse=model.oracle_reverse(jnp.asarray(support))
            )
            out.update(_oracle(best["k"], bound["k"][:no]))
        return out

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        x = np.asarray(draw(params, key, num), np.float32)
        return x.reshape(num, 1, HEARTBEAT_LENGTH, 1)

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        samples = sample(params, key, 40)[:, 0, :, 0]
        return [viz.save_binary_sequences(workdir / "heartbeat.png", support, samples, title=f"40 samples of the reverse diffusion (T = {m.num_timesteps})")]

    return _Parts(model=model, batches=batches, evaluate=evaluate, sample=sample, figures=figures)


def _compiled_sampler(model: sd.Model) -> Callable[..., jax.Array]:
    """``model.sample`` compiled once per experiment (and per ``num``, ``trajectory``), so
    the evaluation, the figures and ``genjax sample`` reuse one program."""
    return jax.jit(model.sample, static_argnames=("num", "trajectory"))


def _oracle(best: np.ndarray, learned: np.ndarray) -> dict[str, float]:
    """The best kernels' bound and its paired gain over the learned model's, in bits."""
    ok, ok_se = mean_and_stderr(best / LOG2)
    gain, gain_se = mean_and_stderr((best - learned) / LOG2)
    return {
        "oracle_K_bits": ok,
        "oracle_K_bits_stderr": ok_se,
        "oracle_minus_learned_bits": gain,
        "oracle_minus_learned_bits_stderr": gain_se,
        "oracle_examples": int(best.shape[0]),
    }


def _swiss_roll(config: ml_collections.ConfigDict) -> _Parts:
    """The Gaussian diffusion of the standardised swiss roll (see the module docstring)."""
    m, ev = config.model, config.eval
    data = SwissRoll(noise=config.data.noise / SWISS_DIVISOR, grid=config.data.quadrature_grid)
    model = sd.GaussianDiffusion(
        data_dim=2,
        num_steps=m.num_timesteps,
        beta_1=m.beta_1,
        final_alpha_bar=m.final_alpha_bar,
        learn_beta=m.learn_beta,
        hidden=tuple(m.hidden),
        activation=m.activation,
    )
    data_key = keys.stream(config.seed, keys.TOY_DATA)
    draw = _compiled_sampler(model)

    def batches(step: int) -> dict[str, np.ndarray]:
        return {"x0": local_slice(data.sample(jax.random.fold_in(data_key, step), config.train.batch_size))}

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        n = ev.num_examples if full else ev.quick_examples
        x_eval = data.sample(jax.random.fold_in(key, 0), n)
        bound = sd.evaluate_bound(model, params, x_eval, jax.random.fold_in(key, 1), chunk=ev.chunk)
        k, k_se = mean_and_stderr(bound["k"] / LOG2)
        l_null = isotropic_gaussian_log_likelihood(x_eval) / LOG2
        diff, diff_se = mean_and_stderr(bound["k"] / LOG2 - l_null)
        out: dict[str, float] = {
            "K_bits": k,
            "K_bits_stderr": k_se,
            "K_minus_isotropic_bits": diff,
            "K_minus_isotropic_bits_stderr": diff_se,
            "isotropic_L_null_bits": l_null,
            "num_examples": n,
        }
        if not full:
            return out
        k14, k14_se = mean_and_stderr(bound["k_eq14"] / LOG2)
        ceiling, ceiling_se = mean_and_stderr(data.log_density(x_eval) / LOG2)
        samples = sample(params, jax.random.fold_in(key, 2), min(ev.figure_samples, n))
        betas = np.asarray(model.betas(params), np.float64)
        out.update(
            K_eq14_bits=k14,
            K_eq14_bits_stderr=k14_se,
            data_log_likelihood_bits=ceiling,
            data_log_likelihood_bits_stderr=ceiling_se,
            K_bits_toy2d_units=k - 2.0 * math.log2(data.scale),
            samples_median_data_log_density_bits=float(np.median(data.log_density(samples) / LOG2)),
            samples_within_3_noise_std_of_roll=float(np.mean(data.distance_to_roll(samples) < 3.0)),
            data_within_3_noise_std_of_roll=float(np.mean(data.distance_to_roll(x_eval[: samples.shape[0]]) < 3.0)),
            noise_std_standardised=data.noise / data.scale,
            scale=data.scale,
            alpha_bar_T=float(np.prod(1.0 - betas)),
        )
        if ev.oracle_examples:
            # The best diagonal-Gaussian kernels for this schedule: the data as a mixture of
            # Gaussians on the roll, with nodes at most half a noise std apart.
            centres = (data.nodes - data.mean) / data.scale
            sigma = data.noise / data.scale
            spacing = np.median(np.linalg.norm(np.diff(centres, axis=0), axis=1))
            centres = centres[:: max(1, int(0.5 * sigma / spacing))]
            no = ev.oracle_examples
            reverse = model.oracle_reverse(params, jnp.asarray(centres, jnp.float32), sigma**2)
            best = sd.evaluate_bound(model, params, x_eval[:no], jax.random.fold_in(key, 1), chunk=ev.oracle_chunk, reverse=reverse)
            out.update(_oracle(best["k"], bound["k"][:no]), oracle_nodes=int(centres.shape[0]))
        return out

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return np.asarray(draw(params, key, num))

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        """Fig. 1: the forward diffusion at t = 0, T/2, T and the reverse at t = T, T/2, 0."""
        n = ev.figure_samples
        k_data, k_rev, k_fwd = jax.random.split(key, 3)
        reverse_path = np.asarray(draw(params, k_rev, n, trajectory=True))
        x0 = jnp.asarray(data.sample(k_data, n))
        betas = model.betas(params)
        forward = {0: np.asarray(x0)}
        for i, t in enumerate((m.num_timesteps // 2, m.num_timesteps)):
            mean, var = model.forward_marginal(betas, x0, t)
            forward[t] = np.asarray(mean + jnp.sqrt(var) * jax.random.normal(jax.random.fold_in(k_fwd, i), x0.shape))
        title = f"Swiss roll (noise {config.data.noise:g}, standardised), Gaussian diffusion with T = {m.num_timesteps}: {n:,} samples per panel"
        return [viz.save_trajectories(workdir / "trajectories.png", forward, reverse_path, title=title)]

    return _Parts(model=model, batches=batches, evaluate=evaluate, sample=sample, figures=figures)
