"""Generative adversarial networks: the GAN of Goodfellow et al. and WGAN-GP.

* GAN (Goodfellow et al. 2014, arXiv:1406.2661): a discriminator ``D(x) = sigmoid(l(x))``
  and a generator ``G(z)`` play the minimax game of eq. 1,
  ``min_G max_D E_x log D(x) + E_z log(1 - D(G(z)))``. Section 3 recommends training
  ``G`` to maximise ``log D(G(z))`` instead (the non-saturating loss); both are here.
* WGAN (Arjovsky et al. 2017, arXiv:1701.07875): a critic ``f`` estimates the
  Wasserstein-1 distance ``E_x f(x) - E_z f(G(z))``, kept Lipschitz by clipping every
  weight to ``[-c, c]`` after each update (the baseline here).
* WGAN-GP (Gulrajani et al. 2017, arXiv:1704.00028, eq. 3 and Algorithm 1): the critic
  minimises ``E f(x~) - E f(x) + lambda E (||grad f(x^)||_2 - 1)^2`` on random
  interpolates ``x^ = eps x + (1 - eps) x~``, ``eps ~ U[0, 1]``.

One training step is Algorithm 1's outer iteration: ``n_critic`` critic updates (a
``lax.scan``, each on its own real minibatch) and then one generator update against the
updated critic, each player with its own optax optimiser, all in one pure function that
the generic engine compiles for ``jit`` or ``pmap`` (as a ``MultiPlayerUpdate``). The
real data of a step is ``batch["image"]`` of shape ``[B, n_critic, ...]``
so that its leading axis stays the one the back ends split over devices.

The critic must score each example on its own (no batch normalisation): the gradient
penalty differentiates one example's score with respect to that example's input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.types import Batch, MeanOverReplicas, Metrics, Params, UpdateFn, UpdateState

GeneratorApply = Callable[[Params, jax.Array], jax.Array]
"""``generator(params, z [B, latent_dim]) -> x [B, ...]``."""
CriticApply = Callable[[Params, jax.Array], jax.Array]
"""``critic(params, x [B, ...]) -> scores [B]`` (or ``[B, 1]``): logits for a GAN."""

OBJECTIVES = ("minimax", "non_saturating", "wgan_clip", "wgan_gp")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class GANObjective:
    """Which game is played and its hyperparameters.

    Attributes:
      kind: ``"minimax"`` (eq. 1 of Goodfellow et al. for both players),
        ``"non_saturating"`` (the generator maximises ``log D(G(z))``, their section 3),
        ``"wgan_clip"`` (WGAN with weight clipping) or ``"wgan_gp"`` (WGAN-GP).
      n_critic: critic (discriminator) updates per generator update: ``k`` of Goodfellow
        et al.'s Algorithm 1 (they used 1), ``n_critic`` of WGAN-GP's (5).
      gp_weight: the penalty coefficient ``lambda`` of WGAN-GP (10 in the paper).
      clip_value: the weight-clipping bound ``c`` of WGAN (0.01 in Arjovsky et al.).
    """

    kind: str = "wgan_gp"
    n_critic: int = 5
    gp_weight: float = 10.0
    clip_value: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"kind: expected one of {OBJECTIVES}, got {self.kind!r}")
        if not _is_int(self.n_critic) or self.n_critic <= 0:
            raise ValueError(f"n_critic: expected a positive int, got {self.n_critic!r}")
        for name, value in (("gp_weight (lambda)", self.gp_weight), ("clip_value", self.clip_value)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < np.inf:
                raise ValueError(f"{name}: expected a positive finite float, got {value!r}")

    @property
    def wasserstein(self) -> bool:
        """Whether the critic is a Wasserstein critic (unbounded scores) or a discriminator."""
        return self.kind in ("wgan_clip", "wgan_gp")


def critic_scores(critic_apply: CriticApply, params: Params, x: jax.Array) -> jax.Array:
    """Calls the critic and checks it returns one scalar per example.

    Returns:
      ``[B]`` scores.

    Raises:
      ValueError: the output is not of shape ``[B]`` or ``[B, 1]``.
    """
    scores = critic_apply(params, x)
    if scores.shape == x.shape[:1] + (1,):
        scores = scores[:, 0]
    if scores.shape != x.shape[:1]:
        raise ValueError(
            f"critic: expected one scalar per example, shape {x.shape[:1]} or {x.shape[:1] + (1,)}, got {scores.shape} for inputs of shape {x.shape}"
        )
    return scores


def _check_pair(real: jax.Array, fake: jax.Array) -> None:
    if real.shape != fake.shape:
        raise ValueError(f"fake: expected the shape of the real batch {real.shape}, got {fake.shape}")


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Per-example discriminator loss, the negative of the value in eq. 1 of Goodfellow et al.

    ``-log D(x) - log(1 - D(G(z))) = softplus(-l(x)) + softplus(l(G(z)))`` for logits
    ``l``, computed stably.
    """
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def generator_loss(fake_scores: jax.Array, kind: str) -> jax.Array:
    """Per-example generator loss for an objective ``kind`` (see ``GANObjective``).

    * minimax: ``log(1 - D(G(z))) = -softplus(l)`` (eq. 1, minimised by G);
    * non_saturating: ``-log D(G(z)) = softplus(-l)`` (section 3);
    * wgan_clip / wgan_gp: ``-f(G(z))`` (WGAN-GP Algorithm 1, line 11).
    """
    if kind == "minimax":
        return -jax.nn.softplus(fake_scores)
    if kind == "non_saturating":
        return jax.nn.softplus(-fake_scores)
    if kind in ("wgan_clip", "wgan_gp"):
        return -fake_scores
    raise ValueError(f"kind: expected one of {OBJECTIVES}, got {kind!r}")


