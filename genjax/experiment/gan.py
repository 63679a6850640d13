"""The GAN family (``model.family = "gan"``): Goodfellow et al. (arXiv 1406.2661), WGAN
(arXiv 1701.07875) and WGAN-GP (arXiv 1704.00028) on images or toy 2D data.

Unlike the single-loss families, this family's update is a ``MultiPlayerUpdate`` that
carries one optimiser per player (``Experiment.update.optimizer``): one step is ``model.n_critic`` critic
updates and one generator update (``genjax.models.gan.make_gan_update``), compiled by
the same engine for ``jit`` or ``pmap``. Images are scaled to [-1, 1] for training and
returned in [0, 1] by ``sample``; toy data (``data.source = "toy"``) is drawn fresh for
every step from ``genjax.data.toy2d``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import viz
from genjax.data import Batcher, SourceBatcher, map_batches
from genjax.data.toy2d import TOY_2D, sample_toy2d, toy2d_mode_std, toy2d_modes
from genjax.experiment.base import Experiment, check_common, image_shape, load_split, local_slice, train_batcher
from genjax.experiment.config import base_config
from genjax.keys import TOY_DATA, stream
from genjax.metrics.parzen import parzen_log_likelihood
from genjax.metrics.toy2d import mode_metrics, sliced_wasserstein
from genjax.models import gan as gan_lib
from genjax.nn import gan_nets
from genjax.nn.module import array_apply
from genjax.train.optim import make_optimizer
from genjax.train.step import MultiPlayerUpdate
from genjax.types import Params

ARCHITECTURES = ("mlp", "dcgan", "resnet")
TOY_MIXTURES = ("eight_gaussians", "twentyfive_gaussians")


@dataclasses.dataclass(frozen=True)
class GANModel:
    """The networks and game of a GAN experiment (``Experiment.model``).

    Attributes:
      generator: ``generator.apply(params["generator"], z) -> x``.
      critic: ``critic.apply(params["critic"], x) -> scores``.
      objective: the game and its hyperparameters.
      latent_dim: dimension of the normal latent ``z``.
    """

    generator: nn.Module
    critic: nn.Module
    objective: gan_lib.GANObjective
    latent_dim: int


def default_config() -> ml_collections.ConfigDict:
    """``base_config()`` with the fields of the GAN family at WGAN-GP's defaults.

    Gulrajani et al., arXiv 1704.00028: Algorithm 1's lambda = 10, n_critic = 5 and Adam
    at 1e-4 with beta1 = 0 and beta2 = 0.9 for both players; section 4's layer norm in
    place of batch norm in the critic; a 128-dimensional normal latent and the
    DCGAN-style networks with 64 base channels, batch 50, on MNIST scaled to [-1, 1]
    (the sizes of the paper's MNIST code, whose WGAN-GP mode uses beta1 = 0.5 and no
    critic normalisation instead). Switching ``model.objective`` to the GAN of Goodfellow
    et al. (``"minimax"`` or ``"non_saturating"``) or to WGAN's weight clipping
    (``"wgan_clip"``) keeps these optimiser settings and n_critic: set them too, as the
    experiment presets do. ``eval`` adds the Parzen-window estimate (its number of
    generated samples, the sigma grid, empty for the default, and the validation split
    that picks sigma) and, for toy data, the number of samples of its metrics.
    """
    c = base_config()
    c.model = ml_collections.ConfigDict()
    c.model.family = "gan"
    c.model.objective = "wgan_gp"
    c.model.n_critic = 5
    c.model.gp_weight = 10.0
    c.model.clip_value = 0.01
    c.model.latent_dim = 128
    c.model.architecture = "dcgan"
    c.model.features = 64
    c.model.norm = "layer"
    c.model.generator_norm = "none"
    c.model.hidden = (512, 512, 512)
    c.model.critic_hidden = ()
    c.model.activation = "relu"
    c.model.critic_activation = "relu"
    c.model.maxout_pieces = 0

    c.data.binarize = "none"

    c.train.batch_size = 50
    c.train.learning_rate = 1e-4
    c.train.critic_learning_rate = 0.0
    c.train.b1 = 0.0
    c.train.b2 = 0.9
    c.train.num_steps = 200_000

    c.eval.num_examples = 0
    c.eval.valid_split = "valid"
    c.eval.parzen_samples = 10_000
    c.eval.parzen_sigmas = ()
    c.eval.toy_samples = 10_000
    c.eval.num_grid = 100
    return c


def build_networks(config: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """The generator and critic a GAN config describes (``model.architecture`` and sizes)."""
    m = config.model
    toy = config.data.source == "toy"
    if m.architecture not in ARCHITECTURES:
        raise ValueError(f"model.architecture: expected one of {ARCHITECTURES}, got {m.architecture!r}")
    if m.architecture == "mlp":
        generator = gan_nets.MLPGenerator(hidden=tuple(m.hidden), output_shape=data_shape, activation=m.activation, output="identity" if toy else "tanh")
        critic = gan_nets.MLPCritic(hidden=tuple(m.critic_hidden or m.hidden), activation=m.critic_activation, maxout_pieces=m.maxout_pieces)
        return generator, critic
    if toy:
        raise ValueError(f"model.architecture: toy 2D data needs 'mlp', got {m.architecture!r}")
    h, w, c = data_shape
    if m.architecture == "dcgan":
        return (
            gan_nets.DCGANGenerator(output_shape=(h, w, c), features=m.features, norm=m.generator_norm),
            gan_nets.DCGANCritic(features=m.features, norm=m.norm),
        )
    if m.norm != "none":
        raise ValueError(f"model.norm: the ResNet critic has no normalisation (as in WGAN-GP's CIFAR-10 model); expected 'none', got {m.norm!r}")
    return (
        gan_nets.ResNetGenerator(features=m.features, output_shape=(h, w, c), norm=m.generator_norm),
        gan_nets.ResNetCritic(features=m.features),
    )


def build_objective(config: ml_collections.ConfigDict) -> gan_lib.GANObjective:
    """The game of a GAN config (``model.objective``, ``n_critic``, ``gp_weight``, ``clip_value``)."""
    m = config.model
    return gan_lib.GANObjective(kind=m.objective, n_critic=m.n_critic, gp_weight=m.gp_weight, clip_value=m.clip_value)


def build_optimizers(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """One optax optimiser per player; the critic may have its own learning rate.

    A schedule's ``train.decay_steps`` counts generator steps. The critic's optimiser
    counts its own ``n_critic`` updates per generator step, so its decay is stretched by
    ``n_critic`` and both rates follow the generator step, as in WGAN-GP's CIFAR-10 code.
    """
    t = config.train
    make = functools.partial(make_optimizer, t.optimizer, schedule=t.schedule, grad_clip=t.grad_clip or None, b1=t.b1, b2=t.b2, eps=t.eps)
    n_critic = config.model.n_critic
    return {
        "generator": make(learning_rate=t.learning_rate, decay_steps=t.decay_steps),
        "critic": make(learning_rate=t.critic_learning_rate or t.learning_rate, decay_steps=t.decay_steps * n_critic),
    }


def _check_config(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    check_common(config)
    if config.train.critic_learning_rate < 0:
        raise ValueError(f"train.critic_learning_rate: expected 0 (same as train.learning_rate) or a positive float, got {config.train.critic_learning_rate}")
    if config.data.binarize != "none":
        raise ValueError(f"data.binarize: the GAN family trains on grey levels in [-1, 1]; expected 'none', got {config.data.binarize!r}")
    if config.train.ema_decay:
        raise ValueError(f"train.ema_decay: the GAN family keeps no parameter average; expected 0, got {config.train.ema_decay}")
    if config.train.schedule not in ("constant", "linear") or config.train.warmup_steps:
        raise ValueError(
            f"train.schedule: the GAN family supports 'constant' or 'linear' decay without warm-up; got {config.train.schedule!r} with warmup_steps {config.train.warmup_steps}"
        )
    if config.data.source == "toy":
        if config.data.name not in TOY_2D:
            raise ValueError(f"data.name: toy data must be one of {TOY_2D}, got {config.data.name!r}")
        return (2,)
    ev = config.eval
    if ev.parzen_samples and (ev.valid_split in config.data.train_split.split("+") or ev.valid_split == ev.split):
        raise ValueError(
            f"eval.valid_split: Parzen's sigma must be chosen on data apart from training ({config.data.train_split!r}) "
            f"and test ({ev.split!r}) data, got {ev.valid_split!r}"
        )
    return image_shape(config)


def critic_surface(critic_fn: Callable[[jax.Array], jax.Array], lim: float, num: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The critic's value on a ``num x num`` grid over ``[-lim, lim]^2`` (WGAN-GP Fig. 1)."""
    axis = np.linspace(-lim, lim, num, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis)
    values = np.asarray(critic_fn(jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1)))).reshape(num, num)
    return xx, yy, values


