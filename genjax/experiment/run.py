"""Config to run: ``train``, ``evaluate``, ``sample``, ``load_run`` and ``info``.

These are the library functions behind the ``genjax`` command; scripts call them
directly. A run lives in a workdir holding ``config.json`` (the resolved config),
``checkpoints/``, ``metrics.jsonl``, ``samples.png``, the family's figures and
``eval.json``. Each checkpoint carries the config it was trained with, and every load
(``train`` resuming, ``evaluate``, ``sample``, ``load_run``) compares it with the config
in hand, so a changed model is refused instead of restoring weights into the wrong
network. Each of these holds the workdir's lock (``genjax.experiment.workdir``) while
it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import pathlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from genjax import distributed, keys, viz
from genjax.experiment.base import Experiment
from genjax.experiment.config import ConfigError, apply_overrides, check_finite, load_config_file
from genjax.experiment.families import FAMILIES, build
from genjax.experiment.workdir import WorkdirLock, prepare_workdir
from genjax.train import Checkpointer, MetricsWriter, TrainState, build_train_step, num_params
from genjax.train import train as train_loop

log = logging.getLogger("genjax")

RESUMABLE_FIELDS = (
    "train.num_steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_every",
    "train.keep_checkpoints",
    "eval.",
    "num_devices",
    "parallel",
    "fsdp",
    "data.data_dir",
)
"""Fields that may change when a run is resumed: they do not alter the updates (the
parallel back end and device count change them only by float32 round-off)."""

LOADABLE_FIELDS = (*RESUMABLE_FIELDS, "train.")
"""Fields that may differ from the checkpoint's when a run is evaluated or sampled: the
resumable ones and the rest of ``train`` (which shapes the updates, not the network)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained (or interrupted) run loaded from its workdir.

    Attributes:
      config: the run's resolved config.
      experiment: the experiment built from it.
      state: the latest checkpointed training state, host-side.
      workdir: the run's folder.
    """

    config: ml_collections.ConfigDict
    experiment: Experiment
    state: TrainState
    workdir: pathlib.Path

    @property
    def params(self) -> Any:
        """The parameters to evaluate and sample with: the EMA copy when there is one."""
        return eval_params(self.state, self.experiment)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads a config file ``path[:argument]`` and applies ``a.b=value`` overrides.

    Raises:
      FileNotFoundError: no file at ``path``.
      ConfigError: the file fails to load or an override is unknown or mistyped.
    """
    return apply_overrides(load_config_file(spec), overrides)


def devices(config: ml_collections.ConfigDict) -> list[jax.Device]:
    """The devices a run uses: the first ``config.num_devices`` (0: all)."""
    available = jax.devices()
    n = config.get("num_devices", 0)
    if n and jax.process_count() > 1:
        raise ValueError(f"num_devices: a run over {jax.process_count()} processes uses every device; expected 0 (all), got {n}")
    if n < 0 or n > len(available):
        raise ValueError(f"num_devices: expected 0 (all) to {len(available)}, got {n}")
    return available[:n] if n else available


def eval_params(state: TrainState, experiment: Experiment | None = None) -> Any:
    """The parameters to evaluate: the experiment's ``eval_params(state)`` when it has one,
    else ``ema_params`` when the run keeps them, else ``params``."""
    if experiment is not None and experiment.eval_params is not None:
        return experiment.eval_params(state)
    return state.ema_params if state.ema_params is not None else state.params


def check_config(config: ml_collections.ConfigDict) -> None:
    """The checks every entry point makes before building anything: finite floats, a
    positive batch size and number of checkpoints kept (each family checks its own fields
    when it builds).

    Raises:
      ConfigError: naming the field.
    """
    check_finite(config)
    t = config.train
    for name in ("batch_size", "keep_checkpoints"):
        value = t[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"train.{name}: expected a positive int, got {value!r}")


