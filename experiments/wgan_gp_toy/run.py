"""Trains the 3 x 4 toy runs of WGAN-GP's Fig. 1 / Fig. 2 and writes their report.

For every dataset (8 Gaussians, 25 Gaussians, swiss roll) and objective (GAN, WGAN with
weight clipping, WGAN-GP at the toy code's lambda 0.1 and at Algorithm 1's lambda 10)
this trains ``config.py:DATASET,OBJECTIVE`` with the generic
``genjax train`` loop (each run resumes from its checkpoints), then writes:

* ``critic_surfaces.png``: the critic's value over the plane with data (orange) and
  samples (green), one panel per run, as in the paper's Fig. 1;
* ``samples.png``: 1,000 samples over the data, one panel per run (Fig. 2, left);
* ``results.json`` (``{"rows": [...], "command", "wall_time_s"}``) and ``table.md``
  (the table of RESULTS.md): modes covered and high-quality fraction (mixtures) and the sliced Wasserstein distance
  to fresh data, beside the same distance between two fresh data sets (its noise floor).

``python experiments/wgan_gp_toy/run.py --workdir runs/wgan_gp_toy --out experiments/wgan_gp_toy``
(``--tiny`` runs the tiny preset of each, for the tests).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genjax import experiment
from genjax.data.toy2d import sample_toy2d
from genjax.experiment.gan import critic_surface
from genjax.metrics import sliced_wasserstein
from genjax.models.gan import critic_scores

HERE = pathlib.Path(__file__).resolve().parent
DATASETS = ("eight_gaussians", "twentyfive_gaussians", "swiss_roll")
OBJECTIVES = ("gan", "wgan", "wgan_gp", "wgan_gp_lambda10")
LABELS = {"gan": "GAN", "wgan": "WGAN (clipping)", "wgan_gp": "WGAN-GP", "wgan_gp_lambda10": "WGAN-GP, lambda 10"}


def train_all(workdir: pathlib.Path, tiny: bool, datasets: tuple[str, ...], objectives: tuple[str, ...]) -> dict[tuple[str, str], dict]:
    """Trains (or resumes) every run and returns each one's eval.json."""
    results = {}
    for dataset in datasets:
        for objective in objectives:
            config = experiment.load_config(f"{HERE / 'config.py'}:{dataset},{objective}{',tiny' if tiny else ''}")
            run_dir = workdir / f"{dataset}_{objective}"
            print(f"== {dataset} / {objective} -> {run_dir}", flush=True)
            results[(dataset, objective)] = experiment.train(config, run_dir)
    return results


def panels(workdir: pathlib.Path, out: pathlib.Path, datasets: tuple[str, ...], objectives: tuple[str, ...]) -> list[pathlib.Path]:
    """The datasets x objectives critic-surface and sample figures."""
    shape = (len(datasets), len(objectives))
    fig_c, axes_c = plt.subplots(*shape, figsize=(3.7 * shape[1], 3.5 * shape[0]), squeeze=False)
    fig_s, axes_s = plt.subplots(*shape, figsize=(3.3 * shape[1], 3.3 * shape[0]), squeeze=False)
    key = jax.random.key(0)
    for i, dataset in enumerate(datasets):
        real = np.asarray(sample_toy2d(jax.random.fold_in(key, i), dataset, 1000))
        lim = float(np.abs(real).max() * 1.25)
        for j, objective in enumerate(objectives):
            run = experiment.load_run(workdir / f"{dataset}_{objective}")
            fake = run.experiment.sample(run.params, jax.random.fold_in(key, 100 + i), 1000)
            critic = run.experiment.model.critic
            xx, yy, values = critic_surface(jax.jit(functools.partial(critic_scores, critic.apply, run.params["critic"])), lim, 100)
            ax = axes_c[i, j]
            contour = ax.contourf(xx, yy, values, levels=30, cmap="viridis")
            fig_c.colorbar(contour, ax=ax, fraction=0.046, pad=0.04)
            for a in (ax, axes_s[i, j]):
                a.scatter(real[:, 0], real[:, 1], s=1.5, c="tab:orange", alpha=0.5)
                a.scatter(fake[:, 0], fake[:, 1], s=1.5, c="lime" if a is ax else "tab:blue", alpha=0.5)
                a.set_xlim(-lim, lim)
                a.set_ylim(-lim, lim)
                a.set_aspect("equal")
                a.set_xticks([])
                a.set_yticks([])
                a.set_title(f"{LABELS[objective]}, {dataset}", fontsize=8)
    paths = []
    for fig, name in ((fig_c, "critic_surfaces.png"), (fig_s, "samples.png")):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths


