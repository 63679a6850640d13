"""Times the diffusion samplers of ``genjax.samplers`` on a DDPM UNet.

For every sampler, number of steps and batch size it measures:

* ``compile_s``: ``jax.jit(f).lower(params, key)`` plus ``.compile()`` of a freshly built
  batch sampler (the whole reverse process is one ``lax.scan``, so this should not grow
  with the number of steps);
* ``images_per_s`` and ``evals_per_s``: the batch (times the sampler's network
  evaluations per image) over the median wall time of ``--repeats`` calls after one
  warm-up call, each ended with ``jax.block_until_ready``;
* ``gflop_per_eval`` from XLA's cost analysis of one forward pass of the network, and
  ``mfu`` = achieved FLOP/s over ``--peak-tflops`` when a peak is given (e.g. 989 for
  an H100 SXM in bf16).

The network's weights are random (drawn with numpy from the parameter shapes, so no
initialiser is compiled): speed does not depend on their values.

Usage::

    python benchmarks/sampling.py --json benchmarks/results/sampling_cpu.json
    python benchmarks/sampling.py --model ddpm_cifar10 --batches 256 --steps 10,100,1000 \\
        --dtype bfloat16 --peak-tflops 989 --json benchmarks/results/sampling_h100.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from genjax import samplers
from genjax.experiment import positive_ints
from genjax.hardware import compiled_cost, device_description
from genjax.models import diffusion as diff
from genjax.nn.unet import UNet, ddpm_cifar10, unet_tiny
from genjax.train.state import num_params

# name -> (UNet constructor, image shape): the tiny test UNet, the ddpm_mnist CPU UNet
# and the paper's CIFAR-10 UNet.
MODELS = {
    "tiny": (unet_tiny, (8, 8, 1)),
    "mnist": (functools.partial(UNet, ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,), dropout=0.0, num_groups=8), (28, 28, 1)),
    "ddpm_cifar10": (ddpm_cifar10, (32, 32, 3)),
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Record:
    """One measurement (the JSON record)."""

    sampler: str
    steps: int
    batch: int
    compile_s: float
    images_per_s: float
    evals_per_s: float
    device: str
    model: str
    dtype: str
    num_params: int
    evals_per_image: int
    seconds_median: float
    seconds_all: list[float]
    gflop_per_eval: float | None
    mfu: float | None
    versions: dict[str, str]


def random_params(model: UNet, shape: tuple[int, int, int], seed: int) -> Any:
    """Parameters of the model's shapes filled with N(0, 0.05^2) draws, without compiling an init."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)), jnp.zeros((1,)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.05, s.shape), s.dtype), shapes)


def forward_gflop(model: UNet, params: Any, shape: tuple[int, int, int]) -> float | None:
    """GFLOP of one network evaluation of one image, from XLA's cost analysis (batch 8)."""
    x = jnp.zeros((8, *shape))
    compiled = jax.jit(lambda p, x, t: model.apply(p, x, t)).lower(params, x, jnp.zeros((8,))).compile()
    flops = compiled_cost(compiled).get("flops")
    return None if flops is None else float(flops) / 8 / 1e9