@contextlib.contextmanager
def _locked(workdir: pathlib.Path, command: str) -> Iterator[None]:
    """Holds the workdir's lock in process 0, the one process that writes it."""
    if jax.process_index() != 0:
        yield
        return
    with WorkdirLock(workdir, command):
        yield


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Writes ``obj`` as sorted, indented JSON, atomically (a temporary file then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def resolved(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as the JSON record stored in ``config.json`` and with every checkpoint."""
    return json.loads(config.to_json_best_effort())


def _with_defaults(record: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    merged = dict(record)
    for k, v in defaults.items():
        if k not in merged:
            merged[k] = v
        elif isinstance(v, dict) and isinstance(merged[k], dict):
            merged[k] = _with_defaults(merged[k], v)
    return merged


def completed(record: dict[str, Any]) -> dict[str, Any]:
    """A stored config record (``config.json``, a checkpoint's) with the fields added to
    its family since it was written, at their defaults: the values that run used."""
    family = record.get("model", {}).get("family") if isinstance(record.get("model"), dict) else None
    if family not in FAMILIES:
        return record
    return _with_defaults(record, resolved(FAMILIES[family].default_config()))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], *, loading: bool = False) -> None:
    """Refuses a config that differs from a checkpoint's in a field that matters.

    Args:
      saved: the config recorded with the checkpoint.
      current: the config in hand (``resolved(config)``).
      loading: compare for evaluating or sampling (``LOADABLE_FIELDS`` may differ)
        instead of for resuming training (``RESUMABLE_FIELDS`` may differ).

    Raises:
      ValueError: naming each changed field with its saved and current values.
    """
    allowed = LOADABLE_FIELDS if loading else RESUMABLE_FIELDS
    old, new = _flatten(completed(saved)), _flatten(current)
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not k.startswith(allowed)]
    if changed:
        remedy = "use the run's own config (drop --config and those overrides)" if loading else "use a new --workdir, or restore those values to resume"
        raise ValueError("workdir: its checkpoints were trained with a different config (" + "; ".join(changed) + f"); {remedy}")


def _check_record(current: dict[str, Any], loading: bool, record: dict[str, Any]) -> None:
    """``check_record`` for ``Checkpointer.restore_latest``: the record's config against ``current``."""
    saved = record.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"workdir: checkpoint {record.get('step')} records no config; it was not written by 'genjax train' and cannot be checked")
    check_resume_config(saved, current, loading=loading)


def final_outputs(experiment: Experiment, state: TrainState, workdir: pathlib.Path) -> dict[str, Any]:
    """Writes ``samples.png``, the family's figures and ``eval.json`` for ``state``.

    In a multi-process run process 0 alone evaluates (on its own devices) and writes;
    the others return at once.

    Returns:
      The metrics written to ``eval.json``: the full evaluation, the step and its wall time.
    """
    if not distributed.is_writer():
        return {"step": int(state.step), "written_by": "process 0"}
    key = keys.stream(experiment.config.seed, keys.FINAL_EVAL)
    params = eval_params(state, experiment)
    viz.save_samples(workdir / "samples.png", experiment.sample(params, jax.random.fold_in(key, 1), experiment.config.eval.num_grid))
    experiment.figures(params, jax.random.fold_in(key, 2), workdir)
    tic = time.perf_counter()
    metrics = experiment.evaluate(params, jax.random.fold_in(key, 3), True)
    result = {"step": int(state.step), "eval_wall_time_s": time.perf_counter() - tic, **metrics}
    write_json(workdir / "eval.json", result)
    return result


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, from_scratch: bool = False) -> dict[str, Any]:
    """Trains from scratch, or resumes from the latest checkpoint in ``workdir``, then evaluates.

    A resumed run performs exactly the updates an uninterrupted one would; its config may
    differ only in ``RESUMABLE_FIELDS``. Damaged checkpoints are set aside and the newest
    intact one is used.

    Args:
      config: a resolved config (see ``load_config``).
      workdir: the run's folder; created if missing.
      from_scratch: when every checkpoint in ``workdir`` is damaged, train again from
        step 0 instead of refusing.

    Returns:
      The final metrics (also written to ``eval.json``), with ``train_wall_time_s``.

    Raises:
      WorkdirBusyError: another process holds the workdir's lock.
      CheckpointError: every checkpoint is damaged (and not ``from_scratch``).
    """
    check_config(config)
    distributed.check_same_everywhere(resolved(config), "--config")
    if config.parallel == "pmap" and jax.process_count() > 1:
        raise ConfigError("parallel: a run over several processes uses 'jit' (the sharded step); 'pmap' is for one process")
    workdir = prepare_workdir(workdir, create=True)
    writer = distributed.is_writer()
    with _locked(workdir, "train"):
        experiment = build(config)
        run_keys = keys.run_keys(config.seed)
        state = experiment.init_state(run_keys.init)
        t = config.train
        step = build_train_step(experiment.update, parallel=config.parallel, devices=devices(config), fsdp=config.get("fsdp", 1))
        record = resolved(config)
        eval_key = keys.stream(config.seed, keys.EVAL_DURING_TRAINING)
        result = train_loop(
            train_step=step,
            state=state,
            batches=experiment.batches,
            key=run_keys.train,
            num_steps=t.num_steps,
            log_every=t.log_every,
            checkpoint_every=t.checkpoint_every,
            checkpointer=Checkpointer(workdir / "checkpoints", max_to_keep=t.keep_checkpoints),
            metrics=MetricsWriter(workdir / "metrics.jsonl") if writer else None,
            metadata={"config": record},
            evaluate=lambda s: experiment.evaluate(eval_params(s, experiment), eval_key, False),
            eval_every=t.eval_every,
            check_record=functools.partial(_check_record, record, False),
            from_scratch=from_scratch,
            on_start=lambda _: write_json(workdir / "config.json", record) if writer else None,
            stop=experiment.stop,
        )
        log.info(
            "trained steps %d..%d in %.1fs; last loss %.4f",
            result.start_step,
            int(result.state.step),
            result.wall_time_s,
            result.last_metrics.get("loss", float("nan")),
        )
        metrics = final_outputs(experiment, result.state, workdir)
        metrics["train_wall_time_s"] = result.wall_time_s
        if experiment.stop is not None:
            metrics["stopped_at_step"] = int(result.state.step)
        if writer:
            write_json(workdir / "eval.json", metrics)
    return metrics


def run_config(workdir: str | pathlib.Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The resolved config a run stored in ``workdir/config.json``, with ``a.b=value`` overrides.

    Raises:
      FileNotFoundError: ``workdir`` holds no ``config.json``.
      ValueError: ``config.json`` is not JSON or not a run config.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"workdir: no config.json in '{workdir}'; is it a 'genjax train' workdir?")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"workdir: '{path}' is not valid JSON ({err}); pass the run's config with --config") from None
    if not isinstance(record, dict) or "model" not in record:
        raise ValueError(f"workdir: '{path}' is not a genjax run config (no 'model' section); pass the run's config with --config")
    config = ml_collections.ConfigDict(completed(record))
    config.lock()
    return apply_overrides(config, overrides)


