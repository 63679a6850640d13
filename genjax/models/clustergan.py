"""ClusterGAN: clustering in the latent space of a GAN with an inverse network.

Mukherjee, Asnani, Lin and Kannan 2019, "ClusterGAN: Latent Space Clustering in
Generative Adversarial Networks", arXiv:1809.03627.

* The latent ``z = (z_n, z_c)`` joins a normal part ``z_n ~ N(0, sigma^2 I)`` (sigma =
  0.1, 30 dimensions for MNIST) and a one-hot ``z_c = e_k`` of ``K`` clusters, ``k``
  uniform (sec. 3.1). The generator ``G`` sees their concatenation.
* An encoder ``E: x -> (z_n_hat, z_c logits)`` inverts ``G`` and is trained jointly
  with it (sec. 3.2) on the adversarial loss plus
  ``beta_n ||z_n - E_n(G(z))||_2^2 + beta_c H(z_c, softmax(E_c(G(z))))``
  (``encoder_loss``; beta_n = beta_c = 10 for MNIST).
* The game between ``G`` and the discriminator ``D`` is WGAN-GP's in the paper's MNIST
  setup: the critic loss, gradient penalty and generator loss are those of
  ``genjax.models.gan`` (Gulrajani et al. 2017, arXiv:1704.00028), ``n_critic`` critic
  updates per generator step.
* A real ``x`` is assigned to ``argmax E_c(x)``; ``G(z_n, e_k)`` samples cluster ``k``.

One training step (``make_clustergan_update``) is ``n_critic`` critic updates (a
``lax.scan``, each on its own real minibatch) and then one joint update of the generator
and the encoder on the same gradient of their joint loss. Parameters and optimiser
states are dicts with keys ``"generator"``, ``"critic"`` and ``"encoder"``; the update
is built for the engine's ``jit`` or ``pmap`` back end as a ``MultiPlayerUpdate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.models import gan as gan_lib
from genjax.nn.mlp import get_activation
from genjax.types import Batch, MeanOverReplicas, Metrics, Params, UpdateFn, UpdateState

EncoderApply = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
"""``encoder(params, x [B, ...]) -> (z_n_hat [B, latent_dim], logits [B, K])``."""

LEAKY_RELU_SLOPE = 0.2
"""Negative slope of the convolutional encoder's leaky ReLU (as the paper's MNIST nets)."""

__all__ = [
    "ClusterEncoder",
    "ClusterGANNoise",
    "EncoderLoss",
    "cluster_assignment",
    "encoder_loss",
    "join_latent",
    "make_clustergan_update",
    "sample_latent",
    "step_noise",
]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_latent_args(latent_dim: object, num_clusters: object, sigma: object) -> None:
    """Raises ``ValueError`` naming the argument unless ``latent_dim >= 1``,
    ``num_clusters >= 2`` (ints) and ``sigma`` is a positive finite float."""
    if not _is_int(latent_dim) or latent_dim <= 0:  # type: ignore[operator]
        raise ValueError(f"latent_dim: expected a positive int, got {latent_dim!r}")
    if not _is_int(num_clusters) or num_clusters < 2:  # type: ignore[operator]
        raise ValueError(f"num_clusters: expected an int >= 2, got {num_clusters!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) or not 0 < sigma < np.inf:
        raise ValueError(f"sigma: expected a positive finite float, got {sigma!r}")


def _latent_one(key: jax.Array, latent_dim: int, num_clusters: int, sigma: float, cluster: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    n_key, c_key = jax.random.split(key)
    z_n = sigma * jax.random.normal(n_key, (latent_dim,), jnp.float32)
    if cluster is None:
        cluster = jax.random.randint(c_key, (), 0, num_clusters)
    return z_n, jax.nn.one_hot(cluster, num_clusters, dtype=jnp.float32)


def latent_from_keys(keys: jax.Array, latent_dim: int, num_clusters: int, sigma: float, clusters: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """One latent ``(z_n, z_c)`` per key (see ``sample_latent``): ``[B, latent_dim]``, ``[B, K]``."""
    if clusters is None:
        return jax.vmap(lambda k: _latent_one(k, latent_dim, num_clusters, sigma, None))(keys)
    return jax.vmap(lambda k, c: _latent_one(k, latent_dim, num_clusters, sigma, c))(keys, clusters)


def sample_latent(
    key: jax.Array,
    num: int,
    latent_dim: int,
    num_clusters: int,
    sigma: float,
    clusters: jax.Array | np.ndarray | Sequence[int] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Draws ClusterGAN latents ``z_n ~ N(0, sigma^2 I)``, ``z_c = e_k`` (arXiv:1809.03627, sec. 3.1).

    Args:
      key: PRNG key; it is split into one key per latent.
      num: number of latents.
      latent_dim: dimension of ``z_n`` (30 for MNIST in the paper).
      num_clusters: ``K``, the number of one-hot codes (>= 2).
      sigma: standard deviation of ``z_n`` (0.1 in the paper).
      clusters: ``[num]`` cluster indices in ``[0, K)`` to fix ``z_c = e_k`` (cluster-
        specific sampling); None draws ``k`` uniformly.

    Returns:
      ``(z_n [num, latent_dim], z_c [num, K])``; ``join_latent`` gives the generator input.

    Raises:
      ValueError: naming ``num``, ``latent_dim``, ``num_clusters``, ``sigma`` or
        ``clusters`` when out of range or of the wrong shape.
    """
    if not _is_int(num) or num <= 0:
        raise ValueError(f"num: expected a positive int, got {num!r}")
    check_latent_args(latent_dim, num_clusters, sigma)
    keys = jax.random.split(key, num)
    if clusters is None:
        return latent_from_keys(keys, latent_dim, num_clusters, float(sigma))
    fixed = jnp.asarray(clusters)
    if fixed.shape != (num,) or not jnp.issubdtype(fixed.dtype, jnp.integer):
        raise ValueError(f"clusters: expected {num} integer cluster indices, shape ({num},), got shape {fixed.shape} of {fixed.dtype}")
    if not isinstance(fixed, jax.core.Tracer) and (int(fixed.min()) < 0 or int(fixed.max()) >= num_clusters):
        raise ValueError(f"clusters: expected indices in [0, {num_clusters}), got values in [{int(fixed.min())}, {int(fixed.max())}]")
    return latent_from_keys(keys, latent_dim, num_clusters, float(sigma), fixed)


