"""Sample quality against the number of steps for every sampler, and results.json.

Reads a finished ``genjax train`` run of ``experiments/ddpm_mnist/config.py`` and, for
every sampler (ancestral DDPM with both fixed variances, DDIM with eta = 0,
DPM-Solver++(2M) and EDM-style Heun, the last two also with the predicted x_0 clipped)
at every number of steps, draws ``--fd-samples`` samples and scores them with the
classifier Frechet distance: the Frechet distance (Heusel et al. 2017, eq. 6) between
the feature-layer activations of the shipped MNIST classifier
(``genjax.metrics.mnist_features``) on the samples and on the whole test split. The
same ``--fd-samples`` real training images give the reference row: the distance a
perfect sampler would score at this sample size. Samples are quantised to 8 bits first,
as an image file would hold them. Every cell starts from the same noises, so the first
``--num`` samples of each cell, in ``sampler_grid.png``, can be compared by eye.

Writes into ``--out``:

* ``sampler_grid.png``: rows are samplers, columns numbers of steps (the samples are
  in ``sampler_samples.npz``, keyed ``<row>_<sampler>_<steps>``);
* ``fd_vs_steps.png``: the classifier Frechet distance of every sampler against the
  number of network evaluations per sample, with the real-data reference;
* ``results.json``: ``{"metrics": {...}, "samplers": [...], "fd_reference": {...},
  "command": ..., "wall_time_s": ...}`` with the run's eval.json metrics and, per
  cell, the Frechet distance and the wall time of drawing its samples (training +
  evaluation + this report in ``wall_time_s``).

Usage::

    python experiments/ddpm_mnist/report.py --workdir runs/ddpm_mnist --out experiments/ddpm_mnist
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
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from genjax import experiment, keys, viz
from genjax import samplers as samplers_lib
from genjax.experiment import positive_ints
from genjax.experiment.base import load_split
from genjax.experiment.ddpm import denoiser_of, sampler_options
from genjax.hardware import device_description
from genjax.metrics import (
    frechet_distance_from_features,
    load_mnist_classifier,
    mnist_features,
)
from genjax.models import diffusion as diff

# (label, sampler, options): the two fixed variances of the paper are separate rows, and
# the two ODE solvers run with and without clipping the predicted x_0 to [-1, 1].
ROWS = (
    ("DDPM, sigma^2 = beta_tilde", "ddpm", {"variance": "small"}),
    ("DDPM, sigma^2 = beta", "ddpm", {"variance": "large"}),
    ("DDIM, eta = 0", "ddim", {"eta": 0.0}),
    ("DPM-Solver++(2M)", "dpmpp_2m", {}),
    ("DPM-Solver++(2M), x0 clipped", "dpmpp_2m", {"clip_x0": True}),
    ("Heun (EDM)", "heun", {}),
    ("Heun (EDM), x0 clipped", "heun", {"clip_x0": True}),
)


def quantise(images: np.ndarray) -> np.ndarray:
    """Rounds images in [0, 1] to the 256 levels an 8-bit image file holds."""
    return np.round(images * 255.0) / 255.0


def draw(sample_fn: Callable[[jax.Array], jax.Array], key: jax.Array, num: int, batch: int) -> np.ndarray:
    """``num`` samples in [0, 1] from a jitted ``sample_fn(key) -> [batch, ...]``.

    Chunk ``i`` uses ``fold_in(key, i)``, so every cell drawn with the same key starts
    from the same noises, and ``sample_fn`` compiles once whatever ``num`` is.
    """
    chunks = [diff.from_model_scale(jax.block_until_ready(sample_fn(jax.random.fold_in(key, i)))) for i in range(math.ceil(num / batch))]
    return np.concatenate(chunks)[:num]


def plot_fd(out: pathlib.Path, records: list[dict[str, Any]], reference: float, title: str) -> None:
    """Writes fd_vs_steps.png: the Frechet distance per sampler against evaluations per sample."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, _, _ in ROWS:
        cells = [r for r in records if r["label"] == label]
        ax.plot([r["evals_per_image"] for r in cells], [r["classifier_frechet_distance"] for r in cells], marker="o", label=label)
    ax.axhline(reference, color="k", linestyle="--", linewidth=1, label="real training images (reference)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per sample")
    ax.set_ylabel("classifier Frechet distance to the test set")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fd_vs_steps.png", dpi=120)
    plt.close(fig)


def plot_grid(out: pathlib.Path, cells: dict[tuple[str, int], np.ndarray], steps_list: Sequence[int], num: int, title: str) -> None:
    """Writes sampler_grid.png: the first ``num`` samples of every cell."""
    fig, axes = plt.subplots(len(ROWS), len(steps_list), figsize=(2.2 * len(steps_list), 2.3 * len(ROWS)), squeeze=False)
    for i, (label, _, _) in enumerate(ROWS):
        for j, steps in enumerate(steps_list):
            ax = axes[i, j]
            grid = viz.image_grid(cells[(label, steps)][:num], ncols=int(np.ceil(np.sqrt(num))))
            ax.imshow(grid.squeeze(), cmap="gray", vmin=0, vmax=255)  # image_grid returns uint8
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{steps} steps")
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "sampler_grid.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the report; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the genjax train workdir")
    parser.add_argument("--out", required=True, help="folder for the figures, sampler_samples.npz and results.json")
    parser.add_argument("--steps", type=positive_ints, default=(10, 20, 50, 100), help="comma-separated numbers of steps")
    parser.add_argument("--fd-samples", type=int, default=2000, help="samples per cell (and real images in the reference) for the Frechet distance")
    parser.add_argument("--batch", type=int, default=250, help="samples per sampler call")
    parser.add_argument("--num", type=int, default=16, help="samples per cell in sampler_grid.png")
    args = parser.parse_args(argv)
    if args.fd_samples < 2:
        parser.error(f"--fd-samples: expected at least 2 samples (a covariance needs them), got {args.fd_samples}")
    if args.batch < 1:
        parser.error(f"--batch: expected a positive number of samples, got {args.batch}")
    if not 1 <= args.num <= args.fd_samples:
        parser.error(f"--num: expected between 1 and --fd-samples ({args.fd_samples}), got {args.num}")
    try:
        return report(args, argv)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))


