"""Runs the deep clustering methods over seeds on MNIST and writes results.json.

Each (method, seed) is one ``genjax train`` run in ``WORKDIR/<method>_s<seed>``; a run
whose ``eval.json`` exists is not trained again, and an interrupted one resumes from its
checkpoint. The autoencoder-based methods start from ``WORKDIR/ae_s<seed>``, trained
first (``ae_bce``, the Bernoulli-decoder autoencoder, for VaDE). The table aggregates ACC/NMI/ARI on all 70,000 images over the seeds::

    python experiments/cluster_mnist/run.py --workdir runs/cluster_mnist \\
        --methods ae idec dec dcn --seeds 0 1 2 3 4 --set ae:train.num_steps=6000

``--set METHOD:a.b=value`` overrides a preset's field for that method (repeatable).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
from typing import Any

import numpy as np

from genjax.experiment import load_config, train

HERE = pathlib.Path(__file__).resolve().parent
PRETRAINED = {"dec": "ae", "idec": "ae", "dcn": "ae", "sdec": "ae", "vade": "ae_bce"}
"""The autoencoder run each method starts from: ``WORKDIR/<ae>_s<seed>``."""
METRICS = ("acc", "nmi", "ari", "test_acc", "test_nmi", "test_ari")


def run_one(method: str, seed: int, workdir: pathlib.Path, overrides: list[str]) -> dict[str, Any]:
    """Trains (or reads back) one method at one seed; returns its eval.json."""
    out = workdir / f"{method}_s{seed}"
    if (out / "eval.json").exists():
        return json.loads((out / "eval.json").read_text())
    fields = [f"seed={seed}", *overrides]
    if method in PRETRAINED:
        pretrained = workdir / f"{PRETRAINED[method]}_s{seed}"
        # Another runner may still be training it: wait for its final evaluation.
        while not (pretrained / "eval.json").exists():
            time.sleep(30)
        fields.append(f"model.pretrained={pretrained}")
    config = load_config(f"{HERE / 'config.py'}:{method}", fields)
    tic = time.perf_counter()
    metrics = train(config, out)
    print(f"{method} seed {seed}: acc {metrics['acc']:.4f} nmi {metrics['nmi']:.4f} in {time.perf_counter() - tic:.0f}s", flush=True)
    return metrics


def summarise(method: str, records: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    """One results.json row: means and spreads over the seeds' eval.json records."""
    row: dict[str, Any] = {"method": method, "dataset": dataset, "seeds": len(records)}
    for name in METRICS:
        values = np.array([r[name] for r in records], np.float64)
        row[f"{name}_mean"] = float(values.mean())
        row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    row["acc_per_seed"] = [float(r["acc"]) for r in records]
    row["steps"] = [int(r["step"]) for r in records]
    row["wall_time_s"] = float(sum(r.get("train_wall_time_s", 0.0) + r.get("eval_wall_time_s", 0.0) for r in records))
    return row


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    parser.add_argument("--methods", nargs="+", default=["ae", "idec", "dec", "dcn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="METHOD:FIELD=VALUE")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results.json")
    args = parser.parse_args(argv)
    overrides: dict[str, list[str]] = {}
    for item in args.set:
        method, _, field = item.partition(":")
        if not field or "=" not in field:
            parser.error(f"--set: expected METHOD:a.b=value, got {item!r}")
        overrides.setdefault(method, []).append(field)
    rows = []
    for method in args.methods:
        records = [run_one(method, seed, args.workdir, overrides.get(method, [])) for seed in args.seeds]
        rows.append(summarise(method, records, args.dataset))
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
    kept = [r for r in previous["rows"] if (r["method"], r["dataset"]) not in {(x["method"], x["dataset"]) for x in rows}]
    result = {
        "rows": kept + rows,
        "command": "python " + " ".join([str(pathlib.Path(sys.argv[0]))] + (argv if argv is not None else sys.argv[1:])),
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
