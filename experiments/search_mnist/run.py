"""Inference-time search on class-conditional MNIST: verifier score and a held-out check vs NFE.

Ma et al. (2025, arXiv 2501.09732) scale a diffusion model's inference compute by
searching over sampling noise with a verifier instead of only adding denoising steps;
Singhal et al. (2025, arXiv 2501.06848) steer particles with Feynman-Kac potentials of a
reward. This script measures both on genjax's class-conditional MNIST DDPM (the
``experiments/cfg_mnist`` run), guided at a fixed scale ``w`` (``genjax.samplers.guided``):

* verifier: the shipped MNIST classifier's ``log p(intended digit | x)``
  (``genjax.samplers.verifiers.classifier_verifier``);
* methods: ``random``, ``zero_order``, ``paths``, ``fk`` (``genjax.samplers.search``) and
  the baseline ``more_steps`` (one sample with the whole budget as DDIM steps);
* budgets: multiples of a base of one ``--steps``-step DDIM pass, in network
  evaluations (NFE) per output sample, planned by ``genjax.samplers.search.plan`` (the
  NFE reported is ``plan.nfe``; a cell whose smallest plan does not fit is skipped and
  listed in ``skipped``).

Per cell: the mean verifier score; the accuracy of a held-out classifier
(``heldout.py``: another architecture and seed, never seen by the search) on the
intended digits, so that exploiting the verifier shows as a gap between the verifier's
accuracy and the held-out one; the shipped classifier's accuracy; the classifier Frechet
distance of the cell's samples against the test set (compare only equal sample counts,
``num``); wall time. Writes ``results.json``, ``scores.png``, ``frechet.png`` and
``grid_<method>.png`` into ``--out``.

Usage::

    python experiments/search_mnist/run.py --workdir runs/cfg_mnist

``--quick`` is for tests: a 2-step base, budgets 1x and 4x (unless ``--budgets``), one output per digit and 200
test images, on any trained class-conditional run; images that are not 28x28x1 (the
``tiny`` preset's 8x8) are resized to 28x28 before both classifiers and the verifier see
them. It checks the plumbing and the schema, not the numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from genjax import experiment, viz
from genjax import samplers as samplers_lib
from genjax.experiment.base import load_split
from genjax.experiment.ddpm import guided_denoiser_of, sampler_options
from genjax.hardware import device_description
from genjax.metrics import MNISTClassifier, frechet_distance_from_features, load_mnist_classifier, mnist_accuracy, mnist_features
from genjax.samplers import search
from genjax.samplers.verifiers import classifier_verifier

HERE = pathlib.Path(__file__).resolve().parent
METHODS = ("random", "zero_order", "paths", "fk", "more_steps")
BUDGETS = (1, 4, 16, 64)
MNIST_HW = (28, 28)
# Structural options of the searches (plan() buys the scaled axis with the budget).
NEIGHBOURS = 3  # zero-order: neighbours per round; 4 passes buy the first round
FK_ETA = 1.0  # fk: a stochastic DDIM proposal (resampled duplicates must be able to diverge)
FK_LAM = 10.0  # fk: the tilt lambda of p(x) exp(lambda r(x)), r = log p(c | x) <= 0
ZERO_ORDER_RADIUS = 0.5  # zero-order: neighbour distance as a fraction of sqrt(d), a Gaussian draw's norm


def _load_heldout() -> Any:
    """``heldout.py`` as a module (registered in ``sys.modules``: flax dataclasses need it)."""
    name = "search_mnist_heldout"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "heldout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def to_mnist(x: jax.Array) -> jax.Array:
    """Model-scale samples ``[B, H, W, C]`` as ``[B, 28, 28, 1]`` in [-1, 1] (channel mean, resize)."""
    x = jnp.mean(jnp.asarray(x, jnp.float32), axis=-1, keepdims=True)
    if x.shape[1:3] != MNIST_HW:
        x = jax.image.resize(x, (x.shape[0], *MNIST_HW, 1), "linear")
    return x


def to_pixels(samples: np.ndarray) -> np.ndarray:
    """Model-scale samples as 8-bit-quantised 28x28x1 images in [0, 1] (as a user saves them)."""
    images = np.asarray(to_mnist(jnp.asarray(samples)))
    return np.round(np.clip((images + 1.0) / 2.0, 0.0, 1.0) * 255.0) / 255.0


def make_verifier(classifier: Any) -> samplers_lib.verifiers.Verifier:
    """``log p(label | x)`` under the shipped classifier, for samples of any image shape."""
    logits = classifier_verifier(lambda images: MNISTClassifier().apply(classifier, images)[0])
    return lambda x, label: logits(to_mnist(x[None])[0], label)


def build_plan(method: str, budget: int, sampler: samplers_lib.Sampler, steps: int, num_timesteps: int) -> search.Plan:
    """The plan of one cell: ``steps`` per pass for the searches, the budget as steps for ``more_steps``."""
    if method == "more_steps":
        return search.plan("more_steps", budget, sampler, num_timesteps=num_timesteps)
    if method == "zero_order":
        return search.plan(method, budget, sampler, num_timesteps=num_timesteps, steps=steps, neighbours=NEIGHBOURS)
    return search.plan(method, budget, sampler, num_timesteps=num_timesteps, steps=steps)


def make_cell_fn(
    run: Any, plan: search.Plan, verifier: Callable[..., jax.Array], shape: tuple[int, ...], guidance: float
) -> Callable[[jax.Array, jax.Array], search.SearchResult]:
    """``fn(keys [B], labels [B]) -> SearchResult`` batched over output samples, jitted."""
    model = run.experiment.model
    num_classes = run.config.model.num_classes
    make = guided_denoiser_of(model.diffusion, model.apply, num_classes)
    abar = model.diffusion.schedule.alphas_cumprod
    options: dict[str, Any] = {}
    if plan.method == "fk":
        options = {"lam": FK_LAM, "potential": "max"}
    elif plan.method == "zero_order":
        options = {"radius": ZERO_ORDER_RADIUS * float(np.sqrt(np.prod(shape)))}

    def one(key: jax.Array, label: jax.Array) -> search.SearchResult:
        denoiser = make(run.params, {"label": label, "guidance": jnp.float32(guidance)})
        return search.run_search(key, denoiser, abar, shape, plan=plan, verifier=verifier, condition=label, **options)

    return jax.jit(jax.vmap(one))


def run_cell(fn: Callable[..., search.SearchResult], keys: jax.Array, labels: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The chosen samples and their verifier scores for every output, ``chunk`` at a time."""
    num = len(labels)
    padded = -(-num // chunk) * chunk
    idx = np.arange(padded) % num  # pad by repeating, so every call has one shape
    samples, scores = [], []
    for lo in range(0, padded, chunk):
        sel = idx[lo : lo + chunk]
        result = search.check_scores(fn(keys[sel], jnp.asarray(labels[sel], jnp.int32)))
        samples.append(np.asarray(result.sample))
        scores.append(np.asarray(result.score))
    return np.concatenate(samples)[:num], np.concatenate(scores)[:num]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained class-conditional cfg_mnist run (read only)")
    parser.add_argument("--out", default=str(HERE), help="where results.json and the figures go")
    parser.add_argument("--per-class", type=int, default=5, help="output samples of each digit per cell")
    parser.add_argument("--large-per-class", type=int, default=0, help="per-class for budgets >= 64x (0: --per-class)")
    parser.add_argument("--budgets", default=None, help=f"comma-separated multiples of the base budget (default {','.join(map(str, BUDGETS))}; --quick: 1,4)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {METHODS}")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps of one pass: the base budget in NFE")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale w")
    parser.add_argument("--images-per-call", type=int, default=640, help="network batch per compiled call (chunks outputs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings for tests (see the module docstring)")
    args = parser.parse_args(argv)
    try:
        budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else ((1, 4) if args.quick else BUDGETS)
        methods = tuple(m.strip() for m in args.methods.split(","))
    except ValueError as err:
        parser.error(f"--budgets: {err}")
    for m in methods:
        if m not in METHODS:
            parser.error(f"--methods: expected names from {METHODS}, got {m!r}")
    if args.quick:
        args.steps, args.per_class, args.large_per_class = 2, 1, 0
    if min(budgets) < 1 or args.per_class < 1 or args.steps < 1:
        parser.error("--budgets, --per-class and --steps must be positive")
    return experiment_main(args, budgets, methods, argv)