def data_floor(num: int, datasets: tuple[str, ...]) -> dict[str, float]:
    """Sliced Wasserstein distance between two fresh data sets of ``num`` points."""
    data_key, projection_key = jax.random.split(jax.random.key(1))
    return {
        d: float(
            sliced_wasserstein(
                projection_key,
                sample_toy2d(jax.random.fold_in(data_key, 2 * i), d, num),
                sample_toy2d(jax.random.fold_in(data_key, 2 * i + 1), d, num),
            )
        )
        for i, d in enumerate(datasets)
    }


def report(results: dict[tuple[str, str], dict], floor: dict[str, float], out: pathlib.Path, command: str, wall: float) -> None:
    """Writes results.json and table.md (RESULTS.md's table)."""
    rows = []
    for (dataset, objective), ev in results.items():
        for metric in ("modes_covered", "high_quality_fraction", "sliced_wasserstein"):
            if metric in ev:
                rows.append({"dataset": dataset, "model": LABELS[objective], "metric": metric, "value": ev[metric], "stderr": None})
    for dataset, value in floor.items():
        rows.append({"dataset": dataset, "model": "fresh data (noise floor)", "metric": "sliced_wasserstein", "value": value, "stderr": None})
    (out / "results.json").write_text(json.dumps({"rows": rows, "command": command, "wall_time_s": wall}, indent=2) + "\n")
    lines = ["| dataset | model | modes covered | high-quality fraction | sliced W2 to data | train time (s) |", "|---|---|---|---|---|---|"]
    for (dataset, objective), ev in results.items():
        modes = f"{ev['modes_covered']}/{ev['num_modes']}" if "modes_covered" in ev else "-"
        hq = f"{ev['high_quality_fraction']:.3f}" if "high_quality_fraction" in ev else "-"
        lines.append(f"| {dataset} | {LABELS[objective]} | {modes} | {hq} | {ev['sliced_wasserstein']:.4f} | {ev['train_wall_time_s']:.0f} |")
    for dataset, value in floor.items():
        lines.append(f"| {dataset} | fresh data (noise floor) | - | - | {value:.4f} | - |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/wgan_gp_toy", help="folder of the run folders, one per dataset and objective")
    parser.add_argument("--out", default=str(HERE), help="where the figures, results.json and table.md go")
    parser.add_argument("--tiny", action="store_true", help="tiny preset of every run (tests)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of the datasets")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated subset of " + ", ".join(OBJECTIVES))
    args = parser.parse_args(argv)
    datasets, objectives = tuple(args.datasets.split(",")), tuple(args.objectives.split(","))
    for name, chosen, known in (("--datasets", datasets, DATASETS), ("--objectives", objectives, OBJECTIVES)):
        if not chosen or not set(chosen) <= set(known):
            parser.error(f"{name}: expected a comma-separated subset of {','.join(known)}, got {','.join(chosen)!r}")
    tic = time.perf_counter()
    workdir, out = pathlib.Path(args.workdir), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = train_all(workdir, args.tiny, datasets, objectives)
    panels(workdir, out, datasets, objectives)
    floor = data_floor(500 if args.tiny else 10_000, datasets)
    command = "python experiments/wgan_gp_toy/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report(results, floor, out, command.strip(), time.perf_counter() - tic)
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
