"""Kingma & Welling (arXiv:1312.6114) Fig. 2 on MNIST: the lower bound against training
samples seen, for latent sizes 3, 5, 10, 20 and 200 (500 hidden units, minibatch 100).

Each latent size is one ``genjax train`` run of the ``fig2`` preset; this script runs them
(or resumes them: every run checkpoints) and plots the training bound (the minibatch
bound at each logged step, every 100 steps) and the test bound (all 10,000 test images, one sample each) on a log
axis of samples seen, as in the paper.

    python experiments/vae_mnist/fig2.py --steps 3000 --root runs/fig2

The paper trains for up to 10^8 samples (10^6 steps); ``--steps 1000000`` reproduces that
budget on an accelerator.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genjax import experiment
from genjax.train import read_metrics

HERE = pathlib.Path(__file__).resolve().parent
LATENTS = (3, 5, 10, 20, 200)


def run(latent: int, steps: int, root: pathlib.Path, eval_every: int) -> list[dict]:
    """Trains (or resumes) the run for one latent size; returns its metric records."""
    workdir = root / f"z{latent}"
    overrides = [
        f"model.latent_dim={latent}",
        f"train.num_steps={steps}",
        f"train.eval_every={eval_every}",
        f"train.checkpoint_every={max(eval_every, steps // 4)}",
    ]
    experiment.train(experiment.load_config(f"{HERE / 'config.py'}:fig2", overrides), workdir)
    return read_metrics(workdir / "metrics.jsonl")


def plot(curves: dict[int, list[dict]], batch_size: int, out: pathlib.Path) -> None:
    """Draws the train (dashed) and test (solid) bounds against samples seen."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (latent, records) in enumerate(sorted(curves.items())):
        color = f"C{i}"
        train = [(r["step"] * batch_size, r["elbo"]) for r in records]
        test = [(r["step"] * batch_size, r["eval_test_elbo"]) for r in records if "eval_test_elbo" in r]
        ax.plot(*zip(*train), "--", color=color, alpha=0.6, linewidth=1)
        ax.plot(*zip(*test), "-", color=color, label=f"$N_z$ = {latent}")
    ax.set_xscale("log")
    ax.set_xlabel("training samples evaluated")
    ax.set_ylabel("lower bound per datapoint (nats)")
    ax.set_title("AEVB on MNIST (dashed: train, solid: test)")
    ax.set_ylim(bottom=-220)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    """Runs every latent size, then writes fig2.png and fig2.json beside this script."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="training steps per latent size (batch 100)")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between test-bound evaluations")
    parser.add_argument("--root", default="runs/fig2", help="folder holding one workdir per latent size")
    parser.add_argument("--out", default=str(HERE), help="where fig2.png and fig2.json go")
    args = parser.parse_args()
    root = pathlib.Path(args.root)
    curves = {z: run(z, args.steps, root, args.eval_every) for z in LATENTS}
    out = pathlib.Path(args.out)
    plot(curves, 100, out / "fig2.png")
    summary = {
        "command": f"python experiments/vae_mnist/fig2.py --steps {args.steps} --eval-every {args.eval_every}",
        "steps": args.steps,
        "batch_size": 100,
        "final": {
            str(z): {
                "train_elbo": recs[-1]["elbo"],
                "test_elbo": [r["eval_test_elbo"] for r in recs if "eval_test_elbo" in r][-1],
                "samples_seen": recs[-1]["step"] * 100,
            }
            for z, recs in curves.items()
        },
    }
    (out / "fig2.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["final"], indent=2))


if __name__ == "__main__":
    main()
