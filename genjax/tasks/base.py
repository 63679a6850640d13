"""The ``Task`` contract and the config helpers every family's builder shares."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from genjax.data import ArrayDataset, binarize, load_dataset
from genjax.train.step import Batch, LossFn, UpdateBuilder

Params = Any


@dataclasses.dataclass(frozen=True)
class Task:
    """What a model family gives the generic loop and the CLI.

    Attributes:
      init_params: ``init_params(key) -> params``.
      loss_fn: ``loss(params, batch, keys) -> (loss, metrics)``, or the stateful form
        ``loss(params, batch, keys, *, step, model_state) -> (loss, (metrics,
        model_state))`` together with ``init_model_state`` (see
        ``genjax.train.make_update``).
      batches: ``batches(step) -> numpy batch``, a pure function of the step.
      evaluate: ``evaluate(params, key, full) -> metrics``; ``full`` selects the
        expensive evaluation (e.g. importance-sampled log-likelihood) over the cheap one
        used during training.
      sample: ``sample(params, key, num) -> images [num, H, W, C]`` in [0, 1].
      figures: ``figures(params, key, workdir) -> paths`` of extra plots written.
      steps_per_epoch: optimiser steps per pass over the training set.
      init_model_state: the initial ``model_state`` of a stateful loss (see
        ``genjax.train.make_update``), or None when ``loss_fn`` is a plain loss.
      optimizer: for a family with its own update, the optimiser(s) its state is built
        with (a mapping for several players); None to use the config's ``train`` fields.
      update: for a family whose step is not one gradient step on one loss (a GAN's
        critic and generator updates), the update builder given to
        ``build_train_step(update=...)``; ``loss_fn`` is then None.
    """

    init_params: Callable[[jax.Array], Params]
    loss_fn: LossFn | None
    batches: Callable[[int], Batch]
    evaluate: Callable[[Params, jax.Array, bool], dict[str, float]]
    sample: Callable[[Params, jax.Array, int], np.ndarray]
    figures: Callable[[Params, jax.Array, pathlib.Path], list[pathlib.Path]]
    steps_per_epoch: int
    init_model_state: Any = None
    optimizer: Any = None
    update: UpdateBuilder | None = None


def synthetic_images(num: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Generated stand-in images in [0, 1]: noisy copies of 10 smooth random prototypes.

    Used by the tiny presets and the tests, which must not need a download. The data has
    structure (10 clusters) so that a model's loss falls as it trains.
    """
    rng = np.random.default_rng(seed)
    h, w, c = shape
    coarse = rng.random((10, max(h // 4, 1), max(w // 4, 1), c))
    protos = np.clip(np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :h, :w, :] * 1.4 - 0.2, 0.0, 1.0)
    labels = rng.integers(0, 10, num)
    noise = rng.normal(0.0, 0.1, (num, h, w, c))
    return np.clip(protos[labels] + noise, 0.0, 1.0).astype(np.float32)


def load_split(config: ml_collections.ConfigDict, split: str) -> ArrayDataset:
    """Loads a split named in the config; ``"train+valid"`` concatenates two splits.

    ``data.source = "synthetic"`` serves ``synthetic_images`` (train 2000 / valid and test
    500 examples) so that tiny presets run without any download.
    """
    data = config.data
    if data.source == "synthetic":
        sizes = {"train": 2000, "valid": 500, "test": 500}
        if split not in sizes:
            raise ValueError(f"split: expected one of {sorted(sizes)} for synthetic data, got {split!r}")
        seed = {"train": 0, "valid": 1, "test": 2}[split] + 1000 * config.seed
        return ArrayDataset(images=synthetic_images(sizes[split], tuple(data.image_shape), seed), labels=None)
    if split == "train+valid":
        parts = [load_split(config, s) for s in ("train", "valid")]
        labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
        return ArrayDataset(images=np.concatenate([p.images for p in parts]), labels=labels)
    return load_dataset(data.name, split, source=data.source, data_dir=data.data_dir or None)


def binarizer(mode: str) -> Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]] | None:
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
        images = binarize(images, np.random.default_rng([config.seed, 0xE7A1]))
    return images


def batched_mean(fn: Callable[[jax.Array, jax.Array], jax.Array], images: np.ndarray, key: jax.Array, batch_size: int, desc: str) -> tuple[float, float]:
    """Mean and standard error of a per-example jitted statistic over ``images``."""
    values = []
    n = images.shape[0]
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=None, leave=False):
        chunk = images[start : start + batch_size]
        keys = jax.random.split(jax.random.fold_in(key, start), chunk.shape[0])
        values.append(np.asarray(fn(jnp.asarray(chunk), keys)))
    vals = np.concatenate(values).astype(np.float64)
    return float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0


def check_common(config: ml_collections.ConfigDict) -> None:
    """Validates the config fields every family reads: seed and eval batch size."""
    if config.seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {config.seed}")
    if config.eval.batch_size <= 0:
        raise ValueError(f"eval.batch_size: expected a positive int, got {config.eval.batch_size}")
