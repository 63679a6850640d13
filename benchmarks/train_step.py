"""Benchmarks the VAE training step on the ``jit`` and ``pmap`` back ends.

Three configurations of ``genjax.train.build_train_step`` are measured on the same
model (an MLP VAE with a Bernoulli decoder, Kingma & Welling's MNIST setting by default:
784-500-500-50, tanh) and random binary 28x28x1 images:

1. ``jit`` on one device (``jax.devices()[:1]``),
2. ``pmap`` on ``--devices`` simulated CPU devices,
3. ``jit`` with a 1D device mesh (``NamedSharding``) on the same simulated devices.

The simulated devices come from ``jax_num_cpu_devices``, which has to be set before the
JAX backend starts, so this module sets it before importing anything else that might
touch devices. On a CPU host every simulated device shares the same cores, so the
multi-device numbers measure the overhead of each back end, not a speed-up.

For each configuration the script reports:

* ``compile_s``: wall time of the first call of a freshly built step (tracing, lowering,
  XLA compilation and one execution),
* ``lower_s`` and ``xla_compile_s``: ``step.lower(...)`` and ``.compile()`` timed
  separately on another freshly built step (``jit`` only: the ``pmap`` step is wrapped
  in a Python function that has no ``lower``),
* ``steps_per_s`` and ``examples_per_s``: medians over ``--blocks`` timed blocks of
  ``--steps-per-block`` steps, after ``--warmup`` steps, each block ended with
  ``jax.block_until_ready``,
* ``flops_per_step``: model FLOPs of one step, from XLA's cost analysis of the
  single-device program, scaled to the configuration's batch.

Usage::

    python benchmarks/train_step.py --json benchmarks/results/train_step_cpu.json
    python benchmarks/train_step.py --hidden 200,200 --latent 50 --batch 100
    python benchmarks/train_step.py --quick
"""

from __future__ import annotations

import os
import sys

import jax

_DEFAULT_DEVICES = 8


def _requested_devices(argv: list[str]) -> int:
    """Reads ``--devices N`` from the command line before argparse runs."""
    for i, arg in enumerate(argv):
        if arg == "--devices" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--devices="):
            return int(arg.split("=", 1)[1])
    return _DEFAULT_DEVICES


if __name__ == "__main__":
    jax.config.update("jax_num_cpu_devices", _requested_devices(sys.argv[1:]))

import argparse
import dataclasses
import json
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import flax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.hardware import compiled_cost, device_description
from genjax.models.vae import VAE, make_loss
from genjax.train.optim import make_optimizer
from genjax.train.state import TrainState, create_train_state, num_params
from genjax.train.step import LossUpdate, TrainStep, build_train_step