def interpolate(real: jax.Array, fake: jax.Array, eps: jax.Array) -> jax.Array:
    """Random points on the segments between real and fake examples (WGAN-GP Alg. 1, line 6).

    Args:
      real: ``[B, ...]`` real examples ``x``.
      fake: ``[B, ...]`` generated examples ``x~``.
      eps: ``[B]`` mixing weights in [0, 1].

    Returns:
      ``x^ = eps x + (1 - eps) x~`` of shape ``[B, ...]``.
    """
    _check_pair(real, fake)
    if eps.shape != real.shape[:1]:
        raise ValueError(f"eps: expected one weight per example, shape {real.shape[:1]}, got {eps.shape}")
    e = jnp.reshape(eps, eps.shape + (1,) * (real.ndim - 1)).astype(real.dtype)
    return e * real + (1.0 - e) * fake


def input_gradients(critic_apply: CriticApply, params: Params, x: jax.Array) -> jax.Array:
    """``grad_x f(x)`` for each example on its own: ``vmap`` of ``grad`` of one score."""

    def one(xi: jax.Array) -> jax.Array:
        return critic_scores(critic_apply, params, xi[None])[0]

    return jax.vmap(jax.grad(one))(x)


def gradient_penalty(critic_apply: CriticApply, params: Params, x_hat: jax.Array) -> jax.Array:
    """Per-example two-sided penalty ``(||grad_x f(x^)||_2 - 1)^2`` (WGAN-GP eq. 3).

    Returns:
      ``[B]`` penalties (not yet multiplied by lambda).
    """
    grads = input_gradients(critic_apply, params, x_hat)
    squared = jnp.sum(jnp.reshape(grads, (grads.shape[0], -1)) ** 2, axis=-1)
    # sqrt has an infinite derivative at 0 (a ReLU critic's dead region), and inf * 0 is
    # NaN: take the norm's subgradient 0 there, as autograd frameworks do.
    positive = squared > 0
    norms = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
    return (norms - 1.0) ** 2


def clip_weights(params: Params, clip_value: float) -> Params:
    """Clips every critic weight to ``[-c, c]`` (WGAN, Arjovsky et al. Algorithm 1)."""
    return jax.tree.map(lambda w: jnp.clip(w, -clip_value, clip_value), params)


