"""Deterministic, resumable, multi-host batching of in-memory numpy arrays.

A :class:`Batcher` maps a step number to a batch with no hidden state: the example
order of epoch ``e`` is the permutation drawn from ``np.random.default_rng([seed, e])``
and step ``s`` takes the ``s % steps_per_epoch``-th block of it. Resuming a run at step
``k`` therefore needs only ``k``, and every process computes the same global batch and
keeps its own contiguous slice, so the data a model sees does not depend on how many
processes share it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

Transform = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]

TRANSFORM_SALT = 0x5EED
"""Third seed word of the per-step transform generator, keeping it apart from the
permutation generator ``default_rng([seed, epoch])``."""


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> int:
    """Returns the shared leading size of ``arrays``, raising ValueError otherwise."""
    if not arrays:
        raise ValueError("arrays: expected a non-empty mapping of name to array, got an empty one")
    sizes = {}
    for name, array in arrays.items():
        if np.ndim(array) < 1:
            raise ValueError(f"arrays: expected arrays with a leading example axis, but {name!r} has shape {np.shape(array)}")
        sizes[name] = np.shape(array)[0]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays: expected one shared leading size, got sizes {sizes}")
    num = next(iter(sizes.values()))
    if num == 0:
        raise ValueError(f"arrays: expected at least one example, got leading sizes {sizes}")
    return int(num)


def _check_processes(process_index: int, process_count: int) -> None:
    if not _is_int(process_count) or process_count < 1:
        raise ValueError(f"process_count: expected a positive int, got {process_count!r}")
    if not _is_int(process_index) or not 0 <= process_index < process_count:
        raise ValueError(f"process_index: expected an int in [0, {process_count}), got {process_index!r}")


def _check_batch_size(batch_size: int, num: int, process_count: int) -> None:
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if batch_size > num:
        raise ValueError(f"batch_size: expected at most the number of examples ({num}), got {batch_size}")
    if batch_size % process_count:
        raise ValueError(f"batch_size: expected a multiple of process_count={process_count}, got {batch_size}")


def _check_transformed(batch: Mapping[str, np.ndarray], rows: int, what: str = "transform") -> dict[str, np.ndarray]:
    """Checks that a transform (or a source's ``read``) returned ``rows`` rows."""
    sizes = {name: np.shape(array)[0] if np.ndim(array) else None for name, array in batch.items()}
    if any(size != rows for size in sizes.values()):
        raise ValueError(f"{what}: expected it to return arrays with {rows} rows, got leading sizes {sizes}")
    return dict(batch)


class _StepBatches:
    """The example order shared by ``Batcher`` and ``SourceBatcher``: the validated
    arguments, the per-epoch permutation and the global and local indices of a step, all
    pure functions of ``(seed, step)``. Subclasses implement ``batch(step)``."""

    def __init__(
        self,
        num: int,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool,
        transform: Transform | None,
        process_index: int | None,
        process_count: int | None,
    ) -> None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
        _check_processes(process_index, process_count)
        _check_batch_size(batch_size, num, process_count)
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.transform = transform
        self.process_index = int(process_index)
        self.process_count = int(process_count)
        self._batch_size = int(batch_size)
        self._num = num

    @property
    def num_examples(self) -> int:
        """N, the number of examples."""
        return self._num

    @property
    def global_batch_size(self) -> int:
        """Rows of each batch summed over all processes."""
        return self._batch_size

    @property
    def local_batch_size(self) -> int:
        """Rows of each batch this process returns."""
        return self._batch_size // self.process_count

    @property
    def steps_per_epoch(self) -> int:
        """``N // global_batch_size``: full batches per pass over the data."""
        return self._num // self._batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Returns the example order of an epoch.

        Args:
            epoch: A non-negative epoch number.

        Returns:
            int64 ``[N]``: a permutation from ``default_rng([seed, epoch])``, or
            ``arange(N)`` when ``shuffle`` is False.
        """
        if not self.shuffle:
            return np.arange(self._num)
        return np.random.default_rng([self.seed, epoch]).permutation(self._num)

    def global_indices(self, step: int) -> np.ndarray:
        """Returns the example indices of the global batch at ``step``: block ``step %
        steps_per_epoch`` of the order of epoch ``step // steps_per_epoch``.

        Args:
            step: A non-negative step number.

        Returns:
            int64 ``[global_batch_size]`` indices into the examples.

        Raises:
            ValueError: If ``step`` is not a non-negative int.
        """
        if not _is_int(step) or step < 0:
            raise ValueError(f"step: expected a non-negative int, got {step!r}")
        epoch, position = divmod(int(step), self.steps_per_epoch)
        start = position * self._batch_size
        return self.epoch_order(epoch)[start : start + self._batch_size]

    def local_indices(self, step: int) -> np.ndarray:
        """The example indices of this process's rows of the batch at ``step``."""
        local = self.local_batch_size
        start = self.process_index * local
        return self.global_indices(step)[start : start + local]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(start_step), batch(start_step + 1), ...`` without end.

        Args:
            start_step: The step to resume from.

        Yields:
            The batches of consecutive steps.
        """
        step = start_step
        while True:
            yield self.batch(step)
            step += 1


class Batcher(_StepBatches):
    """Deterministic batches of a dict of arrays, as a pure function of the step.

    Example::

        batcher = Batcher({"image": x, "label": y}, batch_size=128, seed=0)
        for step in range(start_step, num_steps):
            batch = batcher.batch(step)

    Attributes:
        arrays: The read-only mapping of name to array (all share leading size N).
        seed: Seed of the shuffles and of the transform's generators.
        shuffle: Whether each epoch is permuted (otherwise examples come in order).
        transform: Optional ``transform(global_batch, rng)`` applied to each global
            batch before it is sliced for this process.
        process_index: Which slice of each global batch this process gets.
        process_count: How many processes share each global batch.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        transform: Transform | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
    ) -> None:
        """Validates the arguments.

        Args:
            arrays: Name to array; every array has the same leading size N.
            batch_size: The global batch size (summed over processes); a positive
                int, at most N, divisible by ``process_count``. The last
                ``N % batch_size`` examples of each epoch's order are dropped.
            seed: A non-negative int.
            shuffle: Permute the examples anew each epoch.
            transform: Optional per-batch augmentation, e.g. dynamic binarisation;
                it gets the global batch and ``np.random.default_rng([seed, step,
                0x5EED])``, and must return a dict of arrays with batch_size rows.
            process_index: Defaults to ``jax.process_index()``.
            process_count: Defaults to ``jax.process_count()``.

        Raises:
            ValueError: Naming the argument, what was expected and what was given.
        """
        num = _check_arrays(arrays)
        super().__init__(num, batch_size, seed, shuffle=shuffle, transform=transform, process_index=process_index, process_count=process_count)
        self.arrays: Mapping[str, np.ndarray] = types.MappingProxyType({name: np.asarray(array) for name, array in arrays.items()})

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Returns this process's part of the batch at ``step``.

        A pure function of ``(seed, step)`` and the constructor arguments.

        Args:
            step: A non-negative step number; steps past the first epoch continue
                with the next epoch's order.

        Returns:
            Name to array with ``local_batch_size`` rows: rows
            ``[process_index * local, (process_index + 1) * local)`` of the global
            batch, after ``transform``.

        Raises:
            ValueError: If ``step`` is not a non-negative int.
        """
        indices = self.global_indices(step)
        batch = {name: array[indices] for name, array in self.arrays.items()}
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, int(step), TRANSFORM_SALT])
            batch = _check_transformed(self.transform(batch, rng), self._batch_size)
        local = self.local_batch_size
        start = self.process_index * local
        return {name: array[start : start + local] for name, array in batch.items()}


Reader = Callable[[Sequence[Any]], dict[str, np.ndarray]]
"""Turns a list of records of a source into a dict of arrays with one row per record."""


class SourceBatcher(_StepBatches):
    """Deterministic batches read from a random-access source, each process reading only
    its own rows.

    The per-process data pipeline of multi-host runs on datasets too large to hold in
    every process (a tfds array_record data source, ``tfds.data_source``): the global
    batch at ``step`` has the example indices of :class:`Batcher` (same seed, same
    permutation), and process ``i`` of ``n`` reads only the records of rows ``[i B / n,
    (i + 1) B / n)`` of it. The batch is a pure function of ``(step, process)``, so a
    resumed run needs no iterator state: the step in its checkpoint is the data position.

    Unlike :class:`Batcher`, whose transform sees the whole global batch, the transform
    here runs on each example alone with its own generator ``default_rng([seed, step,
    0x5EED, row])`` (``row`` its position in the global batch): a process can then apply
    it to its own rows, and the data a model sees does not depend on the process count.

    Attributes:
        source: The records: ``len(source)`` and ``source[i]`` (or ``__getitems__``).
        read: Turns a list of records into arrays, e.g. decoding and scaling images.
        seed, shuffle, transform, process_index, process_count: as for :class:`Batcher`.
    """

    def __init__(
        self,
        source: Sequence[Any],
        read: Reader,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        transform: Transform | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
    ) -> None:
        """Validates the arguments (see :class:`Batcher`; ``batch_size`` is global).

        Raises:
            ValueError: Naming the argument, what was expected and what was given.
        """
        if len(source) == 0:
            raise ValueError("source: expected at least one record, got an empty source")
        super().__init__(len(source), batch_size, seed, shuffle=shuffle, transform=transform, process_index=process_index, process_count=process_count)
        self.source = source
        self.read = read

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Reads and returns this process's rows of the batch at ``step``.

        Raises:
            ValueError: If ``step`` is not a non-negative int, or ``read`` or the transform
                returns arrays of another number of rows.
        """
        keys = [int(i) for i in self.local_indices(step)]
        records = self.source.__getitems__(keys) if hasattr(self.source, "__getitems__") else [self.source[k] for k in keys]
        batch = _check_transformed(self.read(records), len(keys), "read")
        if self.transform is None:
            return batch
        first_row = self.process_index * self.local_batch_size
        rows = []
        for r in range(len(keys)):
            rng = np.random.default_rng([self.seed, int(step), TRANSFORM_SALT, first_row + r])
            rows.append(_check_transformed(self.transform({k: v[r : r + 1] for k, v in batch.items()}, rng), 1))
        return {k: np.concatenate([row[k] for row in rows]) for k in batch}