def _to_model_scale(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Images from [0, 1] to the generator's tanh range [-1, 1]."""
    return {"image": (batch["image"] * 2.0 - 1.0).astype(np.float32)}


def build(config: ml_collections.ConfigDict) -> Experiment:
    """The GAN family; see the module docstring. ``Experiment.model`` is a ``GANModel``."""
    data_shape = _check_config(config)
    objective = build_objective(config)
    generator, critic = build_networks(config, data_shape)
    optimizers = build_optimizers(config)
    latent_dim = config.model.latent_dim
    n_critic = objective.n_critic
    batch_size = config.train.batch_size
    toy = config.data.source == "toy"
    ev = config.eval
    cache: dict[str, Any] = {}
    data_key = stream(config.seed, TOY_DATA)

    def split_images(split: str) -> np.ndarray:
        if split not in cache:
            images = load_split(config, split).images
            cache[split] = images
        return cache[split]

    def batcher() -> Batcher | SourceBatcher:
        if "batcher" not in cache:
            cache["batcher"] = train_batcher(config, prepare=_to_model_scale, batch_size=batch_size * n_critic)
        return cache["batcher"]

    def batches(step: int) -> dict[str, np.ndarray]:
        if toy:
            key = jax.random.fold_in(data_key, step)
            data = local_slice(np.asarray(sample_toy2d(key, config.data.name, batch_size * n_critic)))
        else:
            data = batcher().batch(step)["image"]
        return {"image": data.reshape((data.shape[0] // n_critic, n_critic) + data.shape[1:])}

    g_apply = jax.jit(lambda p, z: generator.apply(p, z))
    c_apply = jax.jit(lambda p, x: gan_lib.critic_scores(array_apply(critic), p, x))

    def generate(params: Params, key: jax.Array, num: int) -> np.ndarray:
        return map_batches(lambda keys: g_apply(params["generator"], gan_lib.latent_noise(keys, latent_dim)), batch_size=ev.batch_size, key=key, num=num)

    def scores(params: Params, x: np.ndarray) -> np.ndarray:
        return map_batches(lambda chunk: c_apply(params["critic"], chunk), x, batch_size=ev.batch_size)

    def held_out(params: Params, key: jax.Array, real: np.ndarray) -> dict[str, float]:
        fake = generate(params, key, real.shape[0])
        real_s, fake_s = scores(params, real), scores(params, fake)
        gap = "heldout_wasserstein" if objective.wasserstein else "heldout_logit_gap"
        out = {gap: float(real_s.mean() - fake_s.mean()), "heldout_critic_real": float(real_s.mean()), "heldout_critic_fake": float(fake_s.mean())}
        if not objective.wasserstein:
            out.update(heldout_d_real=float(jax.nn.sigmoid(real_s).mean()), heldout_d_fake=float(jax.nn.sigmoid(fake_s).mean()))
        return out

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        if toy:
            real = np.asarray(sample_toy2d(jax.random.fold_in(key, 1), config.data.name, ev.toy_samples))
            out = held_out(params, jax.random.fold_in(key, 2), real)
            fake = generate(params, jax.random.fold_in(key, 3), ev.toy_samples)
            out["sliced_wasserstein"] = float(sliced_wasserstein(jax.random.fold_in(key, 4), jnp.asarray(fake), jnp.asarray(real)))
            if config.data.name in TOY_MIXTURES:
                mm = mode_metrics(fake, toy2d_modes(config.data.name), toy2d_mode_std(config.data.name))
                out.update(modes_covered=mm.modes_covered, num_modes=mm.num_modes, high_quality_fraction=mm.high_quality_fraction)
            return {**out, "num_samples": int(ev.toy_samples)}
        test = split_images(ev.split)
        if ev.num_examples:
            test = test[: ev.num_examples]
        out = held_out(params, jax.random.fold_in(key, 2), test * 2.0 - 1.0)
        out["num_examples"] = int(test.shape[0])
        if full and ev.parzen_samples:
            valid = split_images(ev.valid_split)
            if ev.num_examples:
                valid = valid[: ev.num_examples]
            samples = (generate(params, jax.random.fold_in(key, 5), ev.parzen_samples) + 1.0) / 2.0
            res = parzen_log_likelihood(test, valid, samples, sigmas=np.asarray(ev.parzen_sigmas) if ev.parzen_sigmas else None)
            out.update(
                parzen_log_likelihood=res.mean,
                parzen_stderr=res.stderr,
                parzen_sigma=res.sigma,
                parzen_samples=res.num_samples,
                parzen_test_examples=res.num_test,
                parzen_valid_examples=int(valid.shape[0]),
            )
        return out

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        x = generate(params, key, num)
        return x if toy else np.clip((x + 1.0) / 2.0, 0.0, 1.0)

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        if not toy:
            return [viz.save_image_grid(workdir / "interpolations.png", interpolations(params, key, 8, 10), ncols=10)]
        real = np.asarray(sample_toy2d(jax.random.fold_in(key, 1), config.data.name, 1000))
        fake = generate(params, jax.random.fold_in(key, 2), 1000)
        lim = float(max(np.abs(real).max(), 1.0) * 1.25)
        surface = critic_surface(lambda x: c_apply(params["critic"], x), lim)
        path = viz.save_critic_surface(workdir / "critic_surface.png", surface, real, fake, title=f"{config.model.objective}, {config.data.name}")
        return [path]

    def interpolations(params: Params, key: jax.Array, rows: int, cols: int) -> np.ndarray:
        ends = gan_lib.latent_noise(jax.random.split(key, 2 * rows), latent_dim).reshape(rows, 2, latent_dim)
        w = jnp.linspace(0.0, 1.0, cols)[None, :, None]
        z = (ends[:, :1] * (1.0 - w) + ends[:, 1:] * w).reshape(rows * cols, latent_dim)
        return np.clip((np.asarray(g_apply(params["generator"], z)) + 1.0) / 2.0, 0.0, 1.0)

    def init_params(key: jax.Array) -> Params:
        g_key, c_key = jax.random.split(key)
        return {
            "generator": generator.init(g_key, jnp.zeros((1, latent_dim), jnp.float32)),
            "critic": critic.init(c_key, jnp.zeros((1,) + data_shape, jnp.float32)),
        }

    update = functools.partial(
        gan_lib.make_gan_update,
        array_apply(generator),
        array_apply(critic),
        objective=objective,
        latent_dim=latent_dim,
        generator_optimizer=optimizers["generator"],
        critic_optimizer=optimizers["critic"],
    )
    return Experiment(
        config=config,
        model=GANModel(generator=generator, critic=critic, objective=objective, latent_dim=latent_dim),
        init=jax.jit(init_params),
        update=MultiPlayerUpdate(update, optimizers),
        batches=batches,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )
