"""Fault injection: SIGKILL ``genjax train`` at random moments, resume, compare with an uninterrupted run.

genjax promises that a run killed at any moment and started again ends exactly where
an uninterrupted run ends. This script tests that promise as a user would meet it:

1. One reference run of ``genjax train`` on a small preset, uninterrupted, timed.
2. ``--trials`` times: the same command in a fresh workdir, killed with SIGKILL after a
   delay drawn uniformly from [0, the reference's wall time], so kills land during
   start-up, training, checkpoint writes and the final evaluation; then the same
   command again, which must resume and finish.
3. Each resumed run is compared with the reference: the final state's SHA-256 digest
   (every byte of parameters and optimiser state), every logged loss in
   ``metrics.jsonl`` (each step exactly once) and every metric in ``eval.json``.

Where the kill landed is read from the workdir it left: ``start-up`` (no metrics
yet), ``training`` (metrics, no unfinished checkpoint), ``checkpoint write`` (orbax's
temporary folder, or a step folder without its manifest), ``final evaluation`` (the
last checkpoint written, no ``eval.json``), or ``after the end`` (the run had finished).

Usage::

    python benchmarks/fault_injection.py --trials 20 \\
        --out benchmarks/results/fault_injection_cpu.json

It prints ``N/N identical`` and writes the trials to ``--out``; it exits non-zero if
any trial differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from genjax.train import Checkpointer, read_metrics
from genjax.train.checkpoint import MANIFEST

DEFAULT_CONFIG = "experiments/vae_mnist/config.py:tiny"
DEFAULT_OVERRIDES = (
    "train.num_steps=400",
    "train.checkpoint_every=10",
    "train.log_every=10",
    "train.eval_every=100",
    "eval.is_samples=0",
)
VOLATILE = ("step_time_s", "wall_time_s", "eval_wall_time_s", "train_wall_time_s")
"""Metrics that measure time, which no two runs share."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One killed and resumed run.

    Attributes:
      kill_after_s: the delay after start at which SIGKILL was sent.
      phase: where the kill landed (see the module docstring).
      resumed_from: the step the second run resumed from (0: from scratch).
      identical: final digest, logged losses and ``eval.json`` all equal the reference's.
      differences: what differed, if anything.
    """

    kill_after_s: float
    phase: str
    resumed_from: int
    identical: bool
    differences: list[str]


def train_command(config: str, overrides: tuple[str, ...], workdir: pathlib.Path) -> list[str]:
    """The ``genjax train`` command line of every run."""
    return [sys.executable, "-m", "genjax", "train", "--config", config, "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]


def child_env() -> dict[str, str]:
    """The environment of the runs: CPU, without a test suite's simulated devices."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env.pop("XLA_FLAGS", None)
    return env


def outcome(workdir: pathlib.Path, num_steps: int) -> dict[str, Any]:
    """What a finished run left: its final digest, logged metrics and evaluation."""
    rows = read_metrics(workdir / "metrics.jsonl")
    return {
        "digest": Checkpointer(workdir / "checkpoints").read_metadata(num_steps)["digest"],
        "metrics": [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows],
        "eval": {k: v for k, v in json.loads((workdir / "eval.json").read_text()).items() if k not in VOLATILE},
    }


