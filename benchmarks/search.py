"""Times the inference-time searches of ``genjax.samplers.search`` under NFE budgets.

For every method (``random``, ``zero_order``, ``paths``, ``fk``, ``more_steps``; Ma et al.
2025, arXiv 2501.09732; Singhal et al. 2025, arXiv 2501.06848) and budget it builds the
``plan`` (DDPM, ``--steps`` per pass), vmaps the search over ``--outputs`` keys and
measures:

* ``compile_s``: ``jax.jit(f).lower(params, keys)`` plus ``.compile()``, apart from the
  runs;
* ``nfe_per_s``: ``outputs * plan.nfe`` network evaluations (one network call of one
  example each) over the median wall time of ``--repeats`` calls after one warm-up call,
  each ended with ``jax.block_until_ready``;
* ``candidates_per_s``: ``outputs * plan.candidates`` over the same time: noises (random,
  paths), neighbours per round (zero-order; its rounds buy the budget), particles (fk), 1
  (more_steps). Compare methods by ``nfe_per_s``: it is the one comparable throughput.

The verifier is ``-mean(x^2)``, cheap beside the network, so the numbers time the
search's sampling and its bookkeeping (selection, re-noising, resampling). Models:
``tiny`` is ``genjax.nn.unet.unet_tiny`` on 8x8x1 images with random weights (as
``benchmarks/sampling.py``: speed does not depend on their values); ``toy`` is the exact
denoiser of a 2D Gaussian mixture (``GaussianMixture.denoiser``), which times the searches'
own overhead.

Usage::

    python benchmarks/search.py --json benchmarks/results/search_cpu.json
    python benchmarks/search.py --quick --json /tmp/search.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from genjax import samplers as S
from genjax.data.toy2d import toy2d_modes
from genjax.experiment import positive_ints
from genjax.hardware import device_description
from genjax.models import diffusion as diff
from genjax.nn.unet import unet_tiny
from genjax.samplers import search as Q
from genjax.train.state import num_params

METHODS = ("random", "zero_order", "paths", "fk", "more_steps")
OPTIONS: dict[str, dict[str, Any]] = {"zero_order": {"radius": 0.5}, "fk": {"lam": 1.0, "potential": "max"}}


@dataclasses.dataclass(frozen=True)
class Record:
    """One measurement (the JSON record)."""

    method: str
    model: str
    budget: int
    nfe: int
    steps: int
    candidates: int
    rounds: int
    outputs: int
    compile_s: float
    seconds_median: float
    seconds_all: list[float]
    nfe_per_s: float
    candidates_per_s: float
    outputs_per_s: float
    num_params: int
    device: str
    versions: dict[str, str]


def build_model(name: str, abar: np.ndarray) -> tuple[Callable[[Any], S.Denoiser], Any, tuple[int, ...]]:
    """``(params -> denoiser, params, sample shape)`` of the model ``name``."""
    if name == "toy":
        mixture = S.GaussianMixture(toy2d_modes("eight_gaussians"), 0.1)
        toy = mixture.denoiser(abar)
        return (lambda params: toy), {"means": jnp.asarray(mixture.means, jnp.float32)}, (2,)
    model = unet_tiny()
    shape = (8, 8, 1)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)), jnp.zeros((1,)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.05, s.shape), s.dtype), shapes)
    return (lambda p: S.denoiser_from_apply(lambda x, t: model.apply(p, x, t), alphas_cumprod=abar)), params, shape


def verifier(x: jax.Array, condition: Any) -> jax.Array:
    """``-mean(x^2)``: a cheap verifier, so that the network dominates the time."""
    del condition
    return -jnp.mean(jnp.square(x))


def measure(method: str, budget: int, model: str, steps: int, outputs: int, repeats: int, abar: np.ndarray) -> Record | None:
    """Compiles and times one (method, budget); ``None`` when the budget fits no plan."""
    try:
        p_plan = Q.plan(method, budget, S.DDPM(), num_timesteps=abar.shape[0], steps=None if method == "more_steps" else steps)
    except ValueError as err:
        print(f"{method:>10} {budget:>6} skipped: {err}")
        return None
    make_denoiser, params, shape = build_model(model, abar)

    def run(p: Any, keys: jax.Array) -> jax.Array:
        search = lambda k: Q.run_search(k, make_denoiser(p), abar, shape, plan=p_plan, verifier=verifier, **OPTIONS.get(method, {})).sample
        return jax.vmap(search)(keys)

    keys = jax.random.split(jax.random.key(1), outputs)
    tic = time.perf_counter()
    compiled = jax.jit(run).lower(params, keys).compile()
    compile_s = time.perf_counter() - tic
    jax.block_until_ready(compiled(params, keys))
    times = []
    for i in range(repeats):
        k = jax.random.split(jax.random.key(2 + i), outputs)
        tic = time.perf_counter()
        jax.block_until_ready(compiled(params, k))
        times.append(time.perf_counter() - tic)
    median = statistics.median(times)
    return Record(
        method=method,
        model=model,
        budget=budget,
        nfe=p_plan.nfe,
        steps=p_plan.steps,
        candidates=p_plan.candidates,
        rounds=p_plan.rounds,
        outputs=outputs,
        compile_s=compile_s,
        seconds_median=median,
        seconds_all=times,
        nfe_per_s=outputs * p_plan.nfe / median,
        candidates_per_s=outputs * p_plan.candidates / median,
        outputs_per_s=outputs / median,
        num_params=sum(int(np.size(v)) for v in jax.tree.leaves(params)) if model == "toy" else num_params(params),
        device=device_description(),
        versions={"jax": jax.__version__, "flax": flax.__version__, "python": platform.python_version()},
    )


def main(argv: Sequence[str] | None = None) -> list[Record]:
    """Runs the grid; prints a table and optionally writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "toy"), default="tiny", help="unet_tiny (8x8x1, random weights) or the exact 2D mixture denoiser")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--steps", type=int, default=10, help="DDPM steps of one pass")
    parser.add_argument("--budgets", type=positive_ints, default=(40, 160), help="comma-separated NFE budgets per output")
    parser.add_argument("--outputs", type=int, default=4, help="outputs per call (vmapped searches)")
    parser.add_argument("--timesteps", type=int, default=1000, help="T of the linear DDPM schedule")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    parser.add_argument("--json", default=None, help="write the records to this file")
    parser.add_argument("--quick", action="store_true", help="smoke run: toy model, 2 steps, budget 10, 1 output, 1 repeat")
    args = parser.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if unknown := [m for m in methods if m not in METHODS]:
        parser.error(f"--methods: unknown {unknown}; expected some of {list(METHODS)}")
    if args.quick:
        args.model, args.steps, args.budgets, args.outputs, args.repeats = "toy", 2, (10,), 1, 1
    if args.repeats < 1 or args.outputs < 1:
        parser.error("--repeats and --outputs: expected positive ints")
    abar = np.asarray(diff.make_schedule(diff.beta_schedule("linear", args.timesteps)).alphas_cumprod, np.float32)
    print(f"device: {device_description()} | jax {jax.__version__} | model {args.model} | DDPM {args.steps} steps per pass | {args.outputs} outputs per call")
    print(f"{'method':>10} {'budget':>6} {'nfe':>5} {'cand':>5} {'compile_s':>9} {'s/call':>8} {'nfe/s':>10} {'cand/s':>9}")
    records = []
    for method in methods:
        for budget in args.budgets:
            r = measure(method, budget, args.model, args.steps, args.outputs, args.repeats, abar)
            if r is None:
                continue
            records.append(r)
            print(
                f"{method:>10} {budget:>6} {r.nfe:>5} {r.candidates:>5} {r.compile_s:>9.2f} {r.seconds_median:>8.3f} {r.nfe_per_s:>10.1f} {r.candidates_per_s:>9.2f}",
                flush=True,
            )
    if args.json:
        out = pathlib.Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([dataclasses.asdict(r) for r in records], indent=2) + "\n")
        print(f"wrote {len(records)} records to {out}")
    if not records or not all(math.isfinite(r.nfe_per_s) for r in records):
        raise SystemExit("no record, or a configuration produced a non-finite rate")
    return records


if __name__ == "__main__":
    main()