def critic_loss(
    objective: GANObjective,
    critic_apply: CriticApply,
    params: Params,
    real: jax.Array,
    fake: jax.Array,
    eps: jax.Array,
) -> tuple[jax.Array, Metrics]:
    """The critic's (discriminator's) batch loss and its terms.

    Args:
      objective: the game.
      critic_apply: the critic network.
      params: critic parameters (the argument differentiated).
      real: ``[B, ...]`` real examples.
      fake: ``[B, ...]`` generated examples (treated as constants).
      eps: ``[B]`` interpolation weights for the gradient penalty (unused otherwise).

    Returns:
      ``(loss, metrics)``: metrics hold ``critic_loss``; for a WGAN ``wasserstein``, the
      critic's estimate ``E f(x) - E f(x~)`` (and ``gradient_penalty`` for WGAN-GP); for
      a GAN ``logit_gap``, the same difference of mean logits, and ``d_real`` / ``d_fake``
      (mean ``D``).
    """
    _check_pair(real, fake)
    fake = jax.lax.stop_gradient(fake)
    real_scores = critic_scores(critic_apply, params, real)
    fake_scores = critic_scores(critic_apply, params, fake)
    gap = jnp.mean(real_scores) - jnp.mean(fake_scores)
    metrics: Metrics = {"wasserstein" if objective.wasserstein else "logit_gap": gap}
    if objective.wasserstein:
        loss = jnp.mean(fake_scores) - jnp.mean(real_scores)
        if objective.kind == "wgan_gp":
            penalty = jnp.mean(gradient_penalty(critic_apply, params, interpolate(real, fake, eps)))
            metrics["gradient_penalty"] = penalty
            loss = loss + objective.gp_weight * penalty
    else:
        loss = jnp.mean(discriminator_loss(real_scores, fake_scores))
        metrics["d_real"] = jnp.mean(jax.nn.sigmoid(real_scores))
        metrics["d_fake"] = jnp.mean(jax.nn.sigmoid(fake_scores))
    metrics["critic_loss"] = loss
    return loss, metrics


def latent_noise(keys: jax.Array, latent_dim: int) -> jax.Array:
    """One standard normal latent ``z`` per key: ``[B, latent_dim]``."""
    return jax.vmap(lambda k: jax.random.normal(k, (latent_dim,), jnp.float32))(keys)


@dataclasses.dataclass(frozen=True)
class StepNoise:
    """The random draws of one training step (see ``step_noise``).

    Attributes:
      critic_z: ``[n_critic, B, latent_dim]`` latents of each critic update's fakes.
      critic_eps: ``[n_critic, B]`` interpolation weights of each critic update.
      generator_z: ``[B, latent_dim]`` latents of the generator update.
    """

    critic_z: jax.Array
    critic_eps: jax.Array
    generator_z: jax.Array


def step_noise(keys: jax.Array, n_critic: int, latent_dim: int) -> StepNoise:
    """Splits each example's key into independent draws for every update of a step.

    ``keys[b]`` splits into ``n_critic + 1`` keys: key ``j < n_critic`` splits again into
    the ``z`` and ``eps`` of critic update ``j``; the last gives the generator's ``z``.
    So no draw is reused between updates, and example ``b`` gets the same noise on any
    device count.
    """
    per_example = jax.vmap(lambda k: jax.random.split(k, n_critic + 1))(keys)
    critic_keys = jnp.swapaxes(per_example[:, :n_critic], 0, 1)
    z_keys, eps_keys = jnp.moveaxis(jax.vmap(jax.vmap(jax.random.split))(critic_keys), 2, 0)
    return StepNoise(
        critic_z=jax.vmap(lambda k: latent_noise(k, latent_dim))(z_keys),
        critic_eps=jax.vmap(jax.vmap(lambda k: jax.random.uniform(k, ())))(eps_keys),
        generator_z=latent_noise(per_example[:, n_critic], latent_dim),
    )


def sample(generator_apply: GeneratorApply, params: Params, key: jax.Array, num: int, latent_dim: int) -> jax.Array:
    """Draws ``num`` examples ``G(z)``, ``z ~ N(0, I)``."""
    return generator_apply(params, latent_noise(jax.random.split(key, num), latent_dim))


def _real_data(batch: Batch, n_critic: int) -> jax.Array:
    if "image" not in batch:
        raise ValueError(f"batch: expected the real data under 'image', got keys {sorted(batch)}")
    real = batch["image"]
    if real.ndim < 3 or real.shape[1] != n_critic:
        raise ValueError(f"batch: expected real data of shape [batch, n_critic={n_critic}, ...] (one minibatch per critic update), got {real.shape}")
    return real