def measure(
    model_name: str,
    model: UNet,
    params: Any,
    shape: tuple[int, int, int],
    abar: jax.Array,
    sampler: str,
    steps: int,
    batch: int,
    repeats: int,
    gflop: float | None,
    peak_tflops: float | None,
    dtype: str,
) -> Record:
    """Compiles and times one (sampler, steps, batch) configuration."""

    def run(p: Any, key: jax.Array) -> jax.Array:
        denoiser = samplers.denoiser_from_apply(lambda x, t: model.apply(p, x, t), alphas_cumprod=abar)
        return samplers.sample_batch(denoiser, abar, key, batch, shape, sampler=samplers.get_sampler(sampler), steps=steps)

    key = jax.random.key(1)
    tic = time.perf_counter()
    compiled = jax.jit(run).lower(params, key).compile()
    compile_s = time.perf_counter() - tic
    jax.block_until_ready(compiled(params, key))
    times = []
    for i in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(compiled(params, jax.random.fold_in(key, i)))
        times.append(time.perf_counter() - tic)
    median = statistics.median(times)
    nfe = samplers.num_evaluations(sampler, steps)
    evals_per_s = batch * nfe / median
    mfu = gflop * 1e9 * evals_per_s / (peak_tflops * 1e12) if gflop and peak_tflops else None
    return Record(
        sampler=sampler,
        steps=steps,
        batch=batch,
        compile_s=compile_s,
        images_per_s=batch / median,
        evals_per_s=evals_per_s,
        device=device_description(),
        model=model_name,
        dtype=dtype,
        num_params=num_params(params),
        evals_per_image=nfe,
        seconds_median=median,
        seconds_all=times,
        gflop_per_eval=gflop,
        mfu=mfu,
        versions={"jax": jax.__version__, "flax": flax.__version__, "python": platform.python_version()},
    )


def _names(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected samplers from {tuple(samplers.SAMPLERS)}, got {text!r}")
    for name in names:
        try:
            samplers.get_sampler(name)
        except ValueError as err:  # an unknown name; the message lists the known ones
            raise argparse.ArgumentTypeError(str(err)) from None
    return names


def main(argv: Sequence[str] | None = None) -> list[Record]:
    """Runs the benchmark grid; prints a table and optionally writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="mnist", help="UNet preset (default: the ddpm_mnist CPU UNet)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="network computation dtype")
    parser.add_argument("--samplers", type=_names, default=tuple(samplers.SAMPLERS), help="comma-separated samplers")
    parser.add_argument("--steps", type=positive_ints, default=(10, 50), help="comma-separated numbers of steps")
    parser.add_argument("--batches", type=positive_ints, default=(1, 16), help="comma-separated batch sizes")
    parser.add_argument("--timesteps", type=int, default=1000, help="T of the linear DDPM schedule")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the MFU column")
    parser.add_argument("--json", default=None, help="write the records to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected a positive int, got {args.repeats}")
    if max(args.steps) > args.timesteps:
        parser.error(f"--steps: every value must lie in [1, {args.timesteps}] (--timesteps), got {args.steps}")
    factory, shape = MODELS[args.model]
    model = factory(dtype=DTYPES[args.dtype])
    params = random_params(model, shape, 0)
    abar = diff.make_schedule(diff.beta_schedule("linear", args.timesteps)).alphas_cumprod
    gflop = forward_gflop(model, params, shape)
    print(
        f"device: {device_description()} | jax {jax.__version__} | model {args.model} {shape} {num_params(params):,} params, {args.dtype}, {gflop} GFLOP/eval"
    )
    records = []
    print(f"{'sampler':>9} {'steps':>5} {'batch':>5} {'compile_s':>9} {'images/s':>10} {'evals/s':>10} {'mfu':>6}")
    for sampler in args.samplers:
        for steps in args.steps:
            for batch in args.batches:
                r = measure(args.model, model, params, shape, abar, sampler, steps, batch, args.repeats, gflop, args.peak_tflops, args.dtype)
                records.append(r)
                mfu = "-" if r.mfu is None else f"{100 * r.mfu:.1f}%"
                print(f"{sampler:>9} {steps:>5} {batch:>5} {r.compile_s:>9.2f} {r.images_per_s:>10.3f} {r.evals_per_s:>10.1f} {mfu:>6}", flush=True)
    if args.json:
        out = pathlib.Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([dataclasses.asdict(r) for r in records], indent=2) + "\n")
        print(f"wrote {len(records)} records to {out}")
    if records and not all(math.isfinite(r.images_per_s) for r in records):
        raise SystemExit("a configuration produced a non-finite rate")
    return records


if __name__ == "__main__":
    main()
