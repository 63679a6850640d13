"""The ``Experiment`` every family builder returns, and the config helpers they share."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from genjax.data import ArrayDataset, Batcher, SourceBatcher, binarize, load_dataset, map_batches
from genjax.data.batching import Transform
from genjax.data.datasets import get_spec, open_tfds_source, read_records, tfds_split
from genjax.keys import EVAL_BINARIZATION, check_seed, numpy_rng
from genjax.train.optim import make_optimizer
from genjax.train.state import TrainState, create_train_state
from genjax.train.step import LossFn, LossUpdate, Update
from genjax.types import Batch, Params


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A model family built from a config: its model and its pure pieces, by name.

    ``genjax.experiment.train`` runs any ``Experiment`` with the one generic loop; a
    script that studies a trained model reads the fields it needs (``model``,
    ``update.loss_fn``, ``sample``, ...) instead of rebuilding them.

    Attributes:
      config: the resolved config it was built from.
      model: the family's networks and process as the family documents them (a Flax
        module, or a frozen dataclass of modules and hyperparameters).
      init: ``init(key) -> params``, pure.
      update: what one training step does (``LossUpdate`` or ``MultiPlayerUpdate``),
        its optimiser(s) included.
      batches: ``batches(step) -> numpy batch``, a pure function of the step.
      evaluate: ``evaluate(params, key, full) -> metrics``; ``full`` selects the
        expensive evaluation (e.g. importance-sampled log-likelihood) over the cheap one
        used during training.
      sample: ``sample(params, key, num) -> samples`` as numpy: images in [0, 1], NHWC;
        2D toy data as points ``[num, 2]``; binary sequences as ``[num, 1, length, 1]``
        images.
      figures: ``figures(params, key, workdir) -> paths`` of the extra plots written.
      init_model_state: the initial ``model_state`` of a stateful loss, or None.
      eval_params: ``eval_params(state) -> params`` for ``evaluate``, ``sample`` and
        ``figures`` when they need more than the trained parameters (e.g. DCN's
        centroids, kept in ``model_state``); None: the EMA copy, else ``params``.
      stop: ``stop(state) -> bool``, True once training has converged before
        ``train.num_steps`` (e.g. DEC's assignment-change criterion); None: never.
    """

    config: ml_collections.ConfigDict
    model: Any
    init: Callable[[jax.Array], Params]
    update: Update
    batches: Callable[[int], Batch]
    evaluate: Callable[[Params, jax.Array, bool], dict[str, float]]
    sample: Callable[[Params, jax.Array, int], np.ndarray]
    figures: Callable[[Params, jax.Array, pathlib.Path], list[pathlib.Path]]
    init_model_state: Any = None
    eval_params: Callable[[TrainState], Params] | None = None
    stop: Callable[[TrainState], bool] | None = None

    def init_state(self, key: jax.Array) -> TrainState:
        """The initial training state: ``init(key)``, a fresh optimiser state, the EMA
        copy when the update keeps one and the loss's initial model state."""
        ema = isinstance(self.update, LossUpdate) and self.update.ema_decay is not None
        return create_train_state(self.init(key), self.update.optimizer, ema=ema, model_state=self.init_model_state)


