"""Table 1 toy rows and Fig. 1 of Sohl-Dickstein et al., "Deep Unsupervised Learning using
Nonequilibrium Thermodynamics" (arXiv:1503.03585): the lower bound K on the
log-likelihood of a Gaussian diffusion model of the 2D swiss roll (T = 40) and of a
binomial diffusion model of 20-bit "heartbeat" sequences (T = 2000).

    python experiments/diffusion_toy/run.py --out experiments/diffusion_toy --workdir runs/diffusion_toy

trains the three presets of ``config.py`` with ``genjax.experiment.train`` (the
``sohl_dickstein`` family; each run in ``--workdir/<preset>``, and a killed run resumes
where it stopped): the swiss roll, a ten times thinner swiss roll, and the heartbeat
data. Each run evaluates K in bits with all T - 1 KL terms, the bound of the best
kernels of each family for the learned schedule (``oracle_reverse``) and the true
log-likelihood of the data (``eval.json``); this script collects them and writes ``results.json``, ``trajectories.png`` and
``trajectories_thin.png`` (Fig. 1: the forward diffusion at t = 0, T/2, T and the learned
reverse diffusion at t = T, T/2, 0), ``heartbeat.png`` (data and samples) and
``training.png`` into ``--out``. If ``--out`` holds a RESULTS.md with
``<!-- table:begin -->``/``<!-- table:end -->`` markers, the table between them is
rewritten with the measured numbers. ``--tiny`` is a seconds-long smoke run (tests).

Data:

* Swiss roll: the distribution of genjax's ``sample_toy2d(key, "swiss_roll", n)``
  (scikit-learn's roll in the (x, z) plane, ``t = 1.5 pi (1 + 2u)``, noise 0.25, divided
  by 7.5), then centred and divided by one scalar so that the isotropic Gaussian fitted
  to it is N(0, I), the paper's convention (its null model is a unit isotropic Gaussian,
  L_null = -log2(2 pi e) = -4.094 bits). Mean, scale and the true density of the data
  (whose mean log is the ceiling of K) come from quadrature over the roll parameter.
  The thin roll is the same curve with noise 0.025.
* Heartbeat: 20 bins with a 1 every 5th bin and a uniformly random offset (5 equally
  likely sequences; true log-likelihood -log2 5 = -2.32 bits).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import sys
import time
from typing import Any

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genjax import experiment
from genjax.hardware import device_description
from genjax.train import read_metrics

HERE = pathlib.Path(__file__).resolve().parent
PRESETS = ("swiss_roll", "swiss_roll_thin", "heartbeat")
PAPER = {"swiss_roll_K_bits": 2.35, "swiss_roll_K_minus_isotropic_bits": 6.45, "heartbeat_K_bits": -2.414, "heartbeat_K_minus_independent_bits": 12.024}
FIGURES = {
    "swiss_roll": ("trajectories.png", "trajectories.png"),
    "swiss_roll_thin": ("trajectories.png", "trajectories_thin.png"),
    "heartbeat": ("heartbeat.png", "heartbeat.png"),
}


def train_preset(
    name: str, tiny: bool, seed: int, steps: int | None, workdir: pathlib.Path
) -> tuple[dict[str, Any], list[tuple[int, float]], tuple[float, float]]:
    """Trains (or resumes) one preset; returns its metrics (prefixed with ``name``), its
    logged minibatch estimates of K and (K, its ceiling) for the training figure."""
    config = experiment.load_config(f"{HERE / 'config.py'}:{name}{',tiny' if tiny else ''}", [f"seed={seed}"])
    if steps is not None:
        # The cosine decay spans the steps after warm-up, as in config.py.
        decay = max(steps - config.train.warmup_steps, 1)
        config = experiment.apply_overrides(config, [f"train.num_steps={steps}", f"train.decay_steps={decay}"])
    run_dir = workdir / name
    print(f"[{name}] training {config.train.num_steps} steps of batch {config.train.batch_size} in {run_dir}", flush=True)
    ev = experiment.train(config, run_dir)
    curve = [(r["step"], r["K_bits"]) for r in read_metrics(run_dir / "metrics.jsonl") if "K_bits" in r]
    ceiling = ev.get("data_log_likelihood_bits", ev.get("true_log_likelihood_bits"))
    print(f"[{name}] K = {ev['K_bits']:.3f} +- {ev['K_bits_stderr']:.3f} bits; ceiling (true log-likelihood) {ceiling:.3f}", flush=True)
    metrics = {f"{name}_{k}": v for k, v in ev.items()}
    metrics[f"{name}_train_steps"] = int(config.train.num_steps)
    return metrics, curve, (ev["K_bits"], ceiling)


def plot_training(curves: dict[str, list], finals: dict[str, tuple[float, float]], path: pathlib.Path) -> None:
    """The logged one-t minibatch estimates of K (and their running mean), the evaluated K and its ceiling."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items()):
        if not curve:
            continue
        steps, values = (np.asarray(v, np.float64) for v in zip(*curve))
        ax.plot(steps, values, lw=0.8, color="C0", alpha=0.35, label="minibatch estimate (one t per example)")
        window = max(1, min(10, len(values) // 5))
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5, color="C0", label=f"running mean of {window}")
        k, ceiling = finals[name]
        ax.axhline(k, color="C3", ls="--", lw=1, label=f"K, all T terms: {k:.3f}")
        ax.axhline(ceiling, color="k", ls=":", lw=1, label=f"true log-likelihood: {ceiling:.3f}")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("bits")
        ax.grid(alpha=0.3)
        ax.set_ylim(min(np.percentile(values, 5), k) - 0.5, max(values.max(), ceiling) + 0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(metrics: dict[str, Any]) -> str:
    """The markdown table of RESULTS.md (rows for the runs present in ``metrics``)."""
    m = metrics

    def pm(key: str) -> str:
        return f"{m[key]:.3f} +- {m[key + '_stderr']:.3f}" if key in m else "-"

    rows = [
        "| data | K (bits) | K - L_null (bits) | best kernels: gain over K (bits) | true log-likelihood (bits) | paper K | paper K - L_null | steps | train time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {"swiss_roll": "swiss roll (toy2d, noise 0.25)", "swiss_roll_thin": "swiss roll, thin (noise 0.025)"}
    for name, label in labels.items():
        if f"{name}_K_bits" in m:
            rows.append(
                f"| {label} | {pm(f'{name}_K_bits')} | {pm(f'{name}_K_minus_isotropic_bits')} | {pm(f'{name}_oracle_minus_learned_bits')} | "
                f"{pm(f'{name}_data_log_likelihood_bits')} | 2.35 | 6.45 | {m[f'{name}_train_steps']:,} | {m[f'{name}_train_wall_time_s'] / 60:.1f} min |"
            )
    if "heartbeat_K_bits" in m:
        rows.append(
            f"| heartbeat (bits per sequence) | {pm('heartbeat_K_bits')} | {pm('heartbeat_K_minus_independent_bits')} | {pm('heartbeat_oracle_minus_learned_bits')} | "
            f"-2.322 | -2.414 | 12.024 | {m['heartbeat_train_steps']:,} | {m['heartbeat_train_wall_time_s'] / 60:.1f} min |"
        )
    return "\n".join(rows)


def update_results_md(path: pathlib.Path, metrics: dict[str, Any]) -> None:
    """Rewrites the block between the table markers of RESULTS.md, if both are there."""
    if not path.exists():
        return
    text = path.read_text()
    pattern = re.compile(r"(<!-- table:begin -->\n).*?(<!-- table:end -->)", re.DOTALL)
    if pattern.search(text):
        path.write_text(pattern.sub(lambda mt: mt.group(1) + table(metrics) + "\n" + mt.group(2), text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE), help="where results.json and the figures go")
    parser.add_argument("--workdir", default="runs/diffusion_toy", help="one run folder per preset (resumable)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run of the swiss roll and heartbeat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=PRESETS, default=None, help="run one preset only")
    for name in PRESETS:
        parser.add_argument(f"--{name.replace('_', '-')}-steps", type=int, default=None, help=f"override the {name} training steps")
    args = parser.parse_args(argv)
    for name in PRESETS:
        steps = getattr(args, f"{name}_steps")
        if steps is not None and steps < 1:
            parser.error(f"--{name.replace('_', '-')}-steps: expected a positive int, got {steps}")
    if args.seed < 0:
        parser.error(f"--seed: expected a non-negative int, got {args.seed}")
    tic = time.perf_counter()
    out, workdir = pathlib.Path(args.out), pathlib.Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    hardware = device_description()
    print(f"hardware: {hardware}; jax {jax.__version__}", flush=True)
    metrics: dict[str, Any] = {}
    curves: dict[str, list] = {}
    finals: dict[str, tuple[float, float]] = {}
    presets = [p for p in PRESETS if args.only in (None, p) and not (args.tiny and p == "swiss_roll_thin")]
    for name in presets:
        m, curves[name], finals[name] = train_preset(name, args.tiny, args.seed, getattr(args, f"{name}_steps"), workdir)
        metrics.update(m)
        source, target = FIGURES[name]
        shutil.copyfile(workdir / name / source, out / target)
    plot_training(curves, finals, out / "training.png")
    wall = time.perf_counter() - tic
    command = "python " + " ".join(
        [str(pathlib.Path(sys.argv[0]).as_posix()) if argv is None else "experiments/diffusion_toy/run.py", *(sys.argv[1:] if argv is None else argv)]
    )
    results = {
        "metrics": metrics,
        "paper": PAPER,
        "configs": {name: json.loads((workdir / name / "config.json").read_text()) for name in presets},
        "command": command,
        "wall_time_s": wall,
        "hardware": hardware,
        "jax_version": jax.__version__,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.tiny and args.only is None:
        update_results_md(out / "RESULTS.md", metrics)
    print(f"wrote {out / 'results.json'}; wall time {wall:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
