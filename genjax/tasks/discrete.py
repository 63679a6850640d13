"""The discrete-latent families of Jang, Gu & Poole (arXiv:1611.01144), Table 1.

* ``model.family = "discrete_vae"``: the categorical or Bernoulli VAE (section 4.2);
  the test loss is the negative ELBO of the discrete model.
* ``model.family = "sbn"``: structured output prediction of the lower half of a digit
  from its upper half (section 4.1); the test loss is the ``eval.num_samples``-sample
  bound on -log p(x_lower | x_upper).

Both read the estimator and its temperature schedule from ``config.model``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import viz
from genjax.data import Batcher
from genjax.models import gumbel
from genjax.tasks.base import Params, Task, batched_mean, binarizer, check_common, eval_images, load_split


def estimator_config(m: ml_collections.ConfigDict) -> gumbel.EstimatorConfig:
    """The estimator and its schedule from ``config.model``."""
    try:
        return gumbel.EstimatorConfig(
            estimator=m.estimator,
            tau0=m.tau0,
            tau_min=m.tau_min,
            anneal_rate=m.anneal_rate,
            anneal_every=m.anneal_every,
            baseline_decay=m.baseline_decay,
        )
    except ValueError as err:
        # The library names its argument; the user set it as model.<name>.
        raise ValueError(f"model.{err}") from None


def _latent(m: ml_collections.ConfigDict) -> gumbel.DiscreteLatent:
    try:
        return gumbel.DiscreteLatent(kind=m.latent, num_vars=m.num_vars, num_classes=m.num_classes)
    except ValueError as err:
        raise ValueError(f"model.{err}") from None


def _check_eval(config: ml_collections.ConfigDict) -> None:
    check_common(config)
    ev = config.eval
    if ev.num_samples <= 0 or ev.quick_samples <= 0:
        raise ValueError(f"eval.num_samples, eval.quick_samples: expected positive ints, got {ev.num_samples}, {ev.quick_samples}")


def _image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    shape = tuple(config.data.image_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"data.image_shape: expected (height, width, channels) of positive ints, got {shape}")
    return shape  # type: ignore[return-value]


class _TestImages:
    """The evaluation split, loaded (and binarised with a fixed seed) on first use."""

    def __init__(self, config: ml_collections.ConfigDict) -> None:
        self._config = config
        self._images: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._images is None:
            self._images = eval_images(self._config)
        return self._images


def build_discrete_vae_task(config: ml_collections.ConfigDict) -> Task:
    """The categorical / Bernoulli VAE of section 4.2 trained with ``model.estimator``."""
    _check_eval(config)
    m = config.model
    shape = _image_shape(config)
    model = gumbel.DiscreteVAE(latent=_latent(m), data_dim=int(np.prod(shape)), hidden=tuple(m.hidden), activation=m.activation)
    est_config = estimator_config(m)
    train_images = load_split(config, config.data.train_split).images
    batcher = Batcher({"image": train_images}, config.train.batch_size, config.seed, transform=binarizer(config.data.binarize))
    test_images = _TestImages(config)
    ev = config.eval
    elbo_fns = {
        n: jax.jit(jax.vmap(lambda p, x, k, n=n: gumbel.discrete_elbo(model, p, x, k, n), in_axes=(None, 0, 0)))
        for n in {ev.num_samples, ev.quick_samples}
    }

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        n = ev.num_samples if full else ev.quick_samples
        images = test_images().reshape(-1, model.data_dim)
        elbo, se = batched_mean(lambda x, k: elbo_fns[n](params, x, k), images, key, ev.batch_size, f"eval elbo x{n}")
        return {"test_loss": -elbo, "test_loss_stderr": se, "eval_samples": n, "num_examples": int(images.shape[0])}

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return np.asarray(gumbel.vae_sample(model, params, key, num)).reshape((num,) + shape)

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        del key
        images = test_images()[:32]
        recon = np.asarray(gumbel.vae_reconstruct(model, params, jnp.asarray(images.reshape(len(images), -1)))).reshape(images.shape)
        pairs = np.stack([images, recon], axis=1).reshape((-1,) + shape)
        return [viz.save_image_grid(workdir / "reconstructions.png", pairs, ncols=16)]

    return Task(
        init_params=lambda key: model.init(key, jnp.zeros((model.data_dim,), jnp.float32)),
        loss_fn=gumbel.make_vae_loss(model, est_config),
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
        steps_per_epoch=batcher.steps_per_epoch,
        init_model_state=gumbel.init_model_state(est_config),
    )


def build_sbn_task(config: ml_collections.ConfigDict) -> Task:
    """The structured-output SBN of section 4.1 trained with ``model.estimator``."""
    _check_eval(config)
    m = config.model
    h, w, c = _image_shape(config)
    if c != 1 or h % 2:
        raise ValueError(f"data.image_shape: expected one channel and an even height, got {(h, w, c)}")
    half = h * w // 2
    model = gumbel.SBN(latent=_latent(m), num_layers=m.num_layers, in_dim=half, out_dim=half)
    est_config = estimator_config(m)
    train_images = load_split(config, config.data.train_split).images
    batcher = Batcher({"image": train_images}, config.train.batch_size, config.seed, transform=binarizer(config.data.binarize))
    test_images = _TestImages(config)
    ev = config.eval
    if ev.chunk <= 0:
        raise ValueError(f"eval.chunk: expected a positive int, got {ev.chunk}")
    for n in (ev.num_samples, ev.quick_samples):
        if n % min(n, ev.chunk):
            raise ValueError(f"eval.num_samples, eval.quick_samples: expected multiples of eval.chunk={ev.chunk}, got {n}")

    def nll_fn(n: int) -> Callable[..., jax.Array]:
        chunk = min(n, ev.chunk)
        return jax.jit(jax.vmap(lambda p, xu, xl, k: gumbel.sbn_test_nll(model, p, xu, xl, k, n, chunk), in_axes=(None, 0, 0, 0)))

    nll_fns = {n: nll_fn(n) for n in {ev.num_samples, ev.quick_samples}}

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        n = ev.num_samples if full else ev.quick_samples
        images = test_images()

        def stat(x: jax.Array, k: jax.Array) -> jax.Array:
            xu, xl = gumbel.split_halves(x)
            return nll_fns[n](params, xu, xl, k)

        nll, se = batched_mean(stat, images, key, ev.batch_size, f"eval nll m={n}")
        return {"test_loss": nll, "test_loss_stderr": se, "eval_samples": n, "num_examples": int(images.shape[0])}

    def complete(params: Params, key: jax.Array, images: np.ndarray) -> np.ndarray:
        upper, _ = gumbel.split_halves(jnp.asarray(images))
        lower = gumbel.sbn_complete(model, params, upper, key)
        return np.asarray(jnp.concatenate([upper, lower], axis=1)).reshape(images.shape)

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return complete(params, key, test_images()[:num])

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        images = test_images()[:16]
        rows = [images] + [complete(params, jax.random.fold_in(key, i), images) for i in range(3)]
        return [viz.save_image_grid(workdir / "completions.png", np.concatenate(rows), ncols=16)]

    return Task(
        init_params=lambda key: model.init(key, jnp.zeros((half,), jnp.float32)),
        loss_fn=gumbel.make_sbn_loss(model, est_config, m.train_samples),
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
        steps_per_epoch=batcher.steps_per_epoch,
        init_model_state=gumbel.init_model_state(est_config),
    )
