"""The ClusterGAN family (``model.family = "clustergan"``), arXiv:1809.03627.

A GAN whose latent joins a normal ``z_n`` and a one-hot ``z_c`` of ``model.num_clusters``
classes, with an encoder trained jointly with the generator to recover both
(``genjax.models.clustergan``). The game is the GAN family's (``model.objective``,
WGAN-GP by default) and its networks are built by ``genjax.experiment.gan``
(``model.architecture``: ``"mlp"`` or ``"dcgan"``); the encoder is a
``ClusterEncoder`` (``model.encoder_conv`` stride-2 convolutions, then
``model.encoder_hidden`` dense layers). Like the other clustering families it trains on
``data.train_split`` and ``evaluate`` scores ``argmax E_c(x)`` on the real images with
ACC, NMI and ARI (``genjax.experiment.clustering``). Images are scaled to [-1, 1] for
training; ``sample`` returns them in [0, 1], ordered by cluster.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import viz
from genjax.experiment import gan as gan_experiment
from genjax.experiment.base import Experiment, image_shape, train_batcher
from genjax.experiment.clustering import apply_in_batches, check_cluster_config, cluster_base_config, cluster_data, cluster_evaluation, cluster_figures
from genjax.models import clustergan as cg
from genjax.models import gan as gan_lib
from genjax.nn.module import array_apply
from genjax.train.optim import make_optimizer
from genjax.train.step import MultiPlayerUpdate
from genjax.types import Params


@dataclasses.dataclass(frozen=True)
class ClusterGANModel:
    """The networks and hyperparameters of a ClusterGAN experiment (``Experiment.model``).

    Attributes:
      generator: ``generator.apply(params["generator"], [z_n, z_c]) -> x`` in [-1, 1].
      critic: ``critic.apply(params["critic"], x) -> scores``.
      encoder: ``encoder.apply(params["encoder"], x) -> (z_n_hat, logits)``.
      objective: the game between generator and critic.
      latent_dim: dimension of ``z_n``.
      num_clusters: ``K``.
      sigma: standard deviation of ``z_n``.
      beta_n: weight of the ``z_n`` term of the encoder loss.
      beta_c: weight of the ``z_c`` term.
    """

    generator: nn.Module
    critic: nn.Module
    encoder: cg.ClusterEncoder
    objective: gan_lib.GANObjective
    latent_dim: int
    num_clusters: int
    sigma: float
    beta_n: float
    beta_c: float


def default_config() -> ml_collections.ConfigDict:
    """The ``clustergan`` family at the paper's MNIST settings (arXiv:1809.03627, sec. 4 and appendix).

    ``model.latent_dim`` = 30 and ``model.sigma`` = 0.1 for ``z_n``, K = 10,
    ``model.beta_n`` = ``model.beta_c`` = 10; WGAN-GP (lambda 10, 5 critic steps per
    generator step); Adam at 1e-4 with beta1 = 0.5, beta2 = 0.9, batch 64, for every
    player (``train.encoder_learning_rate`` 0: the generator's rate). Convolutional
    generator and critic (``"dcgan"``, no normalisation) and a convolutional encoder
    (``model.encoder_conv`` = (64, 128), then a dense layer of 1024).
    """
    c = cluster_base_config("clustergan")
    m = c.model
    m.latent_dim = 30
    m.sigma = 0.1
    m.beta_n = 10.0
    m.beta_c = 10.0
    m.objective = "wgan_gp"
    m.n_critic = 5
    m.gp_weight = 10.0
    m.clip_value = 0.01
    m.architecture = "dcgan"
    m.features = 64
    m.norm = "none"
    m.generator_norm = "none"
    m.hidden = (1024, 1024)
    m.critic_hidden = ()
    m.activation = "relu"
    m.critic_activation = "relu"
    m.maxout_pieces = 0
    m.encoder_conv = (64, 128)
    m.encoder_hidden = (1024,)
    c.train.batch_size = 64
    c.train.learning_rate = 1e-4
    c.train.critic_learning_rate = 0.0
    c.train.encoder_learning_rate = 0.0
    c.train.b1 = 0.5
    c.train.b2 = 0.9
    c.train.num_steps = 30_000
    c.train.log_every = 100
    return c


def _check_config(config: ml_collections.ConfigDict, num_examples: int) -> tuple[int, int, int]:
    check_cluster_config(config, num_examples)
    m, t = config.model, config.train
    cg.check_latent_args(m.latent_dim, m.num_clusters, m.sigma)
    for name in ("beta_n", "beta_c"):
        if not 0 <= getattr(m, name) < np.inf:
            raise ValueError(f"model.{name}: expected a non-negative finite float, got {getattr(m, name)}")
    if m.architecture not in ("mlp", "dcgan"):
        raise ValueError(f"model.architecture: expected 'mlp' or 'dcgan', got {m.architecture!r}")
    for name in ("critic_learning_rate", "encoder_learning_rate"):
        if getattr(t, name) < 0:
            raise ValueError(f"train.{name}: expected 0 (same as train.learning_rate) or a positive float, got {getattr(t, name)}")
    if config.data.binarize != "none":
        raise ValueError(f"data.binarize: ClusterGAN trains on grey levels in [-1, 1]; expected 'none', got {config.data.binarize!r}")
    if t.ema_decay:
        raise ValueError(f"train.ema_decay: the clustergan family keeps no parameter average; expected 0, got {t.ema_decay}")
    if t.schedule not in ("constant", "linear") or t.warmup_steps:
        raise ValueError(
            f"train.schedule: the clustergan family supports 'constant' or 'linear' decay without warm-up; got {t.schedule!r} with warmup_steps {t.warmup_steps}"
        )
    return image_shape(config)


def _to_model_scale(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"image": (batch["image"] * 2.0 - 1.0).astype(np.float32)}


def cluster_order(num: int, num_clusters: int) -> np.ndarray:
    """``num`` cluster indices in blocks of equal size, cluster-major: with ``num = K * n``
    and ``n`` images per row, row ``k`` of the grid is cluster ``k``."""
    return ((np.arange(num) * num_clusters) // num).astype(np.int32)


def build(config: ml_collections.ConfigDict) -> Experiment:
    """The ClusterGAN family; see the module docstring. ``Experiment.model`` is a ``ClusterGANModel``."""
    data = cluster_data(config)
    shape = _check_config(config, len(data.images))
    m, t = config.model, config.train
    objective = gan_experiment.build_objective(config)
    generator, critic = gan_experiment.build_networks(config, shape)
    encoder = cg.ClusterEncoder(latent_dim=m.latent_dim, num_clusters=m.num_clusters, hidden=tuple(m.encoder_hidden), conv_features=tuple(m.encoder_conv))
    optimizers = gan_experiment.build_optimizers(config)
    optimizers["encoder"] = make_optimizer(
        t.optimizer,
        learning_rate=t.encoder_learning_rate or t.learning_rate,
        schedule=t.schedule,
        decay_steps=t.decay_steps,
        grad_clip=t.grad_clip or None,
        b1=t.b1,
        b2=t.b2,
        eps=t.eps,
    )
    model = ClusterGANModel(generator, critic, encoder, objective, m.latent_dim, m.num_clusters, float(m.sigma), float(m.beta_n), float(m.beta_c))
    n_critic = objective.n_critic
    batcher = train_batcher(config, prepare=_to_model_scale, batch_size=t.batch_size * n_critic)

    def batches(step: int) -> dict[str, np.ndarray]:
        x = batcher.batch(step)["image"]
        return {"image": x.reshape((x.shape[0] // n_critic, n_critic) + x.shape[1:])}

    encoder_apply = cast(cg.EncoderApply, encoder.apply)
    g_apply = jax.jit(lambda p, z: generator.apply(p, z))
    assign_fn = jax.jit(lambda p, x: cg.cluster_assignment(encoder_apply, p, x * 2.0 - 1.0))
    embed_fn = jax.jit(lambda p, x: jnp.concatenate(encoder_apply(p, x * 2.0 - 1.0), axis=-1))

    def assign(params: Params, images: np.ndarray) -> np.ndarray:
        return apply_in_batches(functools.partial(assign_fn, params["encoder"]), images, config.eval.batch_size, "assign")

    def embed(params: Params, images: np.ndarray) -> np.ndarray:
        return apply_in_batches(functools.partial(embed_fn, params["encoder"]), images, config.eval.batch_size, "embed")

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        return cluster_evaluation(config, data, functools.partial(assign, params))

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        clusters = cluster_order(num, m.num_clusters)
        z_n, z_c = cg.sample_latent(key, num, m.latent_dim, m.num_clusters, m.sigma, clusters)
        z = np.asarray(cg.join_latent(z_n, z_c))
        step = config.eval.batch_size
        x = np.concatenate([np.asarray(g_apply(params["generator"], jnp.asarray(z[i : i + step]))) for i in range(0, num, step)])
        return np.clip((x + 1.0) / 2.0, 0.0, 1.0)

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        paths = cluster_figures(config, data, workdir, functools.partial(assign, params), functools.partial(embed, params))
        per_row = 10
        grid = sample(params, key, m.num_clusters * per_row)
        paths.append(viz.save_image_grid(workdir / "cluster_samples.png", grid, ncols=per_row))
        return paths

    def init_params(key: jax.Array) -> Params:
        g_key, c_key, e_key = jax.random.split(key, 3)
        x0 = jnp.zeros((1,) + shape, jnp.float32)
        return {
            "generator": generator.init(g_key, jnp.zeros((1, m.latent_dim + m.num_clusters), jnp.float32)),
            "critic": critic.init(c_key, x0),
            "encoder": encoder.init(e_key, x0),
        }

    update = functools.partial(
        cg.make_clustergan_update,
        array_apply(generator),
        array_apply(critic),
        encoder_apply,
        objective=objective,
        latent_dim=m.latent_dim,
        num_clusters=m.num_clusters,
        sigma=float(m.sigma),
        beta_n=float(m.beta_n),
        beta_c=float(m.beta_c),
        generator_optimizer=optimizers["generator"],
        critic_optimizer=optimizers["critic"],
        encoder_optimizer=optimizers["encoder"],
    )
    return Experiment(
        config=config,
        model=model,
        init=jax.jit(init_params),
        update=MultiPlayerUpdate(update, optimizers),
        batches=batches,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )
