"""Several processes on one machine as a stand-in for several hosts: launch, and overhead.

``launch`` starts one ``genjax`` command as ``N`` processes on 127.0.0.1, each with its
own simulated CPU devices (``JAX_NUM_CPU_DEVICES``) and the ``--coordinator``,
``--num-processes`` and ``--process-id`` flags of ``jax.distributed``; the tests use it
(``tests/test_distributed.py``). Run as a script, it measures what the processes cost:
the same training run as 1 process x 2 devices and as 2 processes x 1 device, reporting
the median step rate of each from ``metrics.jsonl`` and how far the two runs' logged
losses and final evaluation differ (float32 round-off is expected).

Usage::

    python benchmarks/multiprocess.py --steps 300 --out benchmarks/results/multiprocess_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_CONFIG = "experiments/vae_mnist/config.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(devices_per_process: int) -> dict[str, str]:
    """The environment of one process: CPU only, with ``devices_per_process`` devices (the
    caller's other XLA flags, such as the test suite's cheaper compilation, are kept)."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices_per_process), "XLA_FLAGS": " ".join(flags)}


def launch(argv: Sequence[str], *, num_processes: int, devices_per_process: int, port: int | None = None) -> list[subprocess.Popen[str]]:
    """Starts ``python -m genjax ARGV`` as ``num_processes`` processes of one run.

    With one process no distributed flags are added.

    Returns:
      The processes, in process-id order; their stdout and stderr are pipes.
    """
    port = free_port() if port is None else port
    procs = []
    for i in range(num_processes):
        flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(num_processes), "--process-id", str(i)] if num_processes > 1 else []
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "genjax", *argv, *flags],
                env=process_env(devices_per_process),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def wait_all(procs: Sequence[subprocess.Popen[str]], timeout_s: float) -> list[tuple[int, str, str]]:
    """Waits for every process (killing all of them after ``timeout_s``); returns
    ``(returncode, stdout, stderr)`` of each."""
    deadline = time.monotonic() + timeout_s
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            out, err = proc.communicate()
        results.append((proc.returncode, out, err))
    return results


def run(argv: Sequence[str], *, num_processes: int, devices_per_process: int, timeout_s: float = 600) -> list[tuple[int, str, str]]:
    """``launch`` then ``wait_all``."""
    return wait_all(launch(argv, num_processes=num_processes, devices_per_process=devices_per_process), timeout_s)


def _rows(workdir: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _max_rel_diff(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12)))


def _step_rate(workdir: pathlib.Path, skip: int) -> dict[str, float]:
    rows = _rows(workdir)
    times = np.array([r["step_time_s"] for r in rows if r["step"] > skip])
    return {"median_step_s": float(np.median(times)), "steps_per_s": float(1.0 / np.median(times)), "logged_steps": len(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the run's config (default the VAE on MNIST)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run")
    parser.add_argument("--out", default=None, help="write the records as JSON here")
    args = parser.parse_args(argv)
    if args.steps < 20:
        parser.error(f"--steps: expected at least 20 (the first 10 are skipped as warm-up), got {args.steps}")
    overrides = [
        f"--config.train.num_steps={args.steps}",
        "--config.train.log_every=1",
        f"--config.train.checkpoint_every={args.steps}",
        "--config.eval.num_examples=100",
    ]
    records: list[dict[str, Any]] = []
    runs: list[tuple[list[float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for num_processes, devices in ((1, 2), (2, 1)):
            workdir = pathlib.Path(tmp) / f"p{num_processes}x{devices}"
            tic = time.perf_counter()
            results = run(["train", "--config", args.config, "--workdir", str(workdir), *overrides], num_processes=num_processes, devices_per_process=devices)
            wall = time.perf_counter() - tic
            failed = [(i, err.strip().splitlines()[-1:]) for i, (code, _, err) in enumerate(results) if code != 0]
            if failed:
                print(f"{num_processes} process(es) x {devices} device(s) failed: {failed}", file=sys.stderr)
                return 1
            record = {"processes": num_processes, "devices_per_process": devices, "wall_s": round(wall, 1), **_step_rate(workdir, skip=10)}
            records.append(record)
            print(
                f"{num_processes} process(es) x {devices} device(s): {record['steps_per_s']:.1f} steps/s (median step {record['median_step_s'] * 1e3:.2f} ms), {wall:.1f} s in all"
            )
            losses = [r["loss"] for r in _rows(workdir)]
            final = {k: v for k, v in json.loads((workdir / "eval.json").read_text()).items() if isinstance(v, float) and "time" not in k}
            runs.append((losses, final))
    ratio = records[1]["steps_per_s"] / records[0]["steps_per_s"]
    agreement = {
        "logged_steps": len(runs[0][0]),
        "max_rel_loss_diff": _max_rel_diff(runs[1][0], runs[0][0]),
        "max_rel_eval_diff": _max_rel_diff([runs[1][1][k] for k in sorted(runs[0][1])], [runs[0][1][k] for k in sorted(runs[0][1])]),
    }
    print(f"2 processes x 1 device run at {ratio:.2f}x the steps/s of 1 process x 2 devices")
    print(
        f"losses of the {agreement['logged_steps']} steps differ by at most {agreement['max_rel_loss_diff']:.2g} (relative); evaluation by {agreement['max_rel_eval_diff']:.2g}"
    )
    if args.out:
        report = {
            "config": args.config,
            "steps": args.steps,
            "records": records,
            "ratio_2x1_over_1x2": ratio,
            "agreement": agreement,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        }
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