def report(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Draws every cell, scores it and writes the outputs into ``args.out``."""
    tic = time.perf_counter()
    run = experiment.load_run(args.workdir)
    config = run.config
    eval_path = pathlib.Path(args.workdir) / "eval.json"
    if not eval_path.is_file():
        raise FileNotFoundError(f"--workdir: no eval.json in {args.workdir}; let 'genjax train' finish first")
    evaluation = json.loads(eval_path.read_text())
    split = config.eval.split
    if f"{split}_bits_per_dim" not in evaluation:
        raise ValueError(f"--workdir: {eval_path} has no bits/dim; evaluate with eval.bpd_examples > 0")
    classifier = load_mnist_classifier()
    test_features = mnist_features(classifier, load_split(config, split).images)
    real = load_split(config, config.data.train_split).images[: args.fd_samples]
    if len(real) < args.fd_samples:
        raise ValueError(f"--fd-samples: the training split has only {len(real)} images for the reference, got {args.fd_samples}")
    reference = {
        "num": args.fd_samples,
        "classifier_frechet_distance": frechet_distance_from_features(mnist_features(classifier, quantise(np.asarray(real, np.float32))), test_features),
    }
    print(f"{'real training images':30s} classifier FD {reference['classifier_frechet_distance']:8.3f}", flush=True)

    model = run.experiment.model
    shape = model.image_shape
    diffusion = model.diffusion
    denoiser = denoiser_of(diffusion, model.apply)(run.params)
    abar = diffusion.schedule.alphas_cumprod
    key = keys.stream(config.seed, keys.CLASSIFIER_DISTANCE)
    batch = min(args.batch, args.fd_samples)
    cells, records = {}, []
    for label, sampler, options in ROWS:
        for steps in args.steps:
            opts = {**sampler_options(diffusion, sampler, 0.0), **options}
            built = samplers_lib.get_sampler(sampler, **opts)
            fn = jax.jit(lambda k, s=built, n=steps: samplers_lib.sample_batch(denoiser, abar, k, batch, shape, sampler=s, steps=n))
            start = time.perf_counter()
            images = quantise(draw(fn, key, args.fd_samples, batch))
            seconds = time.perf_counter() - start
            fd = frechet_distance_from_features(mnist_features(classifier, images), test_features)
            cells[(label, steps)] = images
            records.append(
                {
                    "sampler": sampler,
                    "label": label,
                    **options,
                    "steps": steps,
                    "evals_per_image": built.num_evaluations(steps),
                    "num": args.fd_samples,
                    "classifier_frechet_distance": fd,
                    "seconds_with_compile": seconds,
                }
            )
            print(f"{label:30s} {steps:5d} steps: classifier FD {fd:8.3f}  ({seconds:6.1f}s)", flush=True)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"ddpm_mnist at step {int(run.state.step)}"
    plot_grid(out, cells, args.steps, args.num, f"{title}: the same {args.num} noises through every sampler")
    plot_fd(out, records, reference["classifier_frechet_distance"], f"{title}, {args.fd_samples} samples per point")
    np.savez_compressed(
        out / "sampler_samples.npz",
        **{f"{i}_{sampler}_{steps}": cells[(label, steps)][: args.num] for i, (label, sampler, _) in enumerate(ROWS) for steps in args.steps},
    )
    metrics = {
        "test_bits_per_dim": evaluation[f"{split}_bits_per_dim"],
        "test_bits_per_dim_stderr": evaluation[f"{split}_bits_per_dim_stderr"],
        "test_bits_per_dim_examples": evaluation["bpd_examples"],
        "test_bits_per_dim_prior": evaluation[f"{split}_bits_per_dim_prior"],
        "test_bits_per_dim_decoder": evaluation[f"{split}_bits_per_dim_decoder"],
        "test_mse": evaluation[f"{split}_mse"],
        "train_steps": int(run.state.step),
    }
    report_s = time.perf_counter() - tic
    result = {
        "metrics": metrics,
        "samplers": records,
        "fd_reference": reference,
        "command": (
            f"genjax train --config experiments/ddpm_mnist/config.py --workdir {args.workdir} && "
            f"python experiments/ddpm_mnist/report.py {' '.join(sys.argv[1:] if argv is None else argv)}"
        ),
        "wall_time_s": evaluation.get("train_wall_time_s", 0.0) + evaluation.get("eval_wall_time_s", 0.0) + report_s,
        "train_wall_time_s": evaluation.get("train_wall_time_s"),
        "eval_wall_time_s": evaluation.get("eval_wall_time_s"),
        "report_wall_time_s": report_s,
        "hardware": device_description(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