def map_batches(
    fn: Callable[..., Any],
    *arrays: np.ndarray,
    batch_size: int,
    key: jax.Array | None = None,
    num: int | None = None,
    desc: str | None = None,
) -> Any:
    """Applies a (jitted) function chunk by chunk and concatenates its outputs on the host.

    The one batched evaluation loop of genjax. Chunk ``[start, start + n)`` is passed as
    ``fn(*chunks)``, followed, when ``key`` is given, by one key per example,
    ``split(fold_in(key, start), n)``: the keys of an example depend on its index and on
    ``batch_size`` only through that index's chunk start, so they are fixed for a fixed
    ``batch_size``.

    Args:
      fn: ``fn(*chunks[, keys]) -> pytree`` of arrays with a leading example axis.
      *arrays: host arrays sharing their leading (example) axis.
      batch_size: examples per call (the last chunk may be smaller).
      key: the base key of the per-example keys, or None for none.
      num: the number of examples when no arrays are given (e.g. samples to draw).
      desc: a progress-bar label; None shows no bar.

    Returns:
      The outputs of ``fn`` concatenated along their leading axis, as numpy.

    Raises:
      ValueError: ``batch_size`` is not positive, the arrays disagree in length, or
        neither arrays nor ``num`` say how many examples there are.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if arrays:
        lengths = {a.shape[0] for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"arrays: expected a common leading axis, got lengths {sorted(lengths)}")
        total = lengths.pop()
    elif num is None or num < 0:
        raise ValueError(f"num: expected a non-negative int when no arrays are given, got {num!r}")
    else:
        total = num
    outputs = []
    for start in tqdm(range(0, total, batch_size), desc=desc, disable=True if desc is None else None, leave=False):
        size = min(batch_size, total - start)
        args = [jnp.asarray(a[start : start + size]) for a in arrays]
        if key is not None:
            args.append(jax.random.split(jax.random.fold_in(key, start), size))
        outputs.append(jax.device_get(fn(*args)))
    if not outputs:
        raise ValueError("arrays/num: expected at least one example, got none")
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outputs)
