"""The one PRNG-key convention of a run: every random stream derives from ``config.seed``.

``jax.random.key(seed)`` is split once into the initialisation key and the training key
(``run_keys``); every other purpose gets its own stream ``fold_in(key(seed), SALT)``
(``stream``) with a named salt below, so that streams never overlap and adding one never
shifts another. Training draws per-step keys as ``fold_in(train_key, step)`` inside the
compiled step (``genjax.train.example_keys``). The salts' values are part of the results
already published: changing one changes a reported number.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

EVAL_DURING_TRAINING = 0xE7A0
"""The periodic evaluation while training (``train.eval_every``)."""
FINAL_EVAL = 0xE7A1
"""The evaluation, sample grid and figures written at the end of training and by ``genjax eval``."""
SAMPLES = 0x5A3
"""``genjax sample`` and the reports' sample grids."""
TOY_DATA = 0x70D2
"""Toy 2D training data, drawn fresh for each step as ``fold_in(stream(seed, TOY_DATA), step)``."""
CLASSIFIER_DISTANCE = 0xFD
"""Samples scored by a classifier Frechet distance in the reports."""
LATENT_SCALE = 0x5CA1
"""The posterior samples that estimate a latent diffusion model's scale factor."""
EVAL_BINARIZATION = 0xE7A1
"""The numpy seed ``[seed, EVAL_BINARIZATION]`` that binarises the evaluation split once."""

SALTS = {
    "eval_during_training": EVAL_DURING_TRAINING,
    "final_eval": FINAL_EVAL,
    "samples": SAMPLES,
    "toy_data": TOY_DATA,
    "classifier_distance": CLASSIFIER_DISTANCE,
    "latent_scale": LATENT_SCALE,
}
"""The salts of JAX key streams (``stream``); they must differ from each other."""
NUMPY_SALTS = {"eval_binarization": EVAL_BINARIZATION, "toy_data": TOY_DATA}
"""The salts of numpy generators (``numpy_rng``); they must differ from each other, and
may equal a JAX salt, since the two kinds of generator never share a stream."""


@dataclasses.dataclass(frozen=True)
class RunKeys:
    """The two keys split from a run's seed.

    Attributes:
      init: initialises the parameters.
      train: the base key of every training step.
    """

    init: jax.Array
    train: jax.Array


MAX_SEED = 2**32 - 1
"""The largest seed: ``jax.random.key`` keeps 32 bits of a seed when 64-bit types are off
(JAX's default), so 2**32 would silently give the same key as 0."""


def check_seed(seed: int) -> None:
    """Raises ValueError unless ``seed`` is an int in [0, ``MAX_SEED``]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed: expected an int in [0, 2**32 - 1] (JAX keys keep 32 bits of it), got {seed!r}")


def run_keys(seed: int) -> RunKeys:
    """The initialisation and training keys of a run: ``split(key(seed), 3)[:2]``."""
    check_seed(seed)
    init, train, _ = jax.random.split(jax.random.key(seed), 3)
    return RunKeys(init=init, train=train)


def stream(seed: int, salt: int) -> jax.Array:
    """The key ``fold_in(key(seed), salt)``: the stream of one purpose (a salt above)."""
    check_seed(seed)
    return jax.random.fold_in(jax.random.key(seed), salt)


def numpy_rng(seed: int, salt: int, *words: int) -> np.random.Generator:
    """A numpy generator seeded with ``[seed, salt, *words]``, for host-side randomness
    (``words`` such as the step give one generator per step of a stream)."""
    check_seed(seed)
    return np.random.default_rng([seed, salt, *words])


__all__ = [
    "CLASSIFIER_DISTANCE",
    "EVAL_BINARIZATION",
    "EVAL_DURING_TRAINING",
    "FINAL_EVAL",
    "MAX_SEED",
    "NUMPY_SALTS",
    "SALTS",
    "SAMPLES",
    "TOY_DATA",
    "RunKeys",
    "numpy_rng",
    "run_keys",
    "stream",
]