def join_latent(z_n: jax.Array, z_c: jax.Array) -> jax.Array:
    """The generator input ``[z_n, z_c]``: ``[B, latent_dim + K]``."""
    chex.assert_rank([z_n, z_c], 2)
    chex.assert_equal_shape_prefix([z_n, z_c], 1)
    return jnp.concatenate([z_n, z_c], axis=-1)


class ClusterEncoder(nn.Module):
    """The inverse network ``E: x -> (z_n_hat, z_c logits)`` of ClusterGAN.

    Without convolutions (``conv_features = ()``) it is an MLP on the flattened input;
    otherwise 4x4 stride-2 convolutions with leaky ReLU (slope 0.2) come first, as the
    paper's MNIST encoder (arXiv:1809.03627, appendix: conv 64, conv 128, FC 1024). The
    last layer is linear into ``latent_dim + num_clusters`` units: ``z_n_hat`` and the
    logits of ``z_c`` (the paper applies the softmax inside the cross-entropy). No batch
    normalisation, so that each example is encoded on its own and every device split of
    a batch gives the same outputs.

    Attributes:
      latent_dim: dimension of ``z_n``.
      num_clusters: ``K``.
      hidden: widths of the fully connected hidden layers.
      conv_features: channels of the stride-2 convolutions (may be empty).
      activation: activation of the fully connected hidden layers.
    """

    latent_dim: int
    num_clusters: int
    hidden: Sequence[int] = (256, 256)
    conv_features: Sequence[int] = ()
    activation: str = "leaky_relu"

    def __post_init__(self) -> None:
        check_latent_args(self.latent_dim, self.num_clusters, 1.0)
        for name, widths in (("hidden", self.hidden), ("conv_features", self.conv_features)):
            if isinstance(widths, (str, bytes)) or not all(_is_int(w) and w > 0 for w in widths):
                raise ValueError(f"{name}: expected a sequence of positive ints, got {widths!r}")
        if self.activation != "leaky_relu":
            get_activation(self.activation)
        super().__post_init__()

    def _act(self, x: jax.Array) -> jax.Array:
        if self.activation == "leaky_relu":
            return nn.leaky_relu(x, LEAKY_RELU_SLOPE)
        return get_activation(self.activation)(x)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if x.ndim < 2:
            raise ValueError(f"x: expected a batch of shape [B, ...], got shape {x.shape}")
        h = x
        if self.conv_features:
            if x.ndim != 4:
                raise ValueError(f"x: the convolutional encoder expects NHWC images [B, H, W, C], got shape {x.shape}")
            for i, ch in enumerate(self.conv_features):
                h = nn.leaky_relu(nn.Conv(ch, (4, 4), strides=(2, 2), padding="SAME", name=f"conv_{i}")(h), LEAKY_RELU_SLOPE)
        h = h.reshape((x.shape[0], -1))
        for i, width in enumerate(self.hidden):
            h = self._act(nn.Dense(width, name=f"hidden_{i}")(h))
        out = nn.Dense(self.latent_dim + self.num_clusters, name="out")(h)
        return out[:, : self.latent_dim], out[:, self.latent_dim :]


