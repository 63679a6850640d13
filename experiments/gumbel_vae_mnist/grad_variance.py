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
draws with a baseline from an independent batch (unbiased; its own sampling error is
subtracted as well). Gumbel-softmax is biased because it differentiates the relaxed
model; the straight-through variants because their backward pass is not the forward's.
Writes grad_variance.png and grad_variance.json next to this script.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from genjax import cli, estimators  # noqa: E402
from genjax.models import gumbel  # noqa: E402
from genjax.models.vae import bernoulli_log_prob  # noqa: E402
from genjax.tasks.base import eval_images  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)
ANNEALED = ("gumbel_softmax", "st_gumbel_softmax", "annealed_straight_through")


def make_logit_gradient(model: gumbel.DiscreteVAE, params: dict) -> Callable[..., jax.Array]:
    """``grad(x, logits, key, baseline, estimator, tau)``: one draw of d(-ELBO)/d(logits)."""

    def neg_elbo(logits: jax.Array, x: jax.Array, key: jax.Array, baseline: jax.Array, estimator: str, tau: jax.Array) -> jax.Array:
        z = gumbel.sample_latent(key, logits, model.latent, estimator, tau)
        cost = -bernoulli_log_prob(x, model.apply(params, z, method=gumbel.DiscreteVAE.decode))
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
    def moments(logits: jax.Array, x: jax.Array, key: jax.Array, baselines: jax.Array, tau: jax.Array, *, estimator: str, chunk: int) -> tuple[jax.Array, jax.Array]:
        def one(lg: jax.Array, xi: jax.Array, ki: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
            g = jax.vmap(lambda kk: grad_fn(lg, xi, kk, b, estimator, tau))(jax.random.split(ki, chunk))
            mean = jnp.mean(g, 0)
            return mean, jnp.sum((g - mean[None]) ** 2, 0)

        return jax.vmap(one)(logits, x, jax.random.split(key, x.shape[0]), baselines)

    return moments


def draws(moments: Callable[..., tuple[jax.Array, jax.Array]], logits: jax.Array, x: jax.Array, key: jax.Array, num: int, estimator: str, tau: float, baselines: jax.Array, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and per-coordinate variance over ``num`` draws, per example: [B, 20, 10] each.

    Draws are made ``chunk`` at a time; the chunks' means and sums of squared
    deviations are combined in float64 (Chan et al.'s pairwise update), which avoids the
    cancellation of E[g^2] - E[g]^2 when the variance is small.
    """
    if num % chunk:
        raise ValueError(f"num: expected a multiple of {chunk}, got {num}")
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
    config, _, state = cli.load_run(args.workdir)
    if config.model.family != "discrete_vae":
        parser.error(f"--workdir: expected a discrete_vae run, got model.family={config.model.family!r}")
    latent = gumbel.DiscreteLatent(config.model.latent, config.model.num_vars, config.model.num_classes)
    model = gumbel.DiscreteVAE(latent=latent, data_dim=int(np.prod(config.data.image_shape)), hidden=tuple(config.model.hidden), activation=config.model.activation)
    params = state.params
    x = eval_images(config)[: args.examples].reshape(args.examples, -1)
    key = jax.random.key(0)
    x = jnp.asarray(x)
    logits = jax.vmap(lambda xi: model.apply(params, xi, method=gumbel.DiscreteVAE.encode))(x)
    moments = make_chunk_moments(make_logit_gradient(model, params))
    baselines = mean_costs(model, params, x, jax.random.fold_in(key, 1), 1000)
    chunk = min(250, args.samples)
    ref_mean, ref_var = draws(moments, logits, x, jax.random.fold_in(key, 2), args.reference_samples, "score_function", 1.0, baselines, chunk)
    ref_noise = ref_var.sum(axis=(1, 2)) / args.reference_samples

    def summary(mean: np.ndarray, var: np.ndarray) -> dict:
        tr = var.sum(axis=(1, 2))
        bias2 = ((mean - ref_mean) ** 2).sum(axis=(1, 2)) - tr / args.samples - ref_noise
        return {"variance": float(tr.mean()), "bias2": float(bias2.mean())}

    if min(args.temperatures) <= 0:
        parser.error(f"--temperatures: expected positive numbers, got {args.temperatures}")
    results: dict = {"temperatures": args.temperatures, "examples": args.examples, "samples": args.samples, "reference_samples": args.reference_samples, "workdir": args.workdir, "step": int(state.step)}
    results["reference_noise"] = float(ref_noise.mean())
    for estimator in ("score_function", "straight_through"):
        results[estimator] = summary(*draws(moments, logits, x, jax.random.fold_in(key, 3), args.samples, estimator, 1.0, baselines, chunk))
        print(estimator, results[estimator], flush=True)
    for estimator in ANNEALED:
        results[estimator] = [summary(*draws(moments, logits, x, jax.random.fold_in(key, 4 + i), args.samples, estimator, tau, baselines, chunk)) for i, tau in enumerate(args.temperatures)]
        print(estimator, results[estimator], flush=True)
    out = pathlib.Path(args.out)
    (out / "grad_variance.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "grad_variance.png")
    return 0


def plot(results: dict, path: pathlib.Path) -> None:
    """Variance and bias^2 against temperature, one line per estimator."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    taus = results["temperatures"]
    for ax, stat in zip(axes, ("variance", "bias2")):
        for i, name in enumerate(ANNEALED):
            ax.plot(taus, [max(r[stat], 1e-6) for r in results[name]], "o-", color=f"C{i}", label=name)
        for i, name in enumerate(("score_function", "straight_through")):
            ax.axhline(max(results[name][stat], 1e-6), color=f"C{i + 3}", ls="--", label=f"{name} (no temperature)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("temperature tau")
        ax.set_title("trace of gradient covariance" if stat == "variance" else "squared bias (vs exact gradient)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"d(-ELBO)/d(logits), categorical VAE at step {results['step']}, {results['examples']} test images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