def compare(reference: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """The differences between two outcomes, as readable lines (empty: identical)."""
    diffs = []
    if got["digest"] != reference["digest"]:
        diffs.append(f"final state digest {got['digest'][:12]} != {reference['digest'][:12]}")
    steps = [r["step"] for r in got["metrics"]]
    if steps != [r["step"] for r in reference["metrics"]]:
        diffs.append(f"logged steps differ ({len(steps)} rows, {len(steps) - len(set(steps))} repeated)")
    elif got["metrics"] != reference["metrics"]:
        first = next(a["step"] for a, b in zip(got["metrics"], reference["metrics"], strict=True) if a != b)
        diffs.append(f"logged metrics differ from step {first}")
    if got["eval"] != reference["eval"]:
        diffs.append("eval.json differs")
    return diffs


def phase_at_kill(workdir: pathlib.Path, num_steps: int, finished: bool) -> str:
    """Where a kill landed, read from what the run left in its workdir."""
    if finished:
        return "after the end"
    ckpt = workdir / "checkpoints"
    unfinished = [p for p in ckpt.iterdir() if "orbax-checkpoint-tmp" in p.name or (p.name.isdigit() and not (p / MANIFEST).is_file())] if ckpt.is_dir() else []
    if unfinished:
        return "checkpoint write"
    if (ckpt / str(num_steps) / MANIFEST).is_file():
        return "final evaluation"
    return "training" if (workdir / "metrics.jsonl").is_file() else "start-up"


def run_trials(config: str, overrides: tuple[str, ...], trials: int, seed: int, scratch: pathlib.Path) -> dict[str, Any]:
    """The reference run and ``trials`` killed-and-resumed runs; returns the report."""
    num_steps = int(next(o.split("=", 1)[1] for o in overrides if o.startswith("train.num_steps=")))
    env = child_env()
    ref_dir = scratch / "reference"
    tic = time.perf_counter()
    subprocess.run(train_command(config, overrides, ref_dir), env=env, check=True, capture_output=True)
    reference_s = time.perf_counter() - tic
    reference = outcome(ref_dir, num_steps)
    rng = np.random.default_rng(seed)
    results = []
    for i in range(trials):
        workdir = scratch / f"trial{i:03d}"
        delay = float(rng.uniform(0.0, reference_s))
        proc = subprocess.Popen(train_command(config, overrides, workdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finished = False
        phase = phase_at_kill(workdir, num_steps, finished)
        resumed = subprocess.run(train_command(config, overrides, workdir), env=env, capture_output=True, text=True)
        if resumed.returncode != 0:
            diffs = [f"the resumed run failed (exit {resumed.returncode}): {resumed.stderr.strip().splitlines()[-1:]}"]
            start = -1
        else:
            diffs = compare(reference, outcome(workdir, num_steps))
            start = next(
                (int(line.split("resuming from the checkpoint at step ")[1].split()[0]) for line in resumed.stderr.splitlines() if "resuming from" in line), 0
            )
        results.append(Trial(kill_after_s=round(delay, 3), phase=phase, resumed_from=start, identical=not diffs, differences=diffs))
        print(
            f"trial {i + 1}/{trials}: killed after {delay:.2f}s ({phase}), resumed from step {start}: {'identical' if not diffs else '; '.join(diffs)}",
            flush=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)
    identical = sum(t.identical for t in results)
    phases: dict[str, int] = {}
    for t in results:
        phases[t.phase] = phases.get(t.phase, 0) + 1
    return {
        "summary": f"{identical}/{trials} identical",
        "identical": identical,
        "trials": trials,
        "phases": phases,
        "reference_wall_time_s": round(reference_s, 2),
        "command": " ".join(["genjax", "train", "--config", config, "--workdir", "W", *(f"--config.{o}" for o in overrides)]),
        "seed": seed,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "results": [dataclasses.asdict(t) for t in results],
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the trials and writes the report; the exit status is 1 if any trial differs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="number of killed-and-resumed runs (default 20)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"the run's config (default {DEFAULT_CONFIG})")
    parser.add_argument("--override", action="append", default=None, help=f"a.b=value override (repeatable; default {' '.join(DEFAULT_OVERRIDES)})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.trials <= 0:
        parser.error(f"--trials: expected a positive int, got {args.trials}")
    overrides = tuple(args.override) if args.override else DEFAULT_OVERRIDES
    if not any(o.startswith("train.num_steps=") for o in overrides):
        parser.error("--override: the overrides must set train.num_steps")
    with tempfile.TemporaryDirectory(prefix="genjax_faults_") as scratch:
        report = run_trials(args.config, overrides, args.trials, args.seed, pathlib.Path(scratch))
    print(f"{report['summary']} (kills by phase: {report['phases']})")
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["identical"] == report["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
