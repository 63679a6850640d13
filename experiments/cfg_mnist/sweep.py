"""The guidance sweep of a class-conditional MNIST DDPM: accuracy, fidelity and diversity
against the guidance scale w (Ho & Salimans 2022, arXiv 2207.12598, Fig. 1/Table 1 on
ImageNet; no published MNIST curve exists, so this is genjax's own reference result).

For each sampler and each w, ``--per-class`` samples of every digit are drawn from the
same keys (common random numbers across w) and scored with the MNIST classifier shipped
with genjax (99.30% test accuracy):

* ``classifier_accuracy``: the fraction classified as the digit they were drawn for;
* ``frechet_distance``: the classifier Frechet distance of all samples against the 10,000
  test images (lower: closer to the data; compare only at the same number of samples);
* ``diversity``: the mean pairwise Euclidean distance between the classifier features of
  the samples of one digit, averaged over the digits (higher: more varied).

The real test images give the reference row. Writes ``results.json``, ``tradeoff.png``
(accuracy and Frechet distance against w) and ``grid.png`` (one row per digit, one column
per w) into ``--out``.

Usage::

    genjax train --config experiments/cfg_mnist/config.py --workdir runs/cfg_mnist
    python experiments/cfg_mnist/sweep.py --workdir runs/cfg_mnist
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from genjax import experiment, keys, viz
from genjax.experiment.base import load_split
from genjax.experiment.ddpm import make_sample_fn
from genjax.hardware import device_description
from genjax.metrics import frechet_distance_from_features, load_mnist_classifier, mnist_accuracy, mnist_features
from genjax.models import diffusion as diff

HERE = pathlib.Path(__file__).resolve().parent
GUIDANCE = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
SAMPLERS = (("ddpm", 50), ("dpmpp_2m", 20))


def diversity(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of the mean pairwise Euclidean distance between the features of
    that class's samples (pairs of distinct samples)."""
    per_class = []
    for c in np.unique(labels):
        f = features[labels == c].astype(np.float64)
        if len(f) < 2:
            continue
        sq = np.sum(f**2, axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * f @ f.T, 0.0)
        n = len(f)
        per_class.append(float(np.sqrt(d2)[~np.eye(n, dtype=bool)].mean()))
    return float(np.mean(per_class))