def experiment_main(args: argparse.Namespace, budgets: tuple[int, ...], methods: tuple[str, ...], argv: Sequence[str] | None) -> int:
    tic = time.perf_counter()
    run = experiment.load_run(args.workdir)
    num_classes = run.config.model.num_classes
    if not num_classes:
        raise SystemExit(f"--workdir: {args.workdir} holds an unconditional model (model.num_classes = 0)")
    model = run.experiment.model
    shape = tuple(int(d) for d in model.image_shape)
    num_timesteps = int(model.diffusion.schedule.alphas_cumprod.shape[0])
    classifier = load_mnist_classifier()
    heldout_mod = _load_heldout()
    heldout = heldout_mod.load_heldout()
    verifier = make_verifier(classifier)
    test = load_split(run.config, "test") if not args.quick else None
    if test is None:  # --quick: MNIST test images straight from the offline file
        from genjax.data import load_dataset

        test = load_dataset("mnist", "test", source="offline")
    test_images = test.images[:200] if args.quick else test.images
    test_features = mnist_features(classifier, test_images)
    ddim = samplers_lib.get_sampler("ddim", **sampler_options(model.diffusion, "ddim", 0.0))
    ddim_fk = samplers_lib.get_sampler("ddim", **sampler_options(model.diffusion, "ddim", FK_ETA))
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    grids: dict[tuple[str, int], np.ndarray] = {}
    base_key = jax.random.key(args.seed)
    for method in methods:
        for mult in budgets:
            budget = mult * args.steps
            try:
                plan = build_plan(method, budget, ddim_fk if method == "fk" else ddim, args.steps, num_timesteps)
            except ValueError as err:
                skipped.append({"method": method, "budget": budget, "reason": str(err)})
                print(f"{method:10s} {budget:5d} NFE: skipped ({err})", flush=True)
                continue
            per_class = args.large_per_class if (mult >= 64 and args.large_per_class) else args.per_class
            labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
            # Common random numbers: output i uses the same key in every cell.
            keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(jnp.arange(len(labels)))
            width = plan.candidates * (plan.copies if method == "paths" else 1)
            chunk = max(1, min(len(labels), args.images_per_call // width))
            start = time.perf_counter()
            fn = make_cell_fn(run, plan, verifier, shape, args.guidance)
            samples, scores = run_cell(fn, keys, labels, chunk)
            seconds = time.perf_counter() - start
            images = to_pixels(samples)
            features = mnist_features(classifier, images)
            row = {
                "method": method,
                "budget_multiple": mult,
                "budget": budget,
                "nfe": plan.nfe,
                "verifier_score": float(np.mean(scores)),
                "heldout_accuracy": heldout_mod.heldout_accuracy(heldout, images, labels),
                "frechet_distance": frechet_distance_from_features(features, test_features),
                "verifier_accuracy": mnist_accuracy(classifier, images, labels),
                "num": len(labels),
                "steps": plan.steps,
                "candidates": plan.candidates,
                "rounds": plan.rounds,
                "plan": repr(plan),
                "wall_time_s": seconds,
            }
            rows.append(row)
            grids[(method, mult)] = images.reshape(num_classes, per_class, *images.shape[1:])
            print(
                f"{method:10s} {plan.nfe:5d} NFE  score {row['verifier_score']:7.3f}  held-out {row['heldout_accuracy']:.3f}  "
                f"verifier-acc {row['verifier_accuracy']:.3f}  FD {row['frechet_distance']:7.1f}  n={len(labels)}  ({seconds:.0f}s)",
                flush=True,
            )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_scores(out / "scores.png", rows, methods)
    plot_frechet(out / "frechet.png", rows, methods)
    grid_files = save_grids(out, grids, methods, budgets)
    wall = time.perf_counter() - tic
    result = {
        "rows": rows,
        "skipped": skipped,
        "command": f"python experiments/search_mnist/run.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        "wall_time_s": wall,
        "hardware": device_description(),
        "settings": {
            "sampler": "ddim, eta 0 (fk: eta 1), x0 clipped",
            "base_steps": args.steps,
            "guidance": args.guidance,
            "zero_order_neighbours": NEIGHBOURS,
            "zero_order_radius": f"{ZERO_ORDER_RADIUS} sqrt(d), neighbours renormalised to the pivot norm",
            "fk": {"lam": FK_LAM, "potential": "max", "resample_every": 1, "eta": FK_ETA},
            "paths": "plan() defaults: rounds 1, copies 2, renoise 1, advance 2",
            "verifier": "shipped MNISTClassifier, log p(intended digit | x)",
            "heldout": heldout_mod.ARCHITECTURE,
            "frechet_reference": f"{len(test_images)} test images, shipped classifier features",
            "quick": bool(args.quick),
        },
        "grids": grid_files,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _series(rows: list[dict[str, Any]], method: str, field: str) -> tuple[list[int], list[float]]:
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["nfe"])
    return [r["nfe"] for r in mine], [r[field] for r in mine]


def plot_scores(path: pathlib.Path, rows: list[dict[str, Any]], methods: tuple[str, ...]) -> None:
    """Verifier score and held-out accuracy (verifier accuracy dotted) against NFE, log x."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, method in enumerate(methods):
        color = f"C{i}"
        axes[0].plot(*_series(rows, method, "verifier_score"), marker="o", color=color, label=method)
        axes[1].plot(*_series(rows, method, "heldout_accuracy"), marker="o", color=color, label=f"{method} held-out")
        axes[1].plot(*_series(rows, method, "verifier_accuracy"), marker="x", linestyle=":", color=color)
    axes[0].set_title("mean verifier score log p(c | x)")
    axes[1].set_title("accuracy: held-out MLP (solid), verifier CNN (dotted)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("NFE per output sample")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_frechet(path: pathlib.Path, rows: list[dict[str, Any]], methods: tuple[str, ...]) -> None:
    """Classifier Frechet distance against NFE (log x), one line per method."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in methods:
        ax.plot(*_series(rows, method, "frechet_distance"), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("NFE per output sample")
    ax.set_title("classifier Frechet distance (equal n only)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_grids(out: pathlib.Path, grids: dict[tuple[str, int], np.ndarray], methods: tuple[str, ...], budgets: tuple[int, ...]) -> list[str]:
    """``grid_<method>.png`` for random and fk: one row per digit, 2 samples at each of 1x, 16x, 64x."""
    shown = [b for b in (1, 16, 64) if b in budgets] or list(budgets)
    files = []
    for method in ("random", "fk"):
        if method not in methods or not all((method, b) in grids for b in shown):
            continue
        cols = min(2, *(grids[(method, b)].shape[1] for b in shown))
        blocks = [grids[(method, b)][:, :cols] for b in shown]  # each [classes, cols, H, W, 1]
        grid = np.concatenate(blocks, axis=1)
        viz.save_image_grid(out / f"grid_{method}.png", grid.reshape((-1, *grid.shape[2:])), ncols=grid.shape[1])
        files.append(f"grid_{method}.png: rows digits 0-9; columns {cols} samples at each of {', '.join(f'{b}x' for b in shown)} (same keys)")
    return files


if __name__ == "__main__":
    sys.exit(main())
