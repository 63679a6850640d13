"""From a config to library calls: the one place (with ``cli``) that reads configs.

A ``Task`` bundles what the generic training loop and the CLI need from a model family:
initial parameters, the loss, the batches, an evaluation, samples and figures. Families
register a builder in ``TASK_BUILDERS`` keyed by ``config.model.family``.
"""

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

from genjax import viz
from genjax.data import ArrayDataset, Batcher, binarize, load_dataset
from genjax.models import vae as vae_lib
from genjax.train.step import Batch, LossFn

Params = Any


@dataclasses.dataclass(frozen=True)
class Task:
    """What a model family gives the generic loop and the CLI.

    Attributes:
      init_params: ``init_params(key) -> params``.
      loss_fn: ``loss(params, batch, keys) -> (loss, metrics)``.
      batches: ``batches(step) -> numpy batch``, a pure function of the step.
      evaluate: ``evaluate(params, key, full) -> metrics``; ``full`` selects the
        expensive evaluation (e.g. importance-sampled log-likelihood) over the cheap one
        used during training.
      sample: ``sample(params, key, num) -> images [num, H, W, C]`` in [0, 1].
      figures: ``figures(params, key, workdir) -> paths`` of extra plots written.
      steps_per_epoch: optimiser steps per pass over the training set.
    """

    init_params: Callable[[jax.Array], Params]
    loss_fn: LossFn
    batches: Callable[[int], Batch]
    evaluate: Callable[[Params, jax.Array, bool], dict[str, float]]
    sample: Callable[[Params, jax.Array, int], np.ndarray]
    figures: Callable[[Params, jax.Array, pathlib.Path], list[pathlib.Path]]
    steps_per_epoch: int


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


def _binarizer(mode: str) -> Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]] | None:
    if mode == "dynamic":
        return lambda batch, rng: {**batch, "image": binarize(batch["image"], rng)}
    if mode == "none":
        return None
    raise ValueError(f"data.binarize: expected 'dynamic' or 'none', got {mode!r}")


def _eval_images(config: ml_collections.ConfigDict) -> np.ndarray:
    """The evaluation split, binarised once with a fixed seed when the data is binarised."""
    images = load_split(config, config.eval.split).images
    if config.eval.num_examples:
        images = images[: config.eval.num_examples]
    if config.data.binarize == "dynamic":
        images = binarize(images, np.random.default_rng([config.seed, 0xE7A1]))
    return images


def _batched_mean(fn: Callable[[jax.Array, jax.Array], jax.Array], images: np.ndarray, key: jax.Array, batch_size: int, desc: str) -> tuple[float, float]:
    """Mean and standard error of a per-example jitted statistic over ``images``."""
    values = []
    n = images.shape[0]
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=None, leave=False):
        chunk = images[start : start + batch_size]
        keys = jax.random.split(jax.random.fold_in(key, start), chunk.shape[0])
        values.append(np.asarray(fn(jnp.asarray(chunk), keys)))
    vals = np.concatenate(values).astype(np.float64)
    return float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0


def build_vae_task(config: ml_collections.ConfigDict) -> Task:
    """The VAE family (``model.family = "vae"``); see ``genjax.models.vae``."""
    m = config.model
    image_shape = tuple(config.data.image_shape)
    if len(image_shape) != 3 or min(image_shape) <= 0:
        raise ValueError(f"data.image_shape: expected (height, width, channels) of positive ints, got {image_shape}")
    if config.seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {config.seed}")
    ev = config.eval
    if ev.batch_size <= 0:
        raise ValueError(f"eval.batch_size: expected a positive int, got {ev.batch_size}")
    if ev.is_samples < 0 or (ev.is_samples and (ev.is_chunk <= 0 or ev.is_samples % ev.is_chunk)):
        raise ValueError(f"eval.is_samples: expected 0 or a positive multiple of eval.is_chunk={ev.is_chunk}, got {ev.is_samples}")
    model = vae_lib.VAE(
        latent_dim=m.latent_dim,
        data_shape=image_shape,
        hidden=tuple(m.hidden),
        architecture=m.architecture,
        likelihood=m.likelihood,
        activation=m.activation,
    )
    train_images = load_split(config, config.data.train_split).images
    batcher = Batcher({"image": train_images}, config.train.batch_size, config.seed, transform=_binarizer(config.data.binarize))
    eval_cache: dict[str, np.ndarray] = {}

    def eval_images() -> np.ndarray:
        if "images" not in eval_cache:
            eval_cache["images"] = _eval_images(config)
        return eval_cache["images"]

    elbo_fn = jax.jit(jax.vmap(lambda p, x, k: vae_lib.elbo(model, p, x, k, 1).elbo, in_axes=(None, 0, 0)))
    is_fn = jax.jit(
        jax.vmap(
            lambda p, x, k: vae_lib.log_marginal_likelihood(model, p, x, k, config.eval.is_samples, config.eval.is_chunk),
            in_axes=(None, 0, 0),
        )
    )

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        images = eval_images()
        bs = config.eval.batch_size
        split = config.eval.split
        elbo, elbo_se = _batched_mean(lambda x, k: elbo_fn(params, x, k), images, key, bs, "eval elbo")
        out = {f"{split}_elbo": elbo, f"{split}_elbo_stderr": elbo_se, "num_examples": int(images.shape[0])}
        if full and config.eval.is_samples:
            ll, ll_se = _batched_mean(lambda x, k: is_fn(params, x, k), images, jax.random.fold_in(key, 1), bs, f"eval IS k={config.eval.is_samples}")
            out.update({f"{split}_nll_is{config.eval.is_samples}": -ll, f"{split}_nll_stderr": ll_se, "is_samples": int(config.eval.is_samples)})
        return out

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return np.asarray(jax.jit(lambda p, k: vae_lib.sample(model, p, k, num))(params, key))

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        images = eval_images()[:32]
        recon = np.asarray(vae_lib.reconstruct(model, params, jnp.asarray(images)))
        pairs = np.stack([images, recon], axis=1).reshape((-1,) + images.shape[1:])
        paths = [viz.save_image_grid(workdir / "reconstructions.png", pairs, ncols=16)]
        if m.latent_dim == 2:
            manifold = np.asarray(vae_lib.latent_manifold(model, params, 20))
            paths.append(viz.save_image_grid(workdir / "manifold.png", manifold, ncols=20))
        return paths

    return Task(
        init_params=lambda key: model.init(key, jnp.zeros((1,) + image_shape, jnp.float32)),
        loss_fn=vae_lib.make_loss(model, num_samples=m.num_samples, iwae_samples=m.iwae_samples),
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
        steps_per_epoch=batcher.steps_per_epoch,
    )


TASK_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {"vae": build_vae_task}


def build_task(config: ml_collections.ConfigDict) -> Task:
    """Builds the task named by ``config.model.family``."""
    family = config.model.family
    if family not in TASK_BUILDERS:
        raise ValueError(f"model.family: expected one of {sorted(TASK_BUILDERS)}, got {family!r}")
    return TASK_BUILDERS[family](config)