@dataclasses.dataclass(frozen=True)
class EncoderLoss:
    """The per-example terms of the encoder (cycle) loss.

    Attributes:
      total: ``beta_n * latent + beta_c * cluster``, ``[B]``.
      latent: ``||z_n - z_n_hat||_2^2``, ``[B]``.
      cluster: ``H(z_c, softmax(logits))``, the cross-entropy, ``[B]``.
    """

    total: jax.Array
    latent: jax.Array
    cluster: jax.Array


def encoder_loss(z_n: jax.Array, z_c: jax.Array, z_n_hat: jax.Array, logits: jax.Array, beta_n: float, beta_c: float) -> EncoderLoss:
    """ClusterGAN's inverse-mapping loss (arXiv:1809.03627, sec. 3.2, the objective's
    ``beta_n ||z_n - E(G(z))_n||_2^2 + beta_c H(z_c, E(G(z))_c)`` terms).

    Zero for ``z_n`` at a perfect inverse, and the cross-entropy's gradient in the
    logits is ``softmax(logits) - z_c``.

    Args:
      z_n: ``[B, latent_dim]`` the normal part of the latents.
      z_c: ``[B, K]`` the one-hot (or any probability vector) cluster codes.
      z_n_hat: ``[B, latent_dim]`` the encoder's estimate of ``z_n``.
      logits: ``[B, K]`` the encoder's cluster logits.
      beta_n: weight of the ``z_n`` term (10 for MNIST).
      beta_c: weight of the ``z_c`` term (10 for MNIST).

    Returns:
      An ``EncoderLoss`` of ``[B]`` terms.
    """
    chex.assert_rank([z_n, z_c, z_n_hat, logits], 2)
    chex.assert_equal_shape([z_n, z_n_hat])
    chex.assert_equal_shape([z_c, logits])
    latent = jnp.sum((z_n - z_n_hat) ** 2, axis=-1)
    cluster = -jnp.sum(z_c * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return EncoderLoss(total=beta_n * latent + beta_c * cluster, latent=latent, cluster=cluster)


def cluster_assignment(encoder_apply: EncoderApply, params: Params, x: jax.Array) -> jax.Array:
    """``argmax_k E_c(x)_k``: the cluster of each real example, ``[B]`` int32."""
    _, logits = encoder_apply(params, x)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ClusterGANNoise:
    """The random draws of one training step (see ``step_noise``).

    Attributes:
      critic_z_n: ``[n_critic, B, latent_dim]``; critic_z_c: ``[n_critic, B, K]``: the
        latents of each critic update's fakes.
      critic_eps: ``[n_critic, B]`` interpolation weights of the gradient penalty.
      z_n: ``[B, latent_dim]``; z_c: ``[B, K]``: the latents of the joint G/E update.
    """

    critic_z_n: jax.Array
    critic_z_c: jax.Array
    critic_eps: jax.Array
    z_n: jax.Array
    z_c: jax.Array


def step_noise(keys: jax.Array, n_critic: int, latent_dim: int, num_clusters: int, sigma: float) -> ClusterGANNoise:
    """Independent draws for every update of a step, from one key per example.

    ``keys[b]`` splits into ``n_critic + 1`` keys: key ``j < n_critic`` splits into the
    latent and ``eps`` of critic update ``j``, the last gives the latent of the G/E
    update. Example ``b`` gets the same noise on any device count.
    """
    per_example = jax.vmap(lambda k: jax.random.split(k, n_critic + 1))(keys)
    critic_keys = jnp.swapaxes(per_example[:, :n_critic], 0, 1)
    z_keys, eps_keys = jnp.moveaxis(jax.vmap(jax.vmap(jax.random.split))(critic_keys), 2, 0)
    critic_z_n, critic_z_c = jax.vmap(lambda k: latent_from_keys(k, latent_dim, num_clusters, sigma))(z_keys)
    z_n, z_c = latent_from_keys(per_example[:, n_critic], latent_dim, num_clusters, sigma)
    return ClusterGANNoise(
        critic_z_n=critic_z_n,
        critic_z_c=critic_z_c,
        critic_eps=jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, ())))(eps_keys),
        z_n=z_n,
        z_c=z_c,
    )