NOTE = (
    "2-core CPU shared with another training job running in the background (and at times "
    "other processes), so timings are noisy; steps_per_s is the median over timed blocks. The 8 devices are simulated "
    "(jax_num_cpu_devices) and share the same 2 cores: multi-device numbers measure back-end "
    "overhead, not speed-up."
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to measure.

    Attributes:
      hidden: hidden widths of the MLP encoder (the decoder mirrors them).
      latent: latent dimension.
      batch: global batch; rounded up to a multiple of the device count where needed.
      devices: number of devices for the multi-device configurations.
      warmup: untimed steps after the first call.
      steps_per_block: steps per timed block.
      blocks: number of timed blocks.
      seed: seed of the parameters, images and step key.
    """

    hidden: tuple[int, ...]
    latent: int
    batch: int
    devices: int
    warmup: int
    steps_per_block: int
    blocks: int
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Config:
    """One back-end configuration.

    Attributes:
      backend: ``"jit"`` or ``"pmap"``.
      num_devices: devices the step runs on.
      mesh: whether the step is a ``jit`` over a multi-device ``NamedSharding`` mesh.
    """

    backend: str
    num_devices: int
    mesh: bool

    @property
    def name(self) -> str:
        """A short label for the table."""
        suffix = "+mesh" if self.mesh else ""
        return f"{self.backend}{suffix} x{self.num_devices}"


def parse_hidden(text: str) -> tuple[int, ...]:
    """Parses ``"500,500"`` into ``(500, 500)``.

    Raises:
      argparse.ArgumentTypeError: if the text is not a comma-separated list of positive ints.
    """
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--hidden: expected comma-separated ints, got {text!r}") from e
    if not widths or any(w <= 0 for w in widths):
        raise argparse.ArgumentTypeError(f"--hidden: expected positive widths, got {text!r}")
    return widths


def round_up(batch: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``batch``."""
    return int(math.ceil(batch / multiple) * multiple)


def random_images(batch: int, seed: int) -> dict[str, np.ndarray]:
    """A batch ``{"image": [batch, 28, 28, 1]}`` of random binary float32 images."""
    rng = np.random.default_rng(seed)
    return {"image": (rng.random((batch, 28, 28, 1)) < 0.5).astype(np.float32)}


def timed_blocks(
    train_step: TrainStep,
    state: TrainState,
    batch: dict[str, Any],
    key: jax.Array,
    settings: Settings,
) -> list[float]:
    """Runs the warm-up steps, then returns the wall time in seconds of each timed block."""
    for _ in range(settings.warmup):
        state, metrics = train_step.step(state, batch, key)
    jax.block_until_ready((state, metrics) if settings.warmup else state)
    times = []
    for _ in range(settings.blocks):
        start = time.perf_counter()
        for _ in range(settings.steps_per_block):
            state, metrics = train_step.step(state, batch, key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    return times


def measure(
    config: Config,
    settings: Settings,
    model: VAE,
    params: Any,
    optimizer: optax.GradientTransformation,
    flops_per_example: float | None,
) -> tuple[dict[str, Any], float | None]:
    """Measures one configuration.

    Args:
      config: the back end and device count.
      settings: sizes and repetition counts.
      model: the VAE.
      params: its initial parameters.
      optimizer: the optax optimiser.
      flops_per_example: model FLOPs per example from an earlier configuration, if known.

    Returns:
      The JSON record and the FLOPs per example that this configuration's cost analysis
      gave (None if it gave none).
    """
    devices = jax.devices()[: config.num_devices]
    batch_size = round_up(settings.batch, config.num_devices)
    host_batch = random_images(batch_size, settings.seed)
    loss_fn = make_loss(model)
    key = jax.random.key(settings.seed)

    def fresh() -> tuple[TrainStep, TrainState, dict[str, Any]]:
        train_step = build_train_step(LossUpdate(loss_fn, optimizer), parallel=config.backend, devices=devices)
        state = train_step.place_state(create_train_state(params, optimizer))
        batch = train_step.place_batch(host_batch)
        jax.block_until_ready((state, batch))
        return train_step, state, batch

    train_step, state, batch = fresh()
    start = time.perf_counter()
    state, metrics = train_step.step(state, batch, key)
    jax.block_until_ready((state, metrics))
    compile_s = time.perf_counter() - start

    lower_s = xla_compile_s = None
    program_flops = None
    if hasattr(train_step.step, "lower"):
        aot_step, aot_state, aot_batch = fresh()
        start = time.perf_counter()
        lowered = aot_step.step.lower(aot_state, aot_batch, key)
        lower_s = time.perf_counter() - start
        start = time.perf_counter()
        compiled = lowered.compile()
        xla_compile_s = time.perf_counter() - start
        program_flops = compiled_cost(compiled).get("flops")
        del aot_state, aot_batch

    measured_per_example = None
    if program_flops is not None and config.num_devices == 1:
        measured_per_example = program_flops / batch_size
    per_example = flops_per_example if flops_per_example is not None else measured_per_example

    block_times = timed_blocks(train_step, state, batch, key, settings)
    rates = [settings.steps_per_block / t for t in block_times]
    steps_per_s = statistics.median(rates)
    flops_per_step = per_example * batch_size if per_example is not None else None
    record = {
        "backend": config.backend,
        "num_devices": config.num_devices,
        "mesh": config.mesh,
        "batch": batch_size,
        "hidden": list(settings.hidden),
        "latent": settings.latent,
        "compile_s": round(compile_s, 4),
        "lower_s": None if lower_s is None else round(lower_s, 4),
        "xla_compile_s": None if xla_compile_s is None else round(xla_compile_s, 4),
        "steps_per_s": round(steps_per_s, 3),
        "examples_per_s": round(steps_per_s * batch_size, 1),
        "steps_per_s_blocks": [round(r, 3) for r in rates],
        "flops_per_step": flops_per_step,
        "gflops_per_s": None if flops_per_step is None else round(flops_per_step * steps_per_s / 1e9, 3),
        "warmup": settings.warmup,
        "steps_per_block": settings.steps_per_block,
        "blocks": settings.blocks,
        "device": device_description(),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "num_params": num_params(params),
        "note": NOTE,
    }
    return record, measured_per_example


def print_table(records: Sequence[dict[str, Any]]) -> None:
    """Prints one line per configuration."""
    header = f"{'config':<14}{'batch':>6}{'compile_s':>11}{'lower_s':>9}{'xla_s':>8}{'steps/s':>10}{'examples/s':>12}{'GFLOP/s':>9}"
    print(header)
    print("-" * len(header))

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in records:
        name = Config(r["backend"], r["num_devices"], r["mesh"]).name
        print(
            f"{name:<14}{r['batch']:>6}{fmt(r['compile_s'], '.2f'):>11}{fmt(r['lower_s'], '.2f'):>9}"
            f"{fmt(r['xla_compile_s'], '.2f'):>8}{fmt(r['steps_per_s'], '.2f'):>10}"
            f"{fmt(r['examples_per_s'], '.0f'):>12}{fmt(r['gflops_per_s'], '.2f'):>9}"
        )


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, str | None]:
    """Parses the command line into settings and the JSON output path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=parse_hidden, default=(500, 500), help="hidden widths, e.g. 500,500")
    parser.add_argument("--latent", type=int, default=50, help="latent dimension")
    parser.add_argument("--batch", type=int, default=100, help="global batch (rounded up to a multiple of the device count)")
    parser.add_argument("--devices", type=int, default=_DEFAULT_DEVICES, help="simulated CPU devices for pmap and the mesh")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--steps-per-block", type=int, default=20, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=7, help="timed blocks; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT", help="write the records to this JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny model and counts for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.latent, args.batch = (32,), 4, 16
        args.warmup, args.steps_per_block, args.blocks = 1, 2, 2
    for name in ("latent", "batch", "devices", "steps_per_block", "blocks"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected a non-negative int, got {args.warmup}")
    settings = Settings(
        hidden=tuple(args.hidden),
        latent=args.latent,
        batch=args.batch,
        devices=args.devices,
        warmup=args.warmup,
        steps_per_block=args.steps_per_block,
        blocks=args.blocks,
        seed=args.seed,
    )
    return settings, args.json


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Runs the three configurations, prints the table and optionally writes JSON.

    Args:
      argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
      The records, one per configuration.
    """
    settings, out = parse_args(argv)
    available = len(jax.devices())
    if available < settings.devices:
        raise SystemExit(
            f"only {available} devices are available but --devices={settings.devices}; the JAX "
            "backend was initialised before jax_num_cpu_devices could be set (run this file as a script)"
        )
    model = VAE(latent_dim=settings.latent, hidden=settings.hidden, architecture="mlp", likelihood="bernoulli", activation="tanh")
    params = model.init(jax.random.key(settings.seed), jnp.zeros((1, 28, 28, 1), jnp.float32))
    optimizer = make_optimizer("adam", learning_rate=1e-3)
    print(
        f"device={device_description()} jax={jax.__version__} flax={flax.__version__} "
        f"model=784-{'-'.join(map(str, settings.hidden))}-{settings.latent} params={num_params(params)} "
        f"batch={settings.batch} warmup={settings.warmup} blocks={settings.blocks}x{settings.steps_per_block}"
    )
    configs = [
        Config("jit", 1, False),
        Config("pmap", settings.devices, False),
        Config("jit", settings.devices, True),
    ]
    records = []
    flops_per_example = None
    for config in configs:
        if settings.batch % config.num_devices:
            print(
                f"{config.name}: batch {settings.batch} is not divisible by {config.num_devices} devices; using {round_up(settings.batch, config.num_devices)}"
            )
        record, measured = measure(config, settings, model, params, optimizer, flops_per_example)
        if flops_per_example is None:
            flops_per_example = measured
        records.append(record)
        print(f"{config.name}: done ({record['steps_per_s']:.2f} steps/s)", flush=True)
    print()
    print_table(records)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
            f.write("\n")
        print(f"\nwrote {out}")
    return records


if __name__ == "__main__":
    main()
