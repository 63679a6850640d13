"""Atomic, verified checkpoints with orbax.

Each checkpoint holds the ``TrainState`` and a JSON record: the run's config, library
versions and a SHA-256 digest of the state's bytes. Orbax writes each step to a
temporary folder and renames it when complete; genjax then writes a manifest
(``genjax_manifest.json``) with the size and SHA-256 of every file in the folder. A
checkpoint counts as written only once its manifest is, so a run killed at any moment
leaves only complete checkpoints, or one without a manifest that is set aside.

Every reader goes through one path, ``Checkpointer.restore_latest``: newest first, it
checks every file against the manifest, reads the record (which must carry the digest
and its own step), lets the caller check the record (the run's config), checks the saved
layout against the expected state, restores the state and compares its digest. A
checkpoint that fails a check of its bytes is moved to the quarantine folder beside the
checkpoints (nothing is deleted) and the previous one is tried. A checkpoint of another
layout or config is an error and stays where it is; so is one written before
``TrainState.model_state`` existed. When every checkpoint is damaged, restoring refuses
to start again from step 0 unless asked (``from_scratch=True``).

In a multi-process run (``jax.distributed``) every process calls ``save`` and
``restore_latest`` together. Orbax writes each process's shards of the global arrays;
process 0 alone writes the manifest and moves damaged checkpoints, between barriers, and
the processes check that they reached the same verdict on each checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from genjax import distributed
from genjax.train.state import TrainState

log = logging.getLogger(__name__)

MANIFEST = "genjax_manifest.json"
"""The file in each step folder listing the size and SHA-256 of every other file."""

FORMAT = 2
"""The checkpoint format this version writes: 2 has a manifest; 1 (before it) has the
state digest only and is still read, verified by that digest."""


class CheckpointError(RuntimeError):
    """Checkpoints exist but cannot be used: all damaged, another layout, or not saved."""


class DamagedCheckpointError(CheckpointError):
    """One checkpoint failed a check of its bytes (manifest, record or state digest)."""


def state_digest(state: Any) -> str:
    """SHA-256 over the dtype, shape and bytes of every leaf of a host-side pytree."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        arr = np.asarray(leaf)
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def file_sha256(path: pathlib.Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_manifest(folder: pathlib.Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {"size", "sha256"}`` of every file under ``folder`` but the manifest."""
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


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


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Checkpointer:
    """Saves and restores ``TrainState`` checkpoints under ``directory``.

    Args:
      directory: the checkpoint folder (created if missing).
      max_to_keep: number of most recent checkpoints kept on disk.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3) -> None:
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep <= 0:
            raise ValueError(f"max_to_keep: expected a positive int, got {max_to_keep!r}")
        self.directory = pathlib.Path(directory).absolute()
        self._options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True, cleanup_tmp_directories=True)
        self._manager = self._new_manager()

    def _new_manager(self) -> ocp.CheckpointManager:
        # Handlers are named up front so that metadata can be read before any save or restore.
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        return ocp.CheckpointManager(self.directory, options=self._options, item_handlers=handlers)

    @property
    def quarantine(self) -> pathlib.Path:
        """Where damaged checkpoints are moved: ``<directory>_corrupt`` beside it."""
        return self.directory.with_name(self.directory.name + "_corrupt")

    def quarantined(self) -> list[str]:
        """Names of the checkpoint folders set aside in ``quarantine``, sorted."""
        return sorted(p.name for p in self.quarantine.iterdir()) if self.quarantine.is_dir() else []

    def _set_aside(self, step: int, reason: Exception) -> None:
        """Moves a damaged checkpoint to ``quarantine`` (so the step can be saved again)
        and says so in one log line. Nothing is deleted. Process 0 moves it."""
        distributed.barrier(f"genjax-set-aside-{step}-start")
        target = self.quarantine / str(step)
        suffix = 1
        while target.exists():
            target, suffix = self.quarantine / f"{step}.{suffix}", suffix + 1
        if distributed.is_writer():
            self.quarantine.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.directory / str(step)), target)
        distributed.barrier(f"genjax-set-aside-{step}-done")
        self._manager.close()
        self._manager = self._new_manager()
        log.warning("checkpoint %d in %s is damaged (%s); moved it to %s", step, self.directory, reason, target)

    def all_steps(self) -> list[int]:
        """Steps of the checkpoint folders present, oldest first (verified only on reading)."""
        return sorted(self._manager.all_steps())

    def save(self, state: TrainState, metadata: dict[str, Any] | None = None) -> int:
        """Saves a state under its own step, then its manifest; returns the step.

        Args:
          state: a single (unreplicated) state: host arrays, or global ``jax.Array``s of
            which each process writes its own shards (``TrainStep.checkpoint_state``).
          metadata: JSON-serialisable record saved beside it (config, notes).

        Raises:
          CheckpointError: the write failed (a full disk, a file-size limit, a read-only
            folder); the message names the error, and the earlier checkpoints are intact.
        """
        step = int(state.step)
        record = {"step": step, "format": FORMAT, "digest": state_digest(distributed.fetch_global(state)), "versions": library_versions(), **(metadata or {})}
        folder = self.directory / str(step)
        with _leftover_callbacks_ignored():
            try:
                self._manager.save(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(record)),
                    force=True,
                )
                self._manager.wait_until_finished()
                distributed.barrier(f"genjax-saved-{step}")
                if distributed.is_writer():
                    manifest = {"format": FORMAT, "step": step, "files": folder_manifest(folder)}
                    _write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
                distributed.barrier(f"genjax-manifest-{step}")
            except Exception as err:  # orbax and tensorstore wrap OS errors in their own types
                self._discard_partial(step)
                kept = [s for s in self.all_steps() if s != step]
                raise CheckpointError(
                    f"saving checkpoint {step} in {self.directory} failed ({_last_line(err)}); the earlier checkpoints {kept} are intact"
                ) from err
        return step

    def _discard_partial(self, step: int) -> None:
        """Removes what a failed save of ``step`` left: orbax's temporary folder or a
        folder without a manifest (an incomplete checkpoint holds nothing to keep)."""
        if not distributed.is_writer():
            return
        for path in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(path, ignore_errors=True)
        folder = self.directory / str(step)
        if folder.is_dir() and not (folder / MANIFEST).is_file():
            shutil.rmtree(folder, ignore_errors=True)
        self._manager.close()
        self._manager = self._new_manager()

    def verify(self, step: int) -> dict[str, Any]:
        """Checks every file of the checkpoint at ``step`` against its manifest and reads
        its record; the state digest is checked when the state is restored.

        Returns:
          The JSON record saved with the checkpoint (step, digest, config, versions).

        Raises:
          DamagedCheckpointError: naming the first check that failed.
        """
        folder = self.directory / str(step)
        manifest_path = folder / MANIFEST
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text())
                files = manifest["files"]
                if manifest.get("step") != step or not isinstance(files, dict):
                    raise ValueError(f"it names step {manifest.get('step')!r}")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
                raise DamagedCheckpointError(f"its manifest is unreadable: {_last_line(err)}") from None
            found = folder_manifest(folder)
            missing = sorted(set(files) - set(found))
            extra = sorted(set(found) - set(files))
            changed = sorted(name for name in set(files) & set(found) if files[name] != found[name])
            if missing or extra or changed:
                parts = [f"{label} {names[:3]}" for label, names in (("missing", missing), ("unexpected", extra), ("changed", changed)) if names]
                raise DamagedCheckpointError("files differ from its manifest: " + ", ".join(parts))
        record = self._read_record(step)
        if record.get("format", 1) >= FORMAT and not manifest_path.is_file():
            raise DamagedCheckpointError(f"its manifest {MANIFEST} is missing (the save did not finish, or it was deleted)")
        if record.get("step") != step:
            raise DamagedCheckpointError(f"its record names step {record.get('step')!r}")
        if not isinstance(record.get("digest"), str):
            raise DamagedCheckpointError("its record has no state digest")
        return record

    def _read_record(self, step: int) -> dict[str, Any]:
        try:
            record = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # a missing or undecodable record, in orbax's words
            raise DamagedCheckpointError(f"its record cannot be read: {_last_line(err)}") from None
        if not isinstance(record, dict):
            raise DamagedCheckpointError(f"its record is a {type(record).__name__}, not a JSON object")
        return dict(record)

    def read_metadata(self, step: int) -> dict[str, Any]:
        """The verified JSON record of the checkpoint at ``step`` (config, versions, digest).

        Raises:
          FileNotFoundError: no checkpoint at ``step``.
          DamagedCheckpointError: it fails verification (it is not moved).
        """
        if step not in self.all_steps():
            raise FileNotFoundError(f"step: no checkpoint at step {step} in {self.directory} (have {self.all_steps()})")
        return self.verify(step)

    def _saved_layout(self, step: int) -> tuple[set[str], dict[str, tuple[int, ...]]] | None:
        """The top-level fields saved at ``step`` and the name -> shape of every array, or
        None if the metadata is unreadable."""
        try:
            tree = self._manager.item_metadata(step)["state"].tree
            return set(tree), {leaf.name: tuple(leaf.shape) for leaf in jax.tree.leaves(tree)}
        except Exception:  # unreadable metadata is handled as a damaged checkpoint on restore
            return None

    def _check_layout(self, step: int, template: TrainState) -> None:
        """Raises ``CheckpointError`` if the fields or arrays (names or shapes) saved at
        ``step`` differ from the template's: another model, config or code version."""
        layout = self._saved_layout(step)
        if layout is None:
            return
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

    def _restore_state(self, step: int, template: TrainState, record: dict[str, Any]) -> TrainState:
        abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), template)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as err:  # any failure to load the arrays means the bytes are damaged
            raise DamagedCheckpointError(f"its state cannot be read: {_last_line(err)}") from None
        state = jax.device_get(restored["state"])
        if state_digest(state) != record["digest"]:
            raise DamagedCheckpointError("its state digest does not match its record")
        return state

    def restore_latest(
        self,
        template: TrainState,
        *,
        check_record: Callable[[dict[str, Any]], None] | None = None,
        from_scratch: bool = False,
    ) -> tuple[TrainState, dict[str, Any]] | None:
        """Restores the newest checkpoint that passes every check (see the module docstring).

        Args:
          template: a host-side state with the right structure, shapes and dtypes.
          check_record: called with each verified record before its state is loaded; an
            exception it raises (e.g. the run's config changed) propagates and the
            checkpoint stays where it is.
          from_scratch: when checkpoints were written but every one is damaged, return
            None (start again from step 0) instead of raising.

        Returns:
          ``(state, record)``, or None if the directory holds no checkpoint and none was
          ever set aside (or ``from_scratch``).

        Raises:
          CheckpointError: every checkpoint is damaged (they are in ``quarantine``), or
            the newest intact one has another layout.
        """
        for step in reversed(self.all_steps()):
            try:
                record = self.verify(step)
                if check_record is not None:
                    check_record(record)
                self._check_layout(step, template)
                state = self._restore_state(step, template, record)
                damage = None
            except DamagedCheckpointError as err:
                damage = err
            distributed.check_same_everywhere(
                {"step": step, "damaged": damage is not None},
                f"checkpoint {step} in {self.directory}",
                "they read different bytes; is --workdir on a filesystem every process shares?",
            )
            if damage is None:
                return state, record
            self._set_aside(step, damage)
        damaged = self.quarantined()
        if not damaged or from_scratch:
            return None
        raise CheckpointError(
            f"every checkpoint in {self.directory} is damaged; they were set aside in {self.quarantine} ({', '.join(damaged)}). "
            "Nothing was restored: pass from_scratch=True (genjax train --from-scratch) to train again from step 0"
        )

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.close()


@contextlib.contextmanager
def _leftover_callbacks_ignored() -> Iterator[None]:
    """Drops the "Event loop is closed" errors of a failed orbax write, passing on any other.

    When a write fails (a full disk, say), orbax closes its asyncio loop while tensorstore
    still completes the other writes; their callbacks then raise ``RuntimeError`` into
    ``sys.unraisablehook``, which prints one traceback each before genjax can report the
    one error that matters.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _last_line(err: BaseException) -> str:
    """The last non-empty line of an exception's message, with its type: orbax and
    tensorstore errors carry long multi-line contexts whose last line says what failed."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