def make_clustergan_update(
    generator_apply: gan_lib.GeneratorApply,
    critic_apply: gan_lib.CriticApply,
    encoder_apply: EncoderApply,
    *,
    objective: gan_lib.GANObjective,
    latent_dim: int,
    num_clusters: int,
    sigma: float,
    beta_n: float,
    beta_c: float,
    generator_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    encoder_optimizer: optax.GradientTransformation,
    mean_over_replicas: MeanOverReplicas | None = None,
) -> UpdateFn:
    """Builds ClusterGAN's pure three-player update ``update(state, batch, keys) -> (state, metrics)``.

    ``n_critic`` critic updates on ``genjax.models.gan.critic_loss`` (critic update ``j``
    takes ``batch["image"][:, j]`` as its real minibatch, of shape ``[B, n_critic, ...]``
    in all), then one step of the generator and the encoder on the gradient of their
    joint loss ``E[generator_loss(D(G(z)))] + E[beta_n ||z_n - E_n(G(z))||^2 + beta_c
    H(z_c, E_c(G(z)))]`` (arXiv:1809.03627, sec. 3.2), each with its own optimiser.
    ``state.step`` counts generator updates.

    Args:
      generator_apply: ``G(params, [z_n, z_c]) -> x``.
      critic_apply: the critic (discriminator logits for a GAN).
      encoder_apply: ``E(params, x) -> (z_n_hat, logits)``.
      objective: the game (WGAN-GP in the paper's MNIST setup).
      latent_dim: dimension of ``z_n``.
      num_clusters: ``K``.
      sigma: standard deviation of ``z_n``.
      beta_n: weight of the ``z_n`` reconstruction term.
      beta_c: weight of the ``z_c`` cross-entropy term.
      generator_optimizer: optax transformation of the generator.
      critic_optimizer: optax transformation of the critic.
      encoder_optimizer: optax transformation of the encoder.
      mean_over_replicas: averages gradients and metrics over data-parallel replicas
        (``lax.pmean`` under ``pmap``); None when one program sees the whole batch.

    Returns:
      The update. Metrics: the critic's (means over its updates, as the GAN update),
      ``generator_loss`` (adversarial term), ``encoder_loss`` (weighted sum),
      ``latent_loss``, ``cluster_loss``, ``fake_cluster_accuracy`` (how often
      ``argmax E_c(G(z))`` recovers ``z_c``), gradient and parameter norms; ``loss`` is
      the critic loss.

    Raises:
      ValueError: naming the argument for bad sizes or weights.
    """
    check_latent_args(latent_dim, num_clusters, sigma)
    for name, value in (("beta_n", beta_n), ("beta_c", beta_c)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= value < np.inf:
            raise ValueError(f"{name}: expected a non-negative finite float, got {value!r}")
    n_critic = objective.n_critic
    sigma = float(sigma)

    def mean(tree: Any) -> Any:
        return tree if mean_over_replicas is None else mean_over_replicas(tree)

    def update(state: UpdateState, batch: Batch, keys: jax.Array) -> tuple[UpdateState, Metrics]:
        if state.ema_params is not None or state.model_state is not None:
            raise ValueError("state: the ClusterGAN update keeps no ema_params or model_state; build it with create_train_state(params, optimizers)")
        if "image" not in batch:
            raise ValueError(f"batch: expected the real data under 'image', got keys {sorted(batch)}")
        real = batch["image"]
        if real.ndim < 3 or real.shape[1] != n_critic:
            raise ValueError(f"batch: expected real data of shape [batch, n_critic={n_critic}, ...] (one minibatch per critic update), got {real.shape}")
        if keys.shape != real.shape[:1]:
            raise ValueError(f"keys: expected one key per example, shape {real.shape[:1]}, got {keys.shape}")
        g_params, c_params, e_params = (state.params[k] for k in ("generator", "critic", "encoder"))
        noise = step_noise(keys, n_critic, latent_dim, num_clusters, sigma)

        def critic_update(carry: tuple[Params, Any], xs: tuple[jax.Array, ...]) -> tuple[tuple[Params, Any], Metrics]:
            params, opt_state = carry
            real_j, z_n, z_c, eps = xs
            fake = generator_apply(g_params, join_latent(z_n, z_c))
            grads, metrics = jax.grad(lambda p: gan_lib.critic_loss(objective, critic_apply, p, real_j, fake, eps), has_aux=True)(params)
            grads, metrics = mean(grads), mean(metrics)
            updates, opt_state = critic_optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            if objective.kind == "wgan_clip":
                params = gan_lib.clip_weights(params, objective.clip_value)
            metrics["critic_grad_norm"] = optax.tree.norm(grads)
            return (params, opt_state), metrics

        xs = (jnp.swapaxes(real, 0, 1), noise.critic_z_n, noise.critic_z_c, noise.critic_eps)
        (c_params, c_opt), critic_metrics = jax.lax.scan(critic_update, (c_params, state.opt_state["critic"]), xs)

        def joint_loss(ge: tuple[Params, Params]) -> tuple[jax.Array, Metrics]:
            g, e = ge
            fake = generator_apply(g, join_latent(noise.z_n, noise.z_c))
            if fake.shape[1:] != real.shape[2:]:
                raise ValueError(f"generator: expected examples of shape {real.shape[2:]} like the real data, got {fake.shape[1:]}")
            adversarial = jnp.mean(gan_lib.generator_loss(gan_lib.critic_scores(critic_apply, c_params, fake), objective.kind))
            z_n_hat, logits = encoder_apply(e, fake)
            terms = encoder_loss(noise.z_n, noise.z_c, z_n_hat, logits, beta_n, beta_c)
            enc = jnp.mean(terms.total)
            hits = jnp.argmax(logits, axis=-1) == jnp.argmax(noise.z_c, axis=-1)
            metrics = {
                "generator_loss": adversarial,
                "encoder_loss": enc,
                "latent_loss": jnp.mean(terms.latent),
                "cluster_loss": jnp.mean(terms.cluster),
                "fake_cluster_accuracy": jnp.mean(hits.astype(jnp.float32)),
            }
            return adversarial + enc, metrics

        (g_grads, e_grads), ge_metrics = jax.grad(joint_loss, has_aux=True)((g_params, e_params))
        g_grads, e_grads, ge_metrics = mean(g_grads), mean(e_grads), mean(ge_metrics)
        g_updates, g_opt = generator_optimizer.update(g_grads, state.opt_state["generator"], g_params)
        e_updates, e_opt = encoder_optimizer.update(e_grads, state.opt_state["encoder"], e_params)
        g_params = optax.apply_updates(g_params, g_updates)
        e_params = optax.apply_updates(e_params, e_updates)
        metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
        metrics.update(ge_metrics)
        metrics.update(
            loss=metrics["critic_loss"],
            generator_grad_norm=optax.tree.norm(g_grads),
            encoder_grad_norm=optax.tree.norm(e_grads),
            generator_param_norm=optax.tree.norm(g_params),
            critic_param_norm=optax.tree.norm(c_params),
            encoder_param_norm=optax.tree.norm(e_params),
        )
        new_state = state.replace(
            step=state.step + 1,
            params={"generator": g_params, "critic": c_params, "encoder": e_params},
            opt_state={"generator": g_opt, "critic": c_opt, "encoder": e_opt},
        )
        return new_state, metrics

    return update
