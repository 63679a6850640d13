"""Inference-time search on a 2D Gaussian mixture with its exact denoiser (issue 19).

The data is ``p = GaussianMixture(eight_gaussians centres, std 0.1)``: the eight centres of
WGAN-GP's toy data (radius about 1.414) with a broader std, 0.1, so that a 10-step sampler
resolves the modes. The denoiser is the exact ``eps`` prediction of the DDPM forward process
on ``p`` (``GaussianMixture.denoiser``), so every difference between methods is the search
and the sampler's discretisation, not a learned network. The verifier is the Gaussian
log-density ``r(x) = log N(x; mu_0, tau^2 I)`` around the target mode ``mu_0`` (``tau =
0.5``), and the tilted target ``p(x) exp(lambda r(x)) / Z`` (``lambda = 1``) is again a
Gaussian mixture in closed form (``GaussianMixture.tilted``).

For each method of ``genjax.samplers.search`` (Ma et al. 2025, arXiv 2501.09732; Singhal et
al. 2025, arXiv 2501.06848) and each budget (a multiple of one 10-step DDPM pass) it draws
``--samples`` outputs for each of ``--seeds`` seeds and measures, against NFE per output:

* ``target_mode_fraction``: the outputs whose nearest centre is ``mu_0`` and lies within 3
  std (0.3) of it;
* ``verifier_score``: the mean of ``r`` over the outputs;
* ``kl``: ``KL(q || p_tilt)`` between the outputs' occupation of the 8 modes (nearest
  centre) and the tilted target's exact mode weights; a histogram over the 8 modes, which
  are 10 std apart, needs no density estimate of the outputs, is finite whenever the
  target's weights are positive, and its small-sample bias (about ``7 / (2 n)``) is shown
  by the row of exact target samples;
* ``sliced_wasserstein``: ``SW_2`` to 4,096 exact samples of the tilted target, which also
  sees the shape within each mode;
* ``cross_entropy``: ``-E_q log p_tilt(x)`` with the exact tilted log-density (compare
  ``target_entropy``, its value for exact samples; below it means the outputs sit in the
  target's densest region, above it that they miss the target's mass).

Usage::

    python experiments/search_toy/run.py --out experiments/search_toy
    python experiments/search_toy/run.py --out /tmp/search_toy --quick
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax import samplers as S
from genjax.data.toy2d import toy2d_modes
from genjax.experiment import positive_ints
from genjax.hardware import device_description
from genjax.metrics.toy2d import sliced_wasserstein
from genjax.models import diffusion as diff
from genjax.samplers import search as Q

MODE_STD = 0.1
TAU = 0.5
LAM = 1.0
TARGET = 0
NUM_TIMESTEPS = 1000
REFERENCE_SAMPLES = 4096
# method name -> (search method, fk potential or None, how the output is chosen, sampler).
# The default grid runs the DDPM rows; the two DDIM rows (deterministic given the initial
# noise, where a search over that noise has full control) are run with --methods.
METHODS: dict[str, tuple[str, str | None, str, str]] = {
    "random": ("random", None, "best", "ddpm"),
    "zero_order": ("zero_order", None, "best", "ddpm"),
    "paths": ("paths", None, "best", "ddpm"),
    "fk_max": ("fk", "max", "weighted", "ddpm"),
    "fk_difference": ("fk", "difference", "weighted", "ddpm"),
    "fk_sum": ("fk", "sum", "weighted", "ddpm"),
    "fk_max_best": ("fk", "max", "best", "ddpm"),
    "more_steps": ("more_steps", None, "best", "ddpm"),
    "random_ddim": ("random", None, "best", "ddim"),
    "zero_order_ddim": ("zero_order", None, "best", "ddim"),
}
DEFAULT_METHODS = tuple(m for m, spec in METHODS.items() if spec[3] == "ddpm")
SAMPLERS = {"ddpm": S.DDPM(clip_x0=False), "ddim": S.DDIM(clip_x0=False)}
PLAN_OPTIONS: dict[str, dict[str, int]] = {"zero_order": {"neighbours": 2}, "paths": {"rounds": 2, "copies": 2, "renoise": 1, "advance": 2}}
ZERO_ORDER_RADIUS = 0.5


def problem() -> tuple[S.GaussianMixture, S.GaussianMixture, S.Verifier]:
    """The data mixture ``p``, the exact tilted target and the verifier ``r``."""
    p = S.GaussianMixture(toy2d_modes("eight_gaussians"), MODE_STD)
    centre = p.means[TARGET]
    return p, p.tilted(centre, TAU, LAM), S.gaussian_log_reward(centre, TAU)


def search_fn(name: str, p_plan: Q.Plan, denoiser: S.Denoiser, abar: np.ndarray, verifier: S.Verifier) -> Callable[[jax.Array], jax.Array]:
    """One output of method ``name`` under ``p_plan`` as a function of its key.

    FK steering targets ``p exp(lam r)`` through its weighted particles: ``"weighted"``
    returns one particle drawn by its final weights (a draw from the weighted particle
    approximation); ``"best"`` returns the search's own choice, the top-scoring candidate.
    """
    _, potential, choice, _ = METHODS[name]
    options: dict[str, Any] = {}
    if p_plan.method == "zero_order":
        options["radius"] = ZERO_ORDER_RADIUS
    if p_plan.method == "fk":
        options.update(lam=LAM, potential=potential)

    def one(key: jax.Array) -> jax.Array:
        result = Q.run_search(key, denoiser, abar, (2,), plan=p_plan, verifier=verifier, **options)
        if choice == "weighted":
            assert result.log_weights is not None
            i = jax.random.categorical(jax.random.fold_in(key, 7919), result.log_weights)
            return result.samples[i]
        return result.sample

    return one


def metrics(x: np.ndarray, p: S.GaussianMixture, tilted: S.GaussianMixture, verifier: S.Verifier, reference: jax.Array, key: jax.Array) -> dict[str, float]:
    """The four metrics (and the cross-entropy) of one seed's outputs ``x [n, 2]``."""
    xj = jnp.asarray(x, jnp.float32)
    nearest = np.asarray(p.nearest(xj))
    dist = np.linalg.norm(x - p.means[nearest], axis=-1)
    counts = np.bincount(nearest, minlength=p.means.shape[0]) / x.shape[0]
    q = counts[counts > 0]
    kl = float(np.sum(q * (np.log(q) - tilted.log_weights[counts > 0])))
    return {
        "target_mode_fraction": float(np.mean((nearest == TARGET) & (dist <= 3 * MODE_STD))),
        "verifier_score": float(np.mean(np.asarray(jax.vmap(lambda v: verifier(v, None))(xj)))),
        "kl": kl,
        "sliced_wasserstein": float(sliced_wasserstein(key, xj, reference)),
        "cross_entropy": float(-np.mean(np.asarray(tilted.log_prob(xj)))),
    }


