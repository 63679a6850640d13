"""Writes results.json for the VAE NLL experiment from a finished workdir.

    python experiments/vae_mnist/report.py --workdir runs/vae_nll

The numbers are read from the run's own ``eval.json``, ``config.json`` and
``metrics.jsonl``; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

import jax

from genjax.hardware import cpu_name
from genjax.train import read_metrics

HERE = pathlib.Path(__file__).resolve().parent


def build_results(workdir: pathlib.Path) -> dict:
    """Collects the reported figures of one finished ``nll`` run."""
    evaluation = json.loads((workdir / "eval.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    k = config["eval"]["is_samples"]
    records = read_metrics(workdir / "metrics.jsonl")
    return {
        "test_nll_is5000": evaluation.get("test_nll_is5000"),
        f"test_nll_is{k}": evaluation[f"test_nll_is{k}"],
        "test_nll_stderr": evaluation["test_nll_stderr"],
        "test_elbo": evaluation["test_elbo"],
        "test_elbo_stderr": evaluation["test_elbo_stderr"],
        "num_test_examples": evaluation["num_examples"],
        "num_train_steps": evaluation["step"],
        "batch_size": config["train"]["batch_size"],
        "final_train_elbo": records[-1]["elbo"],
        "train_wall_time_s": evaluation["train_wall_time_s"],
        "eval_wall_time_s": evaluation["eval_wall_time_s"],
        "wall_time_s": evaluation["train_wall_time_s"] + evaluation["eval_wall_time_s"],
        "hardware": f"{cpu_name()}, {os.cpu_count()} cores, CPU only",
        "jax_version": jax.__version__,
        "model": {k2: config["model"][k2] for k2 in ("architecture", "hidden", "latent_dim", "activation", "likelihood")},
        "paper_vae_nll": 86.76,
        "command": "genjax train --config experiments/vae_mnist/config.py:nll --workdir runs/vae_nll",
    }


def plot_curve(workdir: pathlib.Path, out: pathlib.Path) -> None:
    """Plots the logged training bound and the periodic test bound against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(workdir / "metrics.jsonl")
    test = [(r["step"], r["eval_test_elbo"]) for r in records if "eval_test_elbo" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in records], [r["elbo"] for r in records], color="C0", alpha=0.3, linewidth=0.8, label="train (minibatch)")
    ax.plot(*zip(*test), "o-", color="C1", label="test (10,000 images)")
    ax.axhline(-86.76, color="k", linestyle=":", label="Burda et al. VAE test log p(x), k = 5000")
    ax.set_ylim(-110, -84)
    ax.set_xlabel("step (batch 100)")
    ax.set_ylabel("ELBO per image (nats)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    """Reads --workdir and writes results.json and nll_curve.png beside this script."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/vae_nll")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()
    results = build_results(pathlib.Path(args.workdir))
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    plot_curve(pathlib.Path(args.workdir), pathlib.Path(args.out).parent / "nll_curve.png")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