def quantise(images: np.ndarray) -> np.ndarray:
    """Samples as the 8-bit images a user would save, back in [0, 1]."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0


def parse_samplers(text: str) -> tuple[tuple[str, int], ...]:
    """``"ddpm:50,dpmpp_2m:20"`` -> ``(("ddpm", 50), ("dpmpp_2m", 20))``."""
    out = []
    for item in text.split(","):
        name, _, steps = item.partition(":")
        if not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"--samplers: expected NAME:STEPS items, got {item!r}")
        out.append((name.strip(), int(steps)))
    return tuple(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained cfg_mnist workdir")
    parser.add_argument("--out", default=str(HERE), help="where results.json and the figures go")
    parser.add_argument("--guidance", default=",".join(f"{w:g}" for w in GUIDANCE), help="comma-separated guidance scales")
    parser.add_argument("--samplers", default=",".join(f"{n}:{s}" for n, s in SAMPLERS), help="comma-separated NAME:STEPS")
    parser.add_argument("--per-class", type=int, default=50, help="samples of each digit per (sampler, w)")
    parser.add_argument("--batch", type=int, default=250, help="samples per compiled call")
    args = parser.parse_args(argv)
    try:
        guidance = tuple(float(w) for w in args.guidance.split(","))
        samplers = parse_samplers(args.samplers)
    except ValueError as err:
        parser.error(str(err))
    if args.per_class < 2:
        parser.error(f"--per-class: expected at least 2 (diversity needs pairs), got {args.per_class}")
    if args.batch < 1:
        parser.error(f"--batch: expected a positive int, got {args.batch}")
    return sweep(args, guidance, samplers, argv)


def sweep(args: argparse.Namespace, guidance: tuple[float, ...], samplers: tuple[tuple[str, int], ...], argv: Sequence[str] | None) -> int:
    tic = time.perf_counter()
    run = experiment.load_run(args.workdir)
    config = run.config
    num_classes = config.model.num_classes
    if not num_classes:
        raise SystemExit(f"--workdir: {args.workdir} holds an unconditional model (model.num_classes = 0)")
    model = run.experiment.model
    classifier = load_mnist_classifier()
    test = load_split(config, config.eval.split)
    test_features = mnist_features(classifier, test.images)
    labels = np.repeat(np.arange(num_classes), args.per_class).astype(np.int32)
    num = len(labels)
    real_idx = np.concatenate([np.flatnonzero(test.labels == c)[: args.per_class] for c in range(num_classes)])
    reference = {
        "classifier_accuracy": mnist_accuracy(classifier, test.images, test.labels),
        "frechet_distance": frechet_distance_from_features(mnist_features(classifier, load_split(config, "train").images[:num]), test_features),
        "diversity": diversity(test_features[real_idx], test.labels[real_idx]),
        "num": num,
    }
    print(f"real images: accuracy {reference['classifier_accuracy']:.4f}, FD {reference['frechet_distance']:.2f}, diversity {reference['diversity']:.3f}")
    key = keys.stream(config.seed, keys.CLASSIFIER_DISTANCE)
    rows: list[dict[str, Any]] = []
    grids: dict[tuple[str, float], np.ndarray] = {}
    for name, steps in samplers:
        fn = make_sample_fn(config, model.diffusion, model.apply, model.image_shape, sampler=name, steps=steps, null_label=num_classes)
        for w in guidance:
            start = time.perf_counter()
            chunks = []
            for i, lo in enumerate(range(0, num, args.batch)):
                batch_labels = labels[lo : lo + args.batch]
                chunks.append(np.asarray(jax.device_get(fn(run.params, jax.random.fold_in(key, i), len(batch_labels), batch_labels, w))))
            images = quantise(diff.from_model_scale(np.concatenate(chunks)))
            seconds = time.perf_counter() - start
            features = mnist_features(classifier, images)
            row = {
                "sampler": name,
                "steps": steps,
                "guidance": w,
                "classifier_accuracy": mnist_accuracy(classifier, images, labels),
                "frechet_distance": frechet_distance_from_features(features, test_features),
                "diversity": diversity(features, labels),
                "num": num,
                "evals_per_image": steps if name != "heun" else 2 * steps - 1,
                "seconds_with_compile": seconds,
            }
            rows.append(row)
            grids[(name, w)] = images.reshape(num_classes, args.per_class, *images.shape[1:])[:, 0]
            print(
                f"{name:9s} {steps:4d} steps  w={w:<4g} accuracy {row['classifier_accuracy']:.4f}  FD {row['frechet_distance']:7.2f}  "
                f"diversity {row['diversity']:.3f}  ({seconds:.0f}s)",
                flush=True,
            )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(out / "tradeoff.png", rows, reference, samplers)
    first = samplers[0][0]
    columns = [grids[(first, w)] for w in guidance]  # each [classes, H, W, C]
    grid = np.stack(columns, axis=1).reshape((-1,) + columns[0].shape[1:])
    viz.save_image_grid(out / "grid.png", grid, ncols=len(guidance))
    evaluation = json.loads((pathlib.Path(args.workdir) / "eval.json").read_text())
    sweep_s = time.perf_counter() - tic
    result = {
        "rows": rows,
        "reference": reference,
        "command": (
            f"genjax train --config experiments/cfg_mnist/config.py --workdir {args.workdir} && "
            f"python experiments/cfg_mnist/sweep.py {' '.join(sys.argv[1:] if argv is None else argv)}"
        ),
        "wall_time_s": evaluation.get("train_wall_time_s", 0.0) + evaluation.get("eval_wall_time_s", 0.0) + sweep_s,
        "train_wall_time_s": evaluation.get("train_wall_time_s"),
        "sweep_wall_time_s": sweep_s,
        "train_steps": int(run.state.step),
        "grid": f"grid.png: rows are the digits 0-9, columns w = {', '.join(f'{w:g}' for w in guidance)} ({first}), the same noise in each row",
        "hardware": device_description(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def plot_tradeoff(path: pathlib.Path, rows: list[dict[str, Any]], reference: dict[str, Any], samplers: tuple[tuple[str, int], ...]) -> None:
    """Accuracy and Frechet distance against w, one line per sampler, real images dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, steps in samplers:
        mine = [r for r in rows if r["sampler"] == name]
        ws = [r["guidance"] for r in mine]
        for ax, field in zip(axes, ("classifier_accuracy", "frechet_distance", "diversity"), strict=True):
            ax.plot(ws, [r[field] for r in mine], marker="o", label=f"{name}, {steps} steps")
    for ax, field, title in zip(
        axes,
        ("classifier_accuracy", "frechet_distance", "diversity"),
        ("classifier accuracy", "classifier Frechet distance", "per-class diversity"),
        strict=True,
    ):
        ax.axhline(reference[field], color="gray", linestyle="--", label="real test images")
        ax.set_xlabel("guidance scale w")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
