"""Runs one row of Table 1 of Jang, Gu & Poole (arXiv:1611.01144) per estimator and
writes the experiment's results.json and the table in its RESULTS.md.

    python experiments/gumbel_table.py --experiment gumbel_vae_mnist --steps 20000
    python experiments/gumbel_table.py --experiment gumbel_sbn_mnist --steps 20000

Every (preset, estimator) pair is trained with ``genjax train`` in its own workdir
under ``--runs`` with the same number of steps, so a killed table resumes where it
stopped. The numbers are read from each run's ``eval.json``; nothing is typed in.
Arguments of the form ``--config.a.b=v`` are passed on to every run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys

from genjax.experiment import ConfigError, load_config, train
from genjax.hardware import device_description
from genjax.models.gumbel import ESTIMATORS

HERE = pathlib.Path(__file__).resolve().parent
PRESETS = {"gumbel_vae_mnist": ("categorical", "bernoulli"), "gumbel_sbn_mnist": ("bernoulli", "categorical")}
MODEL_NAMES = {"gumbel_vae_mnist": "vae", "gumbel_sbn_mnist": "sbn"}
# Table 1 of the paper (test loss; ../shared/ANCHORS.md). DARN and MuProp are not
# implemented here and are listed only for reference.
PAPER = {
    "sbn_bernoulli": {
        "score_function": 72.0,
        "darn": 59.7,
        "muprop": 58.9,
        "straight_through": 58.9,
        "annealed_straight_through": 58.7,
        "gumbel_softmax": 58.5,
        "st_gumbel_softmax": 59.3,
    },
    "sbn_categorical": {
        "score_function": 73.1,
        "darn": 67.9,
        "muprop": 63.0,
        "straight_through": 61.8,
        "annealed_straight_through": 61.1,
        "gumbel_softmax": 59.0,
        "st_gumbel_softmax": 59.7,
    },
    "vae_bernoulli": {
        "score_function": 112.2,
        "darn": 110.9,
        "muprop": 109.7,
        "straight_through": 116.0,
        "annealed_straight_through": 111.5,
        "gumbel_softmax": 105.0,
        "st_gumbel_softmax": 111.5,
    },
    "vae_categorical": {
        "score_function": 110.6,
        "darn": 128.8,
        "muprop": 107.0,
        "straight_through": 110.9,
        "annealed_straight_through": 107.8,
        "gumbel_softmax": 101.5,
        "st_gumbel_softmax": 107.8,
    },
}
TABLE_BEGIN, TABLE_END = "<!-- table:begin -->", "<!-- table:end -->"


def train_args(experiment: str, preset: str, estimator: str, steps: int, workdir: pathlib.Path, extra: list[str]) -> list[str]:
    """The ``genjax`` arguments that train one row."""
    return [
        "train",
        "--config",
        f"{HERE / experiment / 'config.py'}:{preset}",
        "--workdir",
        str(workdir),
        f"--config.model.estimator={estimator}",
        f"--config.train.num_steps={steps}",
        *extra,
    ]


def row(experiment: str, preset: str, estimator: str, workdir: pathlib.Path, steps: int, extra: list[str]) -> dict:
    """One results.json row from a finished run's eval.json and config.json.

    Raises:
      ValueError: the run was trained for another number of steps than ``steps``, so it
        would not have the table's common budget.
    """
    evaluation = json.loads((workdir / "eval.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    if evaluation["step"] != steps:
        raise ValueError(f"--steps: the run in {workdir} was evaluated at step {evaluation['step']}, not {steps}; every row must have the same budget")
    model = f"{MODEL_NAMES[experiment]}_{config['model']['latent']}"
    return {
        "model": model,
        "estimator": estimator,
        "test_loss": round(evaluation["test_loss"], 3),
        "test_loss_stderr": round(evaluation["test_loss_stderr"], 3),
        "eval_samples": evaluation["eval_samples"],
        "num_examples": evaluation["num_examples"],
        "steps": evaluation["step"],
        "wall_time_s": round(evaluation["train_wall_time_s"], 1),
        "paper_test_loss": PAPER[model][estimator],
        "preset": preset,
        "train_command": "genjax " + shlex.join(train_args(experiment, preset, estimator, steps, workdir, extra)).replace(str(HERE.parent) + "/", ""),
    }


def markdown_table(rows: list[dict]) -> str:
    """Our test loss beside the paper's, one line per model and estimator."""
    lines = [
        "| model | estimator | ours (test loss +- s.e.) | paper | steps | train wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['estimator']} | {r['test_loss']:.2f} +- {r['test_loss_stderr']:.2f} | "
            f"{r['paper_test_loss']:.1f} | {r['steps']:,} | {r['wall_time_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def target_entry(experiment: str, workdir: pathlib.Path) -> dict:
    """The longer run aimed at the paper's number: its final test loss, budget, command
    and the test loss at each periodic evaluation (one sample per image)."""
    evaluation = json.loads((workdir / "eval.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    from genjax.train import read_metrics

    curve = [[r["step"], round(r["eval_test_loss"], 3)] for r in read_metrics(workdir / "metrics.jsonl") if "eval_test_loss" in r]
    return {
        "estimator": config["model"]["estimator"],
        "test_loss": round(evaluation["test_loss"], 3),
        "test_loss_stderr": round(evaluation["test_loss_stderr"], 3),
        "eval_samples": evaluation["eval_samples"],
        "steps": evaluation["step"],
        "wall_time_s": round(evaluation["train_wall_time_s"], 1),
        "eval_curve_one_sample": curve,
        "command": f"genjax train --config experiments/{experiment}/config.py:target --workdir {workdir}",
    }


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows of both, a new row replacing an old one of the same model and estimator,
    ordered by model and then by the order of ``ESTIMATORS``."""
    merged = {(r["model"], r["estimator"]): r for r in old}
    merged.update({(r["model"], r["estimator"]): r for r in new})
    return sorted(merged.values(), key=lambda r: (r["model"], ESTIMATORS.index(r["estimator"])))


def write_results(folder: pathlib.Path, rows: list[dict], command: str) -> None:
    """Merges ``rows`` into results.json and rewrites the table between the markers of
    RESULTS.md, so a table can be built over several invocations."""
    path = folder / "results.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    rows = merge_rows(previous.get("rows", []), rows)
    results = {**previous, "rows": rows, "command": command, "hardware": device_description()}
    path.write_text(json.dumps(results, indent=2) + "\n")
    report = folder / "RESULTS.md"
    table = f"{TABLE_BEGIN}\n{markdown_table(rows)}\n{TABLE_END}"
    text = report.read_text() if report.exists() else f"# {folder.name}\n\n{TABLE_BEGIN}\n{TABLE_END}\n"
    if TABLE_BEGIN not in text:
        text += f"\n{TABLE_BEGIN}\n{TABLE_END}\n"
    head, rest = text.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    report.write_text(head + table + tail)


def plot_curves(runs: pathlib.Path, experiment: str, presets: list[str], estimators: list[str], out: pathlib.Path) -> pathlib.Path:
    """Training loss (the estimator's objective, as logged) against step, one panel per
    preset and one line per estimator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genjax.train import read_metrics

    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        for i, estimator in enumerate(estimators):
            path = runs / experiment / f"{preset}_{estimator}" / "metrics.jsonl"
            if path.exists():
                records = [r for r in read_metrics(path) if "loss" in r]
                ax.plot([r["step"] for r in records], [r["loss"] for r in records], color=f"C{i}", lw=1, label=estimator)
        ax.set_title(f"{MODEL_NAMES[experiment]}_{preset}: training loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, required=True, help="training steps of every run")
    parser.add_argument("--runs", default="runs", help="folder of the runs' workdirs")
    parser.add_argument("--presets", nargs="*", help="presets to run (default: both of the experiment's)")
    parser.add_argument("--estimators", nargs="*", default=list(ESTIMATORS), choices=ESTIMATORS)
    parser.add_argument("--report-only", action="store_true", help="collect finished runs without training")
    parser.add_argument("--target-run", help="workdir of a longer run to record under 'target' in results.json")
    parser.add_argument("--out", help="where results.json and RESULTS.md go (default: the experiment's folder)")
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        parser.error(f"unrecognised arguments {bad}: only --config.a.b=v overrides are passed on to the runs")
    if args.steps <= 0:
        parser.error(f"--steps: expected a positive int, got {args.steps}")
    presets = args.presets or PRESETS[args.experiment]
    rows = []
    for preset in presets:
        for estimator in args.estimators:
            workdir = pathlib.Path(args.runs) / args.experiment / f"{preset}_{estimator}"
            if not args.report_only:
                cmd = train_args(args.experiment, preset, estimator, args.steps, workdir, extra)
                print("$ genjax", shlex.join(cmd), flush=True)
                overrides = [a.removeprefix("--config.") for a in cmd if a.startswith("--config.")]
                try:
                    train(load_config(cmd[2], overrides), workdir)
                except (ValueError, FileNotFoundError) as err:
                    print(f"gumbel_table: error: {err}", file=sys.stderr)
                    return 2 if isinstance(err, ConfigError) else 1
            if (workdir / "eval.json").exists():
                try:
                    rows.append(row(args.experiment, preset, estimator, workdir, args.steps, extra))
                except ValueError as err:
                    parser.error(str(err))
    # The command that trains what this invocation reported (never --report-only / --out).
    words = ["experiments/gumbel_table.py", "--experiment", args.experiment, "--steps", str(args.steps)]
    if args.runs != "runs":
        words += ["--runs", args.runs]
    if args.presets:
        words += ["--presets", *args.presets]
    if list(args.estimators) != list(ESTIMATORS):
        words += ["--estimators", *args.estimators]
    command = "python " + shlex.join(words + extra)
    folder = pathlib.Path(args.out) if args.out else HERE / args.experiment
    write_results(folder, rows, command)
    if args.target_run:
        results_path = folder / "results.json"
        results = json.loads(results_path.read_text())
        results["target"] = target_entry(args.experiment, pathlib.Path(args.target_run))
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    plot_curves(pathlib.Path(args.runs), args.experiment, list(presets), list(args.estimators), folder)
    print(markdown_table(json.loads((folder / "results.json").read_text())["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