def optimizer_from_config(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimiser of the config's ``train`` fields (see ``make_optimizer``)."""
    t = config.train
    return make_optimizer(
        t.optimizer,
        learning_rate=t.learning_rate,
        schedule=t.schedule,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=t.warmup_steps,
        decay_steps=t.decay_steps,
        grad_clip=t.grad_clip or None,
        b1=t.b1,
        b2=t.b2,
        eps=t.eps,
    )


def loss_update(config: ml_collections.ConfigDict, loss_fn: LossFn, *, steps_per_epoch: int, stateful: bool = False) -> LossUpdate:
    """The ``LossUpdate`` of a single-loss family: its loss, the config's optimiser and EMA."""
    return LossUpdate(
        loss_fn,
        optimizer_from_config(config, steps_per_epoch),
        stateful=stateful,
        ema_decay=config.train.ema_decay or None,
    )


def local_slice(global_batch: np.ndarray) -> np.ndarray:
    """This process's contiguous share of a global batch that every process computed alike
    (generated toy data): process ``i`` of ``n`` keeps rows ``[i B / n, (i + 1) B / n)``."""
    local = global_batch.shape[0] // jax.process_count()
    return global_batch[jax.process_index() * local : (jax.process_index() + 1) * local]


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """``data.image_shape`` checked to be (height, width, channels) of positive ints."""
    shape = tuple(config.data.image_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"data.image_shape: expected (height, width, channels) of positive ints, got {shape}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def synthetic_images(num: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Generated stand-in images in [0, 1]: noisy copies of 10 smooth random prototypes.

    Used by the tiny presets and the tests, which must not need a download. The data has
    structure (10 clusters) so that a model's loss falls as it trains.
    """
    return synthetic_dataset(num, shape, seed).images


def synthetic_dataset(num: int, shape: tuple[int, int, int], seed: int, prototype_seed: int | None = None) -> ArrayDataset:
    """``synthetic_images`` with their labels: the index of each image's prototype.

    With ``prototype_seed`` the 10 prototypes come from that seed and only the labels and
    noise from ``seed``, so that several splits share one set of clusters.
    """
    rng = np.random.default_rng(seed)
    h, w, c = shape
    coarse = (rng if prototype_seed is None else np.random.default_rng(prototype_seed)).random((10, -(-h // 4), -(-w // 4), c))
    protos = np.clip(np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :h, :w, :] * 1.4 - 0.2, 0.0, 1.0)
    labels = rng.integers(0, 10, num)
    noise = rng.normal(0.0, 0.1, (num, h, w, c))
    return ArrayDataset(images=np.clip(protos[labels] + noise, 0.0, 1.0).astype(np.float32), labels=labels.astype(np.int32))


def load_split(config: ml_collections.ConfigDict, split: str) -> ArrayDataset:
    """Loads a split named in the config; ``"train+valid"`` (any ``+``-joined names)
    concatenates the splits in order.

    ``data.source = "synthetic"`` serves ``synthetic_images`` (train 2000 / valid and test
    500 examples) so that tiny presets run without any download; ``"synthetic_clusters"``
    is the same with one set of 10 prototypes shared by every split (for clustering).
    """
    data = config.data
    if "+" in split:
        parts = [load_split(config, s) for s in split.split("+")]
        labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
        return ArrayDataset(images=np.concatenate([p.images for p in parts]), labels=labels)
    if data.source in ("synthetic", "synthetic_clusters"):
        sizes = {"train": 2000, "valid": 500, "test": 500}
        if split not in sizes:
            raise ValueError(f"split: expected one of {sorted(sizes)} for synthetic data, got {split!r}")
        seed = {"train": 0, "valid": 1, "test": 2}[split] + 1000 * config.seed
        shared = 1000 * config.seed + 7 if data.source == "synthetic_clusters" else None
        return synthetic_dataset(sizes[split], tuple(data.image_shape), seed, prototype_seed=shared)
    return load_dataset(data.name, split, source=data.source, data_dir=data.data_dir or None)


def train_batcher(
    config: ml_collections.ConfigDict,
    *,
    transform: Transform | None = None,
    prepare: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    batch_size: int | None = None,
    labels: bool = False,
) -> Batcher | SourceBatcher:
    """The training batches of a config, ``{"image": ...}`` per step, for this process.

    A tfds dataset (``data.source = "tfds"``) is streamed: each process reads only the
    records of its own rows of every batch from the array_record data source
    (``SourceBatcher``). Other sources, and ``+``-joined splits, are held in memory
    (``Batcher``).

    Args:
      config: the run's config (``data.*``, ``seed``, ``train.batch_size``).
      transform: the random augmentation (binarisation, flips).
      prepare: a deterministic map of the decoded images (e.g. to the model's scale).
      batch_size: the global batch, default ``train.batch_size``.
      labels: also give ``"label"`` (int32) per example.

    Raises:
      ValueError: ``labels`` for a dataset without labels, naming ``model.num_classes``.
    """
    data = config.data
    size = config.train.batch_size if batch_size is None else batch_size
    finish = prepare or (lambda batch: batch)
    fields = ("image", "label") if labels else ("image",)
    if data.source == "tfds" and "+" not in data.train_split:
        spec = get_spec(data.name)
        if labels and spec.num_classes is None:
            raise ValueError(f"model.num_classes: the dataset {data.name!r} has no labels to condition on")
        source = open_tfds_source(data.name, tfds_split(data.name, data.train_split), data_dir=data.data_dir or None)

        def read(records: Any) -> dict[str, np.ndarray]:
            decoded = read_records(spec, records)
            return finish({k: decoded[k] for k in fields})

        return SourceBatcher(source, read, size, config.seed, transform=transform)
    split = load_split(config, data.train_split)
    arrays = {"image": split.images}
    if labels:
        if split.labels is None:
            raise ValueError(f"model.num_classes: the dataset {data.name!r} has no labels to condition on")
        arrays["label"] = split.labels
    return Batcher(finish(arrays), size, config.seed, transform=transform)


def binarizer(mode: str) -> Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]] | None:
    """The batch transform of ``data.binarize``: dynamic binarisation, or None."""
    if mode == "dynamic":
        return lambda batch, rng: {**batch, "image": binarize(batch["image"], rng)}
    if mode == "none":
        return None
    raise ValueError(f"data.binarize: expected 'dynamic' or 'none', got {mode!r}")


def eval_images(config: ml_collections.ConfigDict) -> np.ndarray:
    """The evaluation split, binarised once with a fixed seed when the data is binarised."""
    images = load_split(config, config.eval.split).images
    if config.eval.num_examples:
        images = images[: config.eval.num_examples]
    if config.data.binarize == "dynamic":
        images = binarize(images, numpy_rng(config.seed, EVAL_BINARIZATION))
    return images


def batched_mean(fn: Callable[[jax.Array, jax.Array], jax.Array], images: np.ndarray, key: jax.Array, batch_size: int, desc: str) -> tuple[float, float]:
    """Mean and standard error of a per-example statistic ``fn(images, keys)`` over ``images``."""
    vals = map_batches(fn, images, batch_size=batch_size, key=key, desc=desc).astype(np.float64)
    return float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0


def check_common(config: ml_collections.ConfigDict) -> None:
    """Validates the config fields every family reads: seed and the ``eval`` sizes."""
    check_seed(config.seed)
    if config.eval.batch_size <= 0:
        raise ValueError(f"eval.batch_size: expected a positive int, got {config.eval.batch_size}")
    if config.eval.num_examples < 0:
        raise ValueError(f"eval.num_examples: expected 0 (all) or a positive int, got {config.eval.num_examples}")
    if config.eval.num_grid <= 0:
        raise ValueError(f"eval.num_grid: expected a positive int, got {config.eval.num_grid}")