def make_gan_update(
    generator_apply: GeneratorApply,
    critic_apply: CriticApply,
    *,
    objective: GANObjective,
    latent_dim: int,
    generator_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    mean_over_replicas: MeanOverReplicas | None = None,
) -> UpdateFn:
    """Builds the pure two-player update ``update(state, batch, keys) -> (state, metrics)``.

    The state's ``params`` and ``opt_state`` are dicts with keys ``"generator"`` and
    ``"critic"`` (``create_train_state(params, {"generator": g_opt, "critic": c_opt})``).
    One call runs ``objective.n_critic`` critic updates in a ``lax.scan``, critic update
    ``j`` using ``batch["image"][:, j]`` as its real minibatch, then one generator
    update; ``state.step`` counts generator updates.

    Randomness is per example (``step_noise``): every critic update and the generator
    update get their own ``z`` (and ``eps``), and every back end and device count draws
    the same noise for the same example.

    Args:
      generator_apply: the generator network.
      critic_apply: the critic (discriminator logits for a GAN).
      objective: the game and its hyperparameters.
      latent_dim: dimension of ``z``.
      generator_optimizer: optax transformation of the generator.
      critic_optimizer: optax transformation of the critic.
      mean_over_replicas: averages gradients and metrics over data-parallel replicas
        (the engine passes ``lax.pmean`` over its device axis under ``pmap``); None when
        one program sees the whole batch.

    Returns:
      The update. Metrics are means over the critic updates of ``critic_loss``,
      ``wasserstein`` or ``logit_gap``, ``gradient_penalty`` / ``d_real`` / ``d_fake`` and
      ``critic_grad_norm``, and ``generator_loss``, ``generator_grad_norm`` and the
      parameter norms; ``loss`` is ``critic_loss``.
    """
    if not _is_int(latent_dim) or latent_dim <= 0:
        raise ValueError(f"latent_dim: expected a positive int, got {latent_dim!r}")
    n_critic = objective.n_critic

    def mean(tree: Any) -> Any:
        return tree if mean_over_replicas is None else mean_over_replicas(tree)

    def update(state: UpdateState, batch: Batch, keys: jax.Array) -> tuple[UpdateState, Metrics]:
        if state.ema_params is not None or state.model_state is not None:
            raise ValueError("state: the GAN update keeps no ema_params or model_state; build it with create_train_state(params, optimizers)")
        real = _real_data(batch, n_critic)
        if keys.shape != real.shape[:1]:
            raise ValueError(f"keys: expected one key per example, shape {real.shape[:1]}, got {keys.shape}")
        g_params, c_params = state.params["generator"], state.params["critic"]
        g_opt, c_opt = state.opt_state["generator"], state.opt_state["critic"]
        noise = step_noise(keys, n_critic, latent_dim)

        def critic_update(carry: tuple[Params, Any], xs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[tuple[Params, Any], Metrics]:
            params, opt_state = carry
            real_j, z, eps = xs
            fake = generator_apply(g_params, z)
            grads, metrics = jax.grad(lambda p: critic_loss(objective, critic_apply, p, real_j, fake, eps), has_aux=True)(params)
            grads, metrics = mean(grads), mean(metrics)
            updates, opt_state = critic_optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            if objective.kind == "wgan_clip":
                params = clip_weights(params, objective.clip_value)
            metrics["critic_grad_norm"] = optax.tree.norm(grads)
            return (params, opt_state), metrics

        xs = (jnp.swapaxes(real, 0, 1), noise.critic_z, noise.critic_eps)
        (c_params, c_opt), critic_metrics = jax.lax.scan(critic_update, (c_params, c_opt), xs)
        z = noise.generator_z

        def g_objective(params: Params) -> tuple[jax.Array, jax.Array]:
            fake = generator_apply(params, z)
            if fake.shape[1:] != real.shape[2:]:
                raise ValueError(f"generator: expected examples of shape {real.shape[2:]} like the real data, got {fake.shape[1:]}")
            return jnp.mean(generator_loss(critic_scores(critic_apply, c_params, fake), objective.kind)), fake

        (g_loss, _), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_params)
        g_grads, g_loss = mean(g_grads), mean(g_loss)
        updates, g_opt = generator_optimizer.update(g_grads, g_opt, g_params)
        g_params = optax.apply_updates(g_params, updates)
        metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
        metrics.update(
            loss=metrics["critic_loss"],
            generator_loss=g_loss,
            generator_grad_norm=optax.tree.norm(g_grads),
            generator_param_norm=optax.tree.norm(g_params),
            critic_param_norm=optax.tree.norm(c_params),
        )
        new_state = state.replace(
            step=state.step + 1,
            params={"generator": g_params, "critic": c_params},
            opt_state={"generator": g_opt, "critic": c_opt},
        )
        return new_state, metrics

    return update