def summarise(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """Mean over seeds of each metric, with its standard deviation across seeds (``*_sd``)."""
    out: dict[str, Any] = {}
    for k in per_seed[0]:
        values = np.array([m[k] for m in per_seed])
        out[k] = float(values.mean())
        out[f"{k}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs every (method, budget) cell and the reference rows; returns the results dict."""
    tic = time.perf_counter()
    p, tilted, verifier = problem()
    abar = np.asarray(diff.make_schedule(diff.beta_schedule("linear", NUM_TIMESTEPS)).alphas_cumprod, np.float32)
    denoiser = p.denoiser(abar)
    base = SAMPLERS["ddpm"].num_evaluations(args.steps)
    reference = tilted.sample(jax.random.key(10_000), REFERENCE_SAMPLES)
    target_entropy = float(-np.mean(np.asarray(tilted.log_prob(tilted.sample(jax.random.key(10_001), 100_000)))))
    seeds, n = args.seeds, args.samples
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []

    def add(row: dict[str, Any], xs: np.ndarray) -> None:
        per_seed = [metrics(xs[s], p, tilted, verifier, reference, jax.random.key(20_000 + s)) for s in range(seeds)]
        row.update(summarise(per_seed), seeds=seeds, samples_per_seed=n)
        rows.append(row)
        print(
            f"{row['method']:>14} x{row['budget_multiple']:<3} nfe {row['nfe']:>5}  mode {row['target_mode_fraction']:.3f}  r {row['verifier_score']:7.3f}  "
            f"kl {row['kl']:.3f}  sw {row['sliced_wasserstein']:.3f}  ({row.get('seconds', 0.0):.1f} s)",
            flush=True,
        )

    for label, dist in (("exact_tilted_target", tilted), ("exact_data", p)):
        xs = np.stack([np.asarray(dist.sample(jax.random.key(30_000 + s), n)) for s in range(seeds)])
        add({"method": label, "nfe": 0, "budget_multiple": 0, "budget": 0}, xs)

    keys = jax.random.split(jax.random.key(args.seed), seeds * n)
    for name in args.methods:
        method, sampler = METHODS[name][0], SAMPLERS[METHODS[name][3]]
        for multiple in args.budgets:
            budget = multiple * base
            steps = None if method == "more_steps" else args.steps
            try:
                p_plan = Q.plan(method, budget, sampler, num_timesteps=NUM_TIMESTEPS, steps=steps, **PLAN_OPTIONS.get(method, {}))
            except ValueError as err:
                skipped.append({"method": name, "budget_multiple": multiple, "budget": budget, "reason": str(err)})
                print(f"{name:>14} x{multiple:<3} skipped: {err}", flush=True)
                continue
            start = time.perf_counter()
            fn = jax.jit(jax.vmap(search_fn(name, p_plan, denoiser, abar, verifier)))
            xs = np.asarray(jax.block_until_ready(fn(keys)), np.float64).reshape(seeds, n, 2)
            row = {
                "method": name,
                "nfe": p_plan.nfe,
                "budget_multiple": multiple,
                "budget": budget,
                "steps": p_plan.steps,
                "candidates": p_plan.candidates,
                "rounds": p_plan.rounds,
                "seconds": time.perf_counter() - start,
            }
            add(row, xs)
    wall = time.perf_counter() - tic
    return {
        "rows": rows,
        "skipped": skipped,
        "command": " ".join(["python", *sys.argv]),
        "wall_time_s": wall,
        "hardware": device_description(),
        "jax_version": jax.__version__,
        "setup": {
            "modes": p.means.tolist(),
            "mode_std": MODE_STD,
            "target_mode": TARGET,
            "tau": TAU,
            "lam": LAM,
            "tilted_weights": tilted.weights.tolist(),
            "tilted_std": tilted.std,
            "target_entropy": target_entropy,
            "sampler": "ddpm (small variance, no x0 clipping); *_ddim rows: ddim (eta 0, no x0 clipping)",
            "num_timesteps": NUM_TIMESTEPS,
            "base_steps": args.steps,
            "base_nfe": base,
            "plan_options": PLAN_OPTIONS,
            "zero_order_radius": ZERO_ORDER_RADIUS,
            "reference_samples": REFERENCE_SAMPLES,
        },
    }


METRICS = (
    ("target_mode_fraction", "fraction in the target mode"),
    ("verifier_score", "mean verifier score r(x)"),
    ("kl", "KL(q || p_tilt) over the 8 modes"),
    ("sliced_wasserstein", "sliced W2 to the tilted target"),
)


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    """One panel per metric against NFE (log x), one curve per method; exact rows dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4))
    rows = results["rows"]
    names = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        for i, name in enumerate(names):
            pts = sorted((r["nfe"], r[key], r[f"{key}_sd"]) for r in rows if r["method"] == name)
            nfe, val, sd = (np.array(v) for v in zip(*pts, strict=True))
            ax.errorbar(nfe, val, yerr=sd, marker="o", ms=3, capsize=2, label=name, color=f"C{i}")
        for label, style in (("exact_tilted_target", "--"), ("exact_data", ":")):
            ref = [r[key] for r in rows if r["method"] == label]
            if ref:
                ax.axhline(ref[0], color="k", ls=style, lw=1, label=label)
        ax.set_xscale("log")
        if key == "kl":
            ax.set_yscale("log")
        ax.set_xlabel("NFE per output sample")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_tables(results: dict[str, Any]) -> str:
    """One markdown table per metric: a row per method, a column per budget multiple."""
    rows = results["rows"]
    multiples = sorted({r["budget_multiple"] for r in rows if r["nfe"] > 0})
    names = [m for m in METHODS if any(r["method"] == m for r in rows)]
    exact = {r["method"]: r for r in rows if r["nfe"] == 0}
    parts = []
    for key, title in METRICS:
        refs = ", ".join(f"{label} {r[key]:.3f}" for label, r in exact.items())
        lines = [f"**{title}** (mean +- sd over seeds; {refs})", "", "| method | " + " | ".join(f"{m}x" for m in multiples) + " |"]
        lines.append("| --- |" + " --- |" * len(multiples))
        for name in names:
            cells = []
            for m in multiples:
                hit = [r for r in rows if r["method"] == name and r["budget_multiple"] == m]
                cells.append(f"{hit[0][key]:.3f} +- {hit[0][key + '_sd']:.3f}" if hit else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parses the arguments, runs the grid, writes ``results.json`` and ``metrics.png``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (independent sets of outputs) per cell")
    parser.add_argument("--samples", type=int, default=128, help="outputs per seed")
    parser.add_argument("--steps", type=int, default=10, help="DDPM steps of one base pass")
    parser.add_argument("--budgets", type=positive_ints, default=(1, 2, 4, 8, 16, 32, 64), help="budget multiples of one base pass")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated methods of {list(METHODS)}")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the outputs' keys")
    parser.add_argument("--render", default=None, help="only redraw metrics.png and tables.md in --out from this results.json")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 steps, budget 3x, 2 seeds of 16 outputs")
    args = parser.parse_args(argv)
    args.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; expected some of {list(METHODS)}")
    if args.quick:
        args.seeds, args.samples, args.steps, args.budgets = 2, 16, 4, (3,)
    if args.seeds < 1 or args.samples < 2:
        parser.error("--seeds: expected >= 1 and --samples >= 2")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render:
        results = json.loads(pathlib.Path(args.render).read_text())
    else:
        results = run(args)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out / "metrics.png")
    (out / "tables.md").write_text(markdown_tables(results))
    print(f"wrote metrics.png and tables.md in {out} (results.json: {results['wall_time_s']:.1f} s of wall time)")
    if not all(math.isfinite(r["kl"]) for r in results["rows"]):
        raise SystemExit("a cell produced a non-finite KL")
    return results


if __name__ == "__main__":
    main()
