"""Collects the GAN and WGAN-GP MNIST runs into results.json, figures and a table.

Reads each run's ``eval.json`` (Parzen log-likelihood of the 10,000 test images, sigma
chosen on the 10,000 validation images, from 10,000 generated samples) and
``metrics.jsonl``, and adds a reference row: the same estimator with 10,000 real
training images in place of the generated samples, i.e. what the Parzen estimate gives a
model whose samples are indistinguishable from the data. Also computes the classifier
Frechet distance: the Frechet distance between the features of the project's MNIST
classifier (``genjax.metrics.mnist_classifier``) on 10,000 samples and on the 10,000
test images (comparable only with other classifier Frechet distances, not with FID).
Writes:

* ``results.json``: ``{"rows": [...], "command", "wall_time_s"}``;
* ``samples.png``: 100 samples of each run side by side;
* ``training_curves.png``: each run's critic estimate (WGAN-GP's negative critic loss,
  the GAN's discriminator loss) against generator steps;
* ``table.md``: the table of RESULTS.md.

``python experiments/gan_mnist/report.py --runs runs/gan_mnist_gan,runs/gan_mnist_wgan_gp --out experiments/gan_mnist``
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genjax import experiment, keys, viz
from genjax.experiment.base import load_split
from genjax.metrics import (
    frechet_distance_from_features,
    load_mnist_classifier,
    mnist_features,
    parzen_log_likelihood,
)
from genjax.train import read_metrics

HERE = pathlib.Path(__file__).resolve().parent
LABELS = {"non_saturating": "GAN", "minimax": "GAN (minimax)", "wgan_gp": "WGAN-GP", "wgan_clip": "WGAN (clipping)"}


def data_reference(config, num: int, test_features: np.ndarray, classifier) -> dict[str, float]:
    """Parzen estimate and classifier Frechet distance of ``num`` real training images."""
    train = load_split(config, config.data.train_split).images[:num]
    test, valid = load_split(config, config.eval.split).images, load_split(config, config.eval.valid_split).images
    res = parzen_log_likelihood(test, valid, train)
    fd = frechet_distance_from_features(mnist_features(classifier, train), test_features)
    return {"value": res.mean, "stderr": res.stderr, "sigma": res.sigma, "fd": fd}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="comma-separated genjax train workdirs")
    parser.add_argument("--out", default=str(HERE), help="where results.json, the figures and table.md go")
    parser.add_argument("--reference", type=int, default=10_000, help="real training images for the reference row (0: none)")
    parser.add_argument("--fd-samples", type=int, default=10_000, help="samples per run for the classifier Frechet distance")
    args = parser.parse_args(argv)
    if args.fd_samples < 2:
        parser.error(f"--fd-samples: expected at least 2 samples (a covariance needs them), got {args.fd_samples}")
    if args.reference < 0 or args.reference == 1:
        parser.error(f"--reference: expected 0 (no reference row) or at least 2 images, got {args.reference}")
    try:
        return report(args, argv)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))


def report(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Collects the runs of ``args.runs`` and writes the outputs into ``args.out``."""
    tic = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, lines, grids = [], [], []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    config, classifier, test_features = None, load_mnist_classifier(), None
    for workdir in (pathlib.Path(w) for w in args.runs.split(",")):
        run = experiment.load_run(workdir)
        config, state = run.config, run.state
        if test_features is None:
            test_features = mnist_features(classifier, load_split(config, config.eval.split).images)
        model = LABELS.get(config.model.objective, config.model.objective)
        ev = json.loads((workdir / "eval.json").read_text())
        fd = frechet_distance_from_features(
            mnist_features(classifier, run.experiment.sample(state.params, keys.stream(config.seed, keys.CLASSIFIER_DISTANCE), args.fd_samples)), test_features
        )
        rows.append(
            {"dataset": "mnist", "model": model, "metric": "parzen_log_likelihood_nats", "value": ev["parzen_log_likelihood"], "stderr": ev["parzen_stderr"]}
        )
        rows.append({"dataset": "mnist", "model": model, "metric": "classifier_frechet_distance", "value": fd, "stderr": None})
        lines.append(
            f"| {model} | {config.model.architecture} | {int(state.step):,} | {ev['parzen_log_likelihood']:.1f} ± {ev['parzen_stderr']:.1f} | "
            f"{ev['parzen_sigma']:.3f} | {fd:.2f} | {ev['train_wall_time_s'] / 60:.0f} min |"
        )
        grids.append(run.experiment.sample(state.params, keys.stream(config.seed, keys.SAMPLES), 100))
        records = [r for r in read_metrics(workdir / "metrics.jsonl") if "critic_loss" in r]
        steps = np.array([r["step"] for r in records])
        curve = np.array([r["critic_loss"] for r in records])
        ax.plot(
            steps,
            -curve if config.model.objective.startswith("wgan") else curve,
            label=f"{model}: {'-critic loss' if config.model.objective.startswith('wgan') else 'discriminator loss'}",
        )
    ax.set_xlabel("generator step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=120)
    plt.close(fig)
    tiles = [viz.image_grid(g, ncols=10) for g in grids]
    separator = np.full((tiles[0].shape[0], 12, tiles[0].shape[2]), 255, np.uint8)
    viz.save_png(out / "samples.png", np.concatenate([t for tile in tiles for t in (tile, separator)][:-1], axis=1))
    if args.reference and config is not None:
        ref = data_reference(config, args.reference, test_features, classifier)
        reference = f"{args.reference:,} real training images (reference)"
        rows.append({"dataset": "mnist", "model": reference, "metric": "parzen_log_likelihood_nats", "value": ref["value"], "stderr": ref["stderr"]})
        rows.append({"dataset": "mnist", "model": reference, "metric": "classifier_frechet_distance", "value": ref["fd"], "stderr": None})
        lines.append(
            f"| {args.reference:,} real training images | - | - | {ref['value']:.1f} ± {ref['stderr']:.1f} | {ref['sigma']:.3f} | {ref['fd']:.2f} | - |"
        )
    rows.append({"dataset": "mnist", "model": "GAN, Goodfellow et al. Table 1", "metric": "parzen_log_likelihood_nats", "value": 225.0, "stderr": 2.0})
    command = "python experiments/gan_mnist/report.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "results.json").write_text(json.dumps({"rows": rows, "command": command.strip(), "wall_time_s": time.perf_counter() - tic}, indent=2) + "\n")
    header = [
        "| model | networks | generator steps | Parzen log-likelihood (nats) | sigma | classifier Frechet distance | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    (out / "table.md").write_text("\n".join(header + lines + ["| GAN, Goodfellow et al. Table 1 | MLP | - | 225 ± 2 | - | - | - |"]) + "\n")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