def _load(workdir: pathlib.Path, config: ml_collections.ConfigDict | None) -> Run:
    """``load_run`` without taking the lock (the caller holds it)."""
    if config is None:
        config = run_config(workdir)
    check_config(config)
    distributed.check_same_everywhere(resolved(config), "--config")
    experiment = build(config)
    template = experiment.init_state(keys.run_keys(config.seed).init)
    ckpt_dir = workdir / "checkpoints"
    check = functools.partial(_check_record, resolved(config), True)
    restored = Checkpointer(ckpt_dir).restore_latest(template, check_record=check) if ckpt_dir.is_dir() else None
    if restored is None:
        raise FileNotFoundError(f"workdir: no checkpoint under '{ckpt_dir}'; run 'genjax train' with this workdir first")
    return Run(config=config, experiment=experiment, state=restored[0], workdir=workdir)


def load_run(workdir: str | pathlib.Path, config: ml_collections.ConfigDict | None = None) -> Run:
    """Loads a finished or interrupted run: its config, experiment and latest intact state.

    Args:
      workdir: a ``genjax train`` workdir.
      config: the config to build the experiment from; default the run's own
        ``config.json``. It may differ from the checkpoint's only in
        ``LOADABLE_FIELDS`` (evaluation and sampling settings).

    Raises:
      FileNotFoundError: no ``config.json`` or no checkpoint in ``workdir``.
      ValueError: ``config`` differs from the checkpoint's in another field.
      CheckpointError: every checkpoint is damaged.
      WorkdirBusyError: another process holds the workdir's lock.
    """
    workdir = prepare_workdir(workdir, create=False)
    with _locked(workdir, "load_run"):
        return _load(workdir, config)


