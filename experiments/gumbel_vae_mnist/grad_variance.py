"""Bias and variance of the gradient estimators against the temperature, on a trained
categorical VAE (the trade-off of Jang, Gu & Poole, arXiv:1611.01144, section 2-3).

    python experiments/gumbel_vae_mnist/grad_variance.py \
        --workdir runs/gumbel_vae_mnist/categorical_gumbel_softmax

For ``--examples`` test images the script estimates, per estimator and temperature, the
gradient of the negative ELBO of the *discrete* model with respect to the encoder's
logits (20 x 10 per image; the encoder's parameter gradient is this times a fixed
Jacobian). With ``--samples`` draws it reports

* variance: the trace of the covariance of one draw of the estimator;
* bias^2: the squared distance between the estimator's mean and the exact gradient,
  less the part due to finite samples.

The exact gradient is replaced by the mean of ``--reference-samples`` score-function
draws with a per-example baseline (the mean cost of 1,000 independent exact samples),
which is unbiased; its own sampling error is subtracted as well and drawn as the
resolution below which a squared bias cannot be told from zero. Two score-function
rows are shown: with that per-example ("oracle") baseline, and with one scalar baseline
for all images, the mean of the per-example ones, which is what the moving-average
baseline of training tracks. Gumbel-softmax is biased because it differentiates the relaxed
model; the straight-through variants because their backward pass is not the forward's.
Writes grad_variance.png and grad_variance.json next to this script.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genjax import estimators, experiment
from genjax.distributions import bernoulli_log_prob
from genjax.experiment.base import eval_images
from genjax.models import gumbel
from genjax.models.gumbel import ANNEALED
from genjax.train.checkpoint import CheckpointError

HERE = pathlib.Path(__file__).resolve().parent
TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)
FIXED = ("score_function", "score_function_scalar_baseline", "straight_through")


def make_logit_gradient(model: gumbel.DiscreteVAE, params: dict) -> Callable[..., jax.Array]:
    """``grad(x, logits, key, baseline, estimator, tau)``: one draw of d(-ELBO)/d(logits)."""

    def neg_elbo(logits: jax.Array, x: jax.Array, key: jax.Array, baseline: jax.Array, estimator: str, tau: jax.Array) -> jax.Array:
        z = gumbel.sample_latent(key, logits, model.latent, estimator, tau)
        cost = -jnp.sum(bernoulli_log_prob(x, model.apply(params, z, method=gumbel.DiscreteVAE.decode)))
        if estimator == "score_function":
            log_q = gumbel.latent_log_prob(jax.lax.stop_gradient(z), logits, model.latent)
            cost = estimators.score_function_surrogate(cost, log_q, baseline)
        return cost + gumbel.latent_kl(logits, model.latent)

    return jax.grad(neg_elbo)


def make_chunk_moments(grad_fn: Callable[..., jax.Array]) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """A jitted ``moments(logits, x, key, baselines, tau, estimator=, chunk=)``.

    For each example it draws ``chunk`` gradients and returns their mean and sum of
    squared deviations. The temperature is traced, so each estimator compiles once.
    """

    @functools.partial(jax.jit, static_argnames=("estimator", "chunk"))
    def moments(
        logits: jax.Array, x: jax.Array, key: jax.Array, baselines: jax.Array, tau: jax.Array, *, estimator: str, chunk: int
    ) -> tuple[jax.Array, jax.Array]:
        def one(lg: jax.Array, xi: jax.Array, ki: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
            g = jax.vmap(lambda kk: grad_fn(lg, xi, kk, b, estimator, tau))(jax.random.split(ki, chunk))
            mean = jnp.mean(g, 0)
            return mean, jnp.sum((g - mean[None]) ** 2, 0)

        return jax.vmap(one)(logits, x, jax.random.split(key, x.shape[0]), baselines)

    return moments


def draws(
    moments: Callable[..., tuple[jax.Array, jax.Array]],
    logits: jax.Array,
    x: jax.Array,
    key: jax.Array,
    num: int,
    estimator: str,
    tau: float,
    baselines: jax.Array,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and per-coordinate variance over ``num`` draws, per example: [B, 20, 10] each.

    Draws are made ``chunk`` at a time; the chunks' means and sums of squared
    deviations are combined in float64 (Chan et al.'s pairwise update), which avoids the
    cancellation of E[g^2] - E[g]^2 when the variance is small.
    """
    chunk = math.gcd(num, 250)
    parts = [moments(logits, x, jax.random.fold_in(key, c), baselines, jnp.float32(tau), estimator=estimator, chunk=chunk) for c in range(num // chunk)]
    means = np.asarray([p[0] for p in parts], np.float64)
    m2 = np.sum(np.asarray([p[1] for p in parts], np.float64), 0) + chunk * np.sum((means - means.mean(0)) ** 2, 0)
    return means.mean(0), m2 / (num - 1)


def mean_costs(model: gumbel.DiscreteVAE, params: dict, x: np.ndarray, key: jax.Array, num: int) -> jax.Array:
    """Per-example mean reconstruction cost over ``num`` exact samples: the SF baseline."""

    def one(xi: jax.Array, ki: jax.Array) -> jax.Array:
        log_lik, _, _ = jax.vmap(lambda kk: gumbel.vae_terms(model, params, xi, kk, "score_function", 1.0))(jax.random.split(ki, num))
        return -jnp.mean(log_lik)

    return jax.jit(jax.vmap(one))(jnp.asarray(x), jax.random.split(key, x.shape[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a trained categorical discrete_vae run")
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--reference-samples", type=int, default=20_000)
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES))
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    try:
        run = experiment.load_run(args.workdir)
    except (FileNotFoundError, CheckpointError) as err:
        parser.error(str(err))
    config = run.config
    if config.model.family != "discrete_vae":
        parser.error(f"--workdir: expected a discrete_vae run, got model.family={config.model.family!r}")
    if min(args.examples, args.samples, args.reference_samples) < 2:
        parser.error("--examples, --samples, --reference-samples: expected ints >= 2")
    model = run.experiment.model
    params = run.params
    x = eval_images(config)[: args.examples].reshape(args.examples, -1)
    key = jax.random.key(0)
    x = jnp.asarray(x)
    logits = jax.vmap(lambda xi: model.apply(params, xi, method=gumbel.DiscreteVAE.encode))(x)
    moments = make_chunk_moments(make_logit_gradient(model, params))
    baselines = mean_costs(model, params, x, jax.random.fold_in(key, 1), 1000)
    ref_mean, ref_var = draws(moments, logits, x, jax.random.fold_in(key, 2), args.reference_samples, "score_function", 1.0, baselines)
    axes = tuple(range(1, ref_mean.ndim))
    ref_noise = ref_var.sum(axis=axes) / args.reference_samples

    def summary(mean: np.ndarray, var: np.ndarray) -> dict:
        tr = var.sum(axis=axes)
        bias2 = ((mean - ref_mean) ** 2).sum(axis=axes) - tr / args.samples - ref_noise
        return {"variance": float(tr.mean()), "bias2": float(bias2.mean())}

    if min(args.temperatures) <= 0:
        parser.error(f"--temperatures: expected positive numbers, got {args.temperatures}")
    results: dict = {
        "temperatures": args.temperatures,
        "examples": args.examples,
        "samples": args.samples,
        "reference_samples": args.reference_samples,
        "workdir": args.workdir,
        "step": int(run.state.step),
    }
    results["reference_noise"] = float(ref_noise.mean())
    scalar = jnp.full_like(baselines, jnp.mean(baselines))
    for i, (name, estimator, b) in enumerate(
        (
            ("score_function", "score_function", baselines),
            ("score_function_scalar_baseline", "score_function", scalar),
            ("straight_through", "straight_through", baselines),
        )
    ):
        results[name] = summary(*draws(moments, logits, x, jax.random.fold_in(key, 3 + 100 * i), args.samples, estimator, 1.0, b))
        print(name, results[name], flush=True)
    for estimator in ANNEALED:
        results[estimator] = [
            summary(*draws(moments, logits, x, jax.random.fold_in(key, 4 + i), args.samples, estimator, tau, baselines))
            for i, tau in enumerate(args.temperatures)
        ]
        print(estimator, results[estimator], flush=True)
    out = pathlib.Path(args.out)
    (out / "grad_variance.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "grad_variance.png")
    return 0


def plot(results: dict, path: pathlib.Path) -> None:
    """Variance and squared bias against temperature, one line per estimator."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    taus = results["temperatures"]
    floor = results["reference_noise"]
    for ax, stat in zip(axes, ("variance", "bias2")):
        for i, name in enumerate(ANNEALED):
            values = np.array([r[stat] for r in results[name]])
            ax.plot(taus, np.maximum(values, floor * 1e-2), "o-", color=f"C{i}", label=name)
        for i, name in enumerate(FIXED):
            if stat == "bias2" and name.startswith("score_function"):
                continue  # unbiased by construction (tests/test_estimators.py); its estimate here is noise
            ax.axhline(max(results[name][stat], floor * 1e-2), color=f"C{i + 3}", ls="--", label=f"{name} (no temperature)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("temperature tau")
        ax.grid(alpha=0.3)
    axes[0].set_title("variance: trace of the covariance of one draw")
    axes[1].axhline(floor, color="k", ls=":", label="resolution (reference noise)")
    axes[1].set_title("squared bias vs the exact gradient (score function: 0)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"d(-ELBO)/d(encoder logits), categorical VAE at step {results['step']}, {results['examples']} test images, {results['samples']} draws")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
