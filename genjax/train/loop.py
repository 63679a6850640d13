"""The one training loop every family uses: data, steps, metrics, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from genjax.train.checkpoint import Checkpointer
from genjax.train.state import TrainState
from genjax.train.step import Batch, TrainStep

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """A step produced a non-finite loss or metric; no checkpoint was written for it."""


class MetricsWriter:
    """Appends one JSON object per logged step to a ``metrics.jsonl`` file.

    Args:
      path: the file; its parent folder is created.
    """

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step``: those a killed run logged after its last checkpoint."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
            if record.get("step", step + 1) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record and flushes it to disk."""
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Reads every record of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns.

    Attributes:
      state: the final state, host-side and unreplicated.
      last_metrics: metrics of the final step (floats).
      start_step: the step training started (or resumed) from.
      wall_time_s: seconds of training that led to this state, summed over the runs
        that were resumed (as recorded in the checkpoints).
      stopped: True when ``stop`` ended training before ``num_steps``.
    """

    state: TrainState
    last_metrics: dict[str, float]
    start_step: int
    wall_time_s: float
    stopped: bool = False


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def train(
    *,
    train_step: TrainStep,
    state: TrainState,
    batches: Callable[[int], Batch],
    key: jax.Array,
    num_steps: int,
    log_every: int = 100,
    checkpoint_every: int = 1000,
    checkpointer: Checkpointer | None = None,
    metrics: MetricsWriter | None = None,
    metadata: dict[str, Any] | None = None,
    evaluate: Callable[[TrainState], dict[str, float]] | None = None,
    eval_every: int = 0,
    progress: bool | None = None,
    check_record: Callable[[dict[str, Any]], None] | None = None,
    from_scratch: bool = False,
    on_start: Callable[[int], None] | None = None,
    stop: Callable[[TrainState], bool] | None = None,
) -> TrainResult:
    """Runs ``train_step`` from ``state`` (or the latest checkpoint) up to ``num_steps``.

    The batch for update ``s`` is ``batches(s)`` and the step key is derived from ``key``
    and ``s`` inside the step, so a run resumed from a checkpoint at step ``s`` performs
    exactly the updates an uninterrupted run would.

    Args:
      train_step: the compiled step (see ``build_train_step``).
      state: the initial host-side state, used when there is no checkpoint; also the
        template for restoring one.
      batches: a pure function from step number to a numpy batch.
      key: the run's base PRNG key.
      num_steps: total number of updates of the run.
      log_every: write metrics every this many steps (and at the last step).
      checkpoint_every: save every this many steps (and at the last step).
      checkpointer: where checkpoints go; None disables them.
      metrics: where logged metrics go; None disables them.
      metadata: JSON record stored with each checkpoint (the resolved config).
      evaluate: ``evaluate(host_state) -> metrics``, run every ``eval_every`` steps; its
        metrics are logged with an ``eval_`` prefix.
      eval_every: evaluation period in steps; 0 disables it.
      progress: show a progress bar; None shows one only on a terminal.
      check_record: passed to ``Checkpointer.restore_latest``: checks each verified
        checkpoint record (e.g. that the run's config did not change) before resuming.
      from_scratch: passed to ``Checkpointer.restore_latest``: when every checkpoint is
        damaged, train again from ``state`` instead of raising ``CheckpointError``.
      on_start: called with the step training starts from (the restored step, or 0)
        before the first update, e.g. to record the run's config beside its checkpoints.
      stop: ``stop(host_state) -> bool``, checked every ``log_every`` steps (and on a
        restored state at such a step): once True, the state is checkpointed and training ends
        before ``num_steps``. A pure function of the state, so a resumed run stops
        exactly where an uninterrupted one did.

    Returns:
      A ``TrainResult``.

    Raises:
      CheckpointError: every checkpoint is damaged (and not ``from_scratch``), one does
        not fit ``state``, or a save failed (the earlier checkpoints are intact).
      TrainingDivergedError: a step produced a non-finite loss or metric. The state of
        that step is not saved, so the last checkpoint is the last good one.
    """
    for name, value in (("num_steps", num_steps), ("log_every", log_every), ("checkpoint_every", checkpoint_every)):
        _check_positive(f"train.{name}", value)
    if eval_every < 0:
        raise ValueError(f"train.eval_every: expected a non-negative int, got {eval_every}")
    start_time = time.perf_counter()
    start = 0
    earlier_wall_time = 0.0
    if checkpointer is not None:
        restored = checkpointer.restore_latest(state, check_record=check_record, from_scratch=from_scratch)
        if restored is not None:
            state = restored[0]
            start = int(state.step)
            earlier_wall_time = float(restored[1].get("train_wall_time_s", 0.0))
            log.info("resuming from the checkpoint at step %d in %s", start, checkpointer.directory)
    if on_start is not None:
        on_start(start)
    if metrics is not None:
        metrics.truncate_after(start)
    last: dict[str, float] = {}
    dev_state = train_step.place_state(state)
    bar = tqdm(
        total=num_steps,
        initial=start,
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
        desc="train",
        dynamic_ncols=True,
    )
    # Only where the uninterrupted run would have checked too, so a resumed run stops at
    # the same step.
    stopped = stop is not None and start > 0 and start % log_every == 0 and stop(state)
    for step in range(start, num_steps if not stopped else start):
        batch = train_step.place_batch(batches(step))
        tic = time.perf_counter()
        dev_state, step_metrics = train_step.step(dev_state, batch, key)
        # Fetching the metrics every step syncs with the device, which costs some
        # pipelining on small models; in exchange a non-finite step is caught at once,
        # named exactly, and never reaches a checkpoint.
        last = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
        last["step_time_s"] = time.perf_counter() - tic
        done = step + 1
        bad = sorted(k for k, v in last.items() if not math.isfinite(v))
        if bad:
            kept = (
                f"; the last good checkpoint is step {checkpointer.all_steps()[-1]} in {checkpointer.directory}"
                if checkpointer and checkpointer.all_steps()
                else ""
            )
            raise TrainingDivergedError(f"non-finite {', '.join(bad)} at step {done} (loss={last.get('loss')}){kept}")
        bar.update(1)
        record = dict(last)
        if evaluate is not None and eval_every and done % eval_every == 0:
            record.update({f"eval_{k}": v for k, v in evaluate(train_step.fetch_state(dev_state)).items()})
        if done % log_every == 0 or done == num_steps or len(record) > len(last):
            bar.set_postfix(loss=f"{last['loss']:.4g}")
            if metrics is not None:
                metrics.write({"step": done, **record})
        stopped = stop is not None and done % log_every == 0 and stop(train_step.fetch_state(dev_state))
        if checkpointer is not None and (done % checkpoint_every == 0 or done == num_steps or stopped):
            wall = earlier_wall_time + time.perf_counter() - start_time
            checkpointer.save(train_step.checkpoint_state(dev_state), {**(metadata or {}), "train_wall_time_s": wall})
        if stopped:
            log.info("converged at step %d of %d: training stops here", done, num_steps)
            break
    bar.close()
    return TrainResult(
        state=train_step.fetch_state(dev_state),
        last_metrics=last,
        start_step=start,
        wall_time_s=earlier_wall_time + time.perf_counter() - start_time,
        stopped=stopped,
    )