def evaluate(workdir: str | pathlib.Path, config: ml_collections.ConfigDict | None = None) -> dict[str, Any]:
    """Evaluates the latest checkpoint of a run; writes ``samples.png``, figures and ``eval.json``.

    Args:
      workdir: a ``genjax train`` workdir.
      config: default the run's own config (see ``load_run``).

    Returns:
      The metrics written to ``eval.json``.
    """
    workdir = prepare_workdir(workdir, create=False)
    with _locked(workdir, "eval"):
        run = _load(workdir, config)
        return final_outputs(run.experiment, run.state, run.workdir)


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """What ``sample`` wrote.

    Attributes:
      num: number of samples.
      npz: the ``.npz`` file holding ``images``.
      png: the grid of the samples.
      step: the checkpoint's step.
    """

    num: int
    npz: pathlib.Path
    png: pathlib.Path
    step: int


def sample(
    workdir: str | pathlib.Path,
    num: int,
    *,
    out: str | pathlib.Path | None = None,
    config: ml_collections.ConfigDict | None = None,
    class_label: int | None = None,
    guidance: float | None = None,
) -> SampleResult:
    """Draws ``num`` samples from the latest checkpoint of a run.

    The samples use the run's sample stream (``genjax.keys.SAMPLES``), so the same run,
    ``num`` and sampler give the same samples. The run's own ``samples.png`` is never
    overwritten.

    Args:
      workdir: a ``genjax train`` workdir.
      num: number of samples (positive).
      out: the ``.npz`` to write (its grid goes beside it as ``.png``), or an existing
        folder to write ``step<step>_n<num>.npz`` into; default ``workdir/samples``.
      config: default the run's own config; override ``eval.sampler`` and friends to
        choose a diffusion sampler.
      class_label: a class-conditional diffusion model draws every sample of this class
        (default: the classes in turn).
      guidance: its classifier-free guidance scale (default ``eval.guidance``).

    Raises:
      ValueError: ``num`` is not a positive int, or ``out`` is neither a folder nor
        ends in ``.npz``.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num <= 0:
        raise ValueError(f"--num: expected a positive int, got {num!r}")
    if out is not None and not pathlib.Path(out).is_dir() and pathlib.Path(out).suffix != ".npz":
        raise ValueError(f"--out: expected an existing folder or a path ending in .npz, got '{out}'")
    workdir = prepare_workdir(workdir, create=False)
    with _locked(workdir, "sample"):
        run = _load(workdir, config)
        step = int(run.state.step)
        name = f"step{step}_n{num}.npz"
        npz = run.workdir / "samples" / name if out is None else pathlib.Path(out) / name if pathlib.Path(out).is_dir() else pathlib.Path(out)
        if not distributed.is_writer():
            return SampleResult(num=num, npz=npz, png=npz.with_suffix(".png"), step=step)
        options = {k: v for k, v in (("labels", class_label), ("guidance", guidance)) if v is not None}
        if options and "num_classes" not in run.config.model:
            raise ValueError(f"--class-label/--guidance: the model family {run.config.model.family!r} has no class-conditional sampling")
        images = run.experiment.sample(run.params, keys.stream(run.config.seed, keys.SAMPLES), num, **options)
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(npz, images=images)
        png = npz.with_suffix(".png")
        viz.save_samples(png, images)
    return SampleResult(num=num, npz=npz, png=png, step=step)


def params_by_module(tree: Any) -> dict[str, int]:
    """Parameter counts of the top-level modules of a parameter tree.

    Wrappers with a single entry (Flax's ``params`` collection, a lone submodule) are
    looked through, so a network's first level of submodules is counted.
    """
    node = tree
    while isinstance(node, Mapping) and len(node) == 1:
        node = next(iter(node.values()))
    if not isinstance(node, Mapping):
        return {}
    return {str(name): num_params(sub) for name, sub in node.items()}


def info(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The parameter count of a config's model (without initialising it), per top-level
    module too, and the resolved config."""
    check_config(config)
    experiment = build(config)
    shapes = jax.eval_shape(experiment.init, keys.run_keys(config.seed).init)
    return {"num_params": num_params(shapes), "num_params_by_module": params_by_module(shapes), "config": resolved(config)}
