"""Atomic, verified checkpoints with orbax.

Each checkpoint holds the ``TrainState`` and a JSON record: the run's config, library
versions and a SHA-256 digest of the state's bytes. Orbax writes each step to a
temporary folder and renames it when complete, so a run killed mid-save leaves only
finished checkpoints behind. On restore the digest is checked; a checkpoint that fails
to load or to verify is reported and the previous one is tried. A checkpoint whose
layout does not match the code (other fields) is an error and is left where it is;
so is one written before ``TrainState.model_state`` existed (genjax before issue 15),
which this version no longer reads.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from genjax.train.state import TrainState

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """No checkpoint in a directory could be restored and verified."""


def state_digest(state: Any) -> str:
    """SHA-256 over the dtype, shape and bytes of every leaf of a host-side pytree."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        arr = np.asarray(leaf)
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine a checkpoint's numbers."""
    import flax
    import optax

    import genjax

    return {
        "genjax": genjax.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "orbax-checkpoint": ocp.__version__ if hasattr(ocp, "__version__") else "unknown",
    }


class Checkpointer:
    """Saves and restores ``TrainState`` checkpoints under ``directory``.

    Args:
      directory: the checkpoint folder (created if missing).
      max_to_keep: number of most recent checkpoints kept on disk.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3) -> None:
        if max_to_keep <= 0:
            raise ValueError(f"max_to_keep: expected a positive int, got {max_to_keep}")
        self.directory = pathlib.Path(directory).absolute()
        self._options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
        self._manager = self._new_manager()

    def _new_manager(self) -> ocp.CheckpointManager:
        # Handlers are named up front so that metadata can be read before any save or restore.
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        return ocp.CheckpointManager(self.directory, options=self._options, item_handlers=handlers)

    @property
    def quarantine(self) -> pathlib.Path:
        """Where unreadable checkpoints are moved: ``<directory>_corrupt`` beside it."""
        return self.directory.with_name(self.directory.name + "_corrupt")

    def _set_aside(self, step: int) -> pathlib.Path:
        """Moves an unreadable checkpoint out of the way, so the step can be saved again.

        Nothing is deleted: the folder goes to ``quarantine`` for inspection.
        """
        self.quarantine.mkdir(parents=True, exist_ok=True)
        target = self.quarantine / str(step)
        suffix = 1
        while target.exists():
            target, suffix = self.quarantine / f"{step}.{suffix}", suffix + 1
        shutil.move(str(self.directory / str(step)), target)
        self._manager.close()
        self._manager = self._new_manager()
        return target

    def all_steps(self) -> list[int]:
        """Steps of the finished checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, state: TrainState, metadata: dict[str, Any] | None = None) -> int:
        """Saves a host-side state under its own step; returns that step.

        Args:
          state: a single (unreplicated) state, e.g. from ``TrainStep.fetch_state``.
          metadata: JSON-serialisable record saved beside it (config, notes).
        """
        step = int(state.step)
        record = {"step": step, "digest": state_digest(state), "versions": library_versions(), **(metadata or {})}
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(record)),
            force=True,
        )
        self._manager.wait_until_finished()
        return step

    def read_metadata(self, step: int) -> dict[str, Any]:
        """The JSON record saved with the checkpoint at ``step`` (config, versions, digest)."""
        if step not in self.all_steps():
            raise FileNotFoundError(f"step: no checkpoint at step {step} in {self.directory} (have {self.all_steps()})")
        return dict(self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def _saved_layout(self, step: int) -> tuple[set[str], dict[str, tuple[int, ...]]] | None:
        """The top-level fields saved at ``step`` and the name -> shape of every array, or
        None if the metadata is unreadable."""
        try:
            tree = self._manager.item_metadata(step)["state"].tree
            return set(tree), {leaf.name: tuple(leaf.shape) for leaf in jax.tree.leaves(tree)}
        except Exception:  # unreadable metadata is handled as a corrupt checkpoint
            return None

    def _target(self, step: int, template: TrainState) -> Any:
        """The template, checked against the layout saved at ``step``.

        Raises:
          CheckpointError: the checkpoint's fields or arrays (names or shapes) differ from
            the template's: it was written by another model, config or code version.
        """
        layout = self._saved_layout(step)
        if layout is None:
            return template
        fields, saved = layout
        if "model_state" not in fields:
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} was written by a genjax older than TrainState.model_state "
                "and is not read by this version; it was left in place (use a new --workdir, or that genjax version)"
            )
        expected = {
            jax.tree_util.keystr(path, simple=True, separator="."): tuple(np.shape(leaf)) for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]
        }
        if saved != expected:
            missing = sorted(set(expected) - set(saved))[:3]
            unexpected = sorted(set(saved) - set(expected))[:3]
            reshaped = sorted(k for k in set(saved) & set(expected) if saved[k] != expected[k])[:3]
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} does not fit this run's state (missing {missing}, unexpected "
                f"{unexpected}, other shapes {reshaped}): it was written by another model, config or code version and was left in place"
            )
        return template

    def restore_latest(self, template: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
        """Restores the newest checkpoint that loads and verifies.

        A checkpoint that fails to load or to verify is moved to ``quarantine`` (so that
        training can save that step again) and the previous one is tried. A checkpoint
        of another layout raises ``CheckpointError`` and is not moved.

        Args:
          template: a host-side state with the right structure, shapes and dtypes.

        Returns:
          ``(state, metadata)``, or None if the directory holds no checkpoint.

        Raises:
          CheckpointError: checkpoints exist but none could be restored.
        """
        steps = self.all_steps()
        if not steps:
            return None
        for step in reversed(steps):
            target = self._target(step, template)
            abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), target)
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
                )
                state, meta = jax.device_get(restored["state"]), restored["meta"]
                if state_digest(state) != meta.get("digest"):
                    raise CheckpointError(f"checkpoint {step}: state digest does not match its record")
                return state, meta
            except Exception as err:  # any failure to load means "try the previous one"
                moved = self._set_aside(step)
                log.warning("checkpoint at step %d in %s is unreadable (%s); moved it to %s and trying the previous one", step, self.directory, err, moved)
        raise CheckpointError(f"no checkpoint in {self.directory} could be restored (tried steps {steps})")

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.close()
