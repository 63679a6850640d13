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
from genjax.experiment.base import Experiment, batched_mean, binarizer, check_common, eval_images, image_shape, loss_update, train_batcher
from genjax.experiment.config import base_config
from genjax.models import gumbel
from genjax.types import Params


def _estimator_fields(c: ml_collections.ConfigDict) -> None:
    """The estimator and its temperature schedule (Jang et al. sec. 4: tau annealed from
    1 as ``max(tau_min, tau0 exp(-anneal_rate * step))`` every ``anneal_every`` steps)."""
    c.model.estimator = "gumbel_softmax"
    c.model.tau0 = 1.0
    c.model.tau_min = 0.5
    c.model.anneal_rate = 1e-4
    c.model.anneal_every = 1000
    c.model.baseline_decay = 0.9


def _schedule_fields(c: ml_collections.ConfigDict) -> None:
    c.train.num_steps = 20_000
    c.train.checkpoint_every = 5000
    c.train.keep_checkpoints = 2
    c.train.eval_every = 5000


def discrete_vae_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the fields of the discrete VAE (section 4.2) at its defaults:
    20 categorical variables of 10 classes, an MLP of (512, 256) ReLU units, the
    Gumbel-softmax estimator; ``eval.num_samples`` samples for the full test bound and
    ``eval.quick_samples`` during training."""
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "discrete_vae"
    c.model.latent = "categorical"
    c.model.num_vars = 20
    c.model.num_classes = 10
    c.model.hidden = (512, 256)
    c.model.activation = "relu"
    _estimator_fields(c)
    _schedule_fields(c)
    c.eval.batch_size = 500
    c.eval.num_samples = 10
    c.eval.quick_samples = 1
    return c


def sbn_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the fields of the structured-output SBN (section 4.1) at its
    defaults: 2 layers of 200 Bernoulli variables, one training sample, the Gumbel-softmax
    estimator; the test bound with ``eval.num_samples`` samples in chunks of ``eval.chunk``."""
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "sbn"
    c.model.latent = "bernoulli"
    c.model.num_vars = 200
    c.model.num_classes = 10
    c.model.num_layers = 2
    c.model.train_samples = 1
    _estimator_fields(c)
    _schedule_fields(c)
    c.eval.num_samples = 1000
    c.eval.quick_samples = 10
    c.eval.chunk = 100
    return c


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


class _TestImages:
    """The evaluation split, loaded (and binarised with a fixed seed) on first use."""

    def __init__(self, config: ml_collections.ConfigDict) -> None:
        self._config = config
        self._images: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._images is None:
            self._images = eval_images(self._config)
        return self._images


def build_discrete_vae(config: ml_collections.ConfigDict) -> Experiment:
    """The categorical / Bernoulli VAE of section 4.2 trained with ``model.estimator``.

    ``Experiment.model`` is the ``genjax.models.gumbel.DiscreteVAE`` module.
    """
    _check_eval(config)
    m = config.model
    shape = image_shape(config)
    model = gumbel.DiscreteVAE(latent=_latent(m), data_dim=int(np.prod(shape)), hidden=tuple(m.hidden), activation=m.activation)
    est_config = estimator_config(m)
    batcher = train_batcher(config, transform=binarizer(config.data.binarize))
    test_images = _TestImages(config)
    ev = config.eval
    elbo_fns = {
        n: jax.jit(jax.vmap(lambda p, x, k, n=n: gumbel.discrete_elbo(model, p, x, k, n), in_axes=(None, 0, 0))) for n in {ev.num_samples, ev.quick_samples}
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

    update = loss_update(config, gumbel.make_vae_loss(model, est_config), steps_per_epoch=batcher.steps_per_epoch, stateful=True)
    return Experiment(
        config=config,
        model=model,
        init=lambda key: model.init(key, jnp.zeros((model.data_dim,), jnp.float32)),
        update=update,
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
        init_model_state=gumbel.init_model_state(est_config),
    )


def build_sbn(config: ml_collections.ConfigDict) -> Experiment:
    """The structured-output SBN of section 4.1 trained with ``model.estimator``.

    ``Experiment.model`` is the ``genjax.models.gumbel.SBN`` module.
    """
    _check_eval(config)
    m = config.model
    h, w, c = image_shape(config)
    if c != 1 or h % 2:
        raise ValueError(f"data.image_shape: expected one channel and an even height, got {(h, w, c)}")
    half = h * w // 2
    model = gumbel.SBN(latent=_latent(m), num_layers=m.num_layers, in_dim=half, out_dim=half)
    est_config = estimator_config(m)
    batcher = train_batcher(config, transform=binarizer(config.data.binarize))
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

    loss = gumbel.make_sbn_loss(model, est_config, m.train_samples)
    update = loss_update(config, loss, steps_per_epoch=batcher.steps_per_epoch, stateful=True)
    return Experiment(
        config=config,
        model=model,
        init=lambda key: model.init(key, jnp.zeros((half,), jnp.float32)),
        update=update,
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
        init_model_state=gumbel.init_model_state(est_config),
    )
