"""GAN and WGAN-GP math and the two-player update: closed forms, counts, back ends, errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax.models import gan as G
from genjax.train import (
    Checkpointer,
    MultiPlayerUpdate,
    build_train_step,
    create_train_state,
    example_keys,
    train,
)


class Linear(nn.Module):
    """f(x) = w . x + b: a critic whose input gradient is w everywhere."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


class TinyCritic(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))[:, 0]


class TinyGenerator(nn.Module):
    @nn.compact
    def __call__(self, z):
        return nn.Dense(2)(nn.relu(nn.Dense(8)(z)))


GEN, CRITIC = TinyGenerator(), TinyCritic()
G_OPT, C_OPT = optax.adam(1e-3, b1=0.0, b2=0.9), optax.adam(1e-3, b1=0.0, b2=0.9)


def _params(seed=0):
    kg, kc = jax.random.split(jax.random.key(seed))
    return {"generator": GEN.init(kg, jnp.zeros((1, 2))), "critic": CRITIC.init(kc, jnp.zeros((1, 2)))}


def _builder(objective):
    return functools.partial(G.make_gan_update, GEN.apply, CRITIC.apply, objective=objective, latent_dim=2, generator_optimizer=G_OPT, critic_optimizer=C_OPT)


def _batch(step, batch=16, n_critic=3):
    rng = np.random.default_rng(step)
    return {"image": rng.normal(size=(batch, n_critic, 2)).astype(np.float32) + 1.0}


def test_gradient_penalty_of_linear_critic_is_closed_form(key):
    params = Linear().init(key, jnp.zeros((1, 3, 2, 1)))
    w = np.asarray(params["params"]["Dense_0"]["kernel"])[:, 0]
    x = jax.random.normal(jax.random.fold_in(key, 1), (5, 3, 2, 1))
    penalty = G.gradient_penalty(Linear().apply, params, x)
    expected = (np.linalg.norm(w) - 1.0) ** 2
    np.testing.assert_allclose(penalty, np.full(5, expected), rtol=1e-5)
    assert expected > 0.01, "the test needs a critic whose gradient norm is not 1"


def test_gradient_penalty_is_per_example(key):
    # f(x) = ||x||^2 / 2 has gradient x: each example's penalty is (||x_b|| - 1)^2. A
    # penalty on the gradient of the batch sum would mix nothing here, so also check that
    # scaling example 0 leaves the others unchanged.
    def critic(_, x):
        return 0.5 * jnp.sum(x**2, axis=-1)

    x = jax.random.normal(key, (6, 3))
    expected = (np.linalg.norm(np.asarray(x), axis=-1) - 1.0) ** 2
    np.testing.assert_allclose(G.gradient_penalty(critic, None, x), expected, rtol=1e-5)
    moved = G.gradient_penalty(critic, None, x.at[0].multiply(3.0))
    np.testing.assert_allclose(moved[1:], expected[1:], rtol=1e-5)


def test_interpolates_lie_on_segments(key):
    real = jax.random.normal(key, (7, 4, 4, 1))
    fake = jax.random.normal(jax.random.fold_in(key, 1), (7, 4, 4, 1))
    eps = jax.random.uniform(jax.random.fold_in(key, 2), (7,))
    x_hat = np.asarray(G.interpolate(real, fake, eps))
    d_real = np.asarray(real - fake).reshape(7, -1)
    d_hat = (x_hat - np.asarray(fake)).reshape(7, -1)
    # x^ - x~ is parallel to x - x~ with coefficient eps in [0, 1].
    coef = np.sum(d_hat * d_real, -1) / np.sum(d_real * d_real, -1)
    np.testing.assert_allclose(coef, eps, rtol=1e-5)
    np.testing.assert_allclose(d_hat, coef[:, None] * d_real, atol=1e-5)
    np.testing.assert_allclose(G.interpolate(real, fake, jnp.ones(7)), real)
    np.testing.assert_allclose(G.interpolate(real, fake, jnp.zeros(7)), fake)


def test_gan_losses_match_log_probabilities():
    logits = jnp.array([-3.0, -0.5, 0.0, 2.0, 8.0])
    d = jax.nn.sigmoid(logits)
    np.testing.assert_allclose(G.discriminator_loss(logits, logits), -np.log(d) - np.log1p(-d), rtol=1e-4)
    np.testing.assert_allclose(G.generator_loss(logits, "minimax"), np.log1p(-d), rtol=1e-4)
    np.testing.assert_allclose(G.generator_loss(logits, "non_saturating"), -np.log(d), rtol=1e-4)
    np.testing.assert_allclose(G.generator_loss(logits, "wgan_gp"), -logits)


def test_wgan_gp_critic_loss_terms(key):
    x = jax.random.normal(key, (8, 2))
    fake = jax.random.normal(jax.random.fold_in(key, 1), (8, 2)) + 2.0
    eps = jax.random.uniform(jax.random.fold_in(key, 2), (8,))
    params = Linear().init(key, jnp.zeros((1, 2)))
    obj = G.GANObjective(kind="wgan_gp", gp_weight=10.0)
    loss, metrics = G.critic_loss(obj, Linear().apply, params, x, fake, eps)
    scores = lambda v: Linear().apply(params, v)
    w = np.asarray(params["params"]["Dense_0"]["kernel"])[:, 0]
    expected = float(jnp.mean(scores(fake)) - jnp.mean(scores(x))) + 10.0 * (np.linalg.norm(w) - 1.0) ** 2
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["wasserstein"], -float(jnp.mean(scores(fake)) - jnp.mean(scores(x))), rtol=1e-5)


@pytest.mark.parametrize("kind", ["wgan_gp", "wgan_clip", "non_saturating"])
def test_n_critic_updates_per_generator_update(kind):
    n_critic = 3
    obj = G.GANObjective(kind=kind, n_critic=n_critic)
    update = jax.jit(_builder(obj)())
    state = create_train_state(_params(), {"generator": G_OPT, "critic": C_OPT})
    critic_before = state.params["critic"]
    for step in range(4):
        state, metrics = update(state, _batch(step), example_keys(jax.random.key(1), state.step, 16))
    # Adam counts its own updates: the critic's ran n_critic times per generator update.
    assert int(state.opt_state["critic"][0].count) == 4 * n_critic
    assert int(state.opt_state["generator"][0].count) == 4
    assert int(state.step) == 4
    assert all(np.isfinite(float(v)) for v in metrics.values())
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params["critic"], critic_before)
    assert max(jax.tree.leaves(moved)) > 1e-4
    if kind == "wgan_clip":
        assert max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(state.params["critic"])) <= obj.clip_value
    if kind == "wgan_gp":
        assert "gradient_penalty" in metrics
    if kind == "non_saturating":
        assert 0.0 < float(metrics["d_real"]) < 1.0


def test_critic_updates_each_see_their_own_minibatch():
    # With n_critic=2 and an SGD critic, replacing the second minibatch changes the
    # result, and swapping the two minibatches changes it too: every slice is used, in order.
    obj = G.GANObjective(kind="wgan_gp", n_critic=2)
    sgd = optax.sgd(0.1)
    builder = functools.partial(G.make_gan_update, GEN.apply, CRITIC.apply, objective=obj, latent_dim=2, generator_optimizer=sgd, critic_optimizer=sgd)
    update = jax.jit(builder())
    state = create_train_state(_params(), {"generator": sgd, "critic": sgd})
    keys = example_keys(jax.random.key(1), state.step, 16)
    batch = _batch(0, n_critic=2)
    base = update(state, batch, keys)[0].params["critic"]
    changed = {"image": batch["image"].copy()}
    changed["image"][:, 1] += 3.0
    swapped = {"image": batch["image"][:, ::-1]}
    for other in (changed, swapped):
        diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), base, update(state, other, keys)[0].params["critic"])
        assert max(jax.tree.leaves(diff)) > 1e-4


def _run(parallel, devices, num_steps=5):
    obj = G.GANObjective(kind="wgan_gp", n_critic=3)
    step = build_train_step(MultiPlayerUpdate(_builder(obj), {"generator": G_OPT, "critic": C_OPT}), parallel=parallel, devices=devices)
    state = step.place_state(create_train_state(_params(), {"generator": G_OPT, "critic": C_OPT}))
    losses = []
    for i in range(num_steps):
        state, metrics = step.step(state, step.place_batch(_batch(i)), jax.random.key(7))
        losses.append([float(metrics["loss"]), float(metrics["generator_loss"])])
    return np.array(losses), step.fetch_state(state)


@pytest.fixture(scope="module")
def one_device_run():
    return _run("jit", jax.devices()[:1])


@pytest.mark.parametrize("parallel", ["jit", "pmap"])
def test_eight_devices_match_one_device(parallel, one_device_run):
    losses_1, state_1 = one_device_run
    losses_8, state_8 = _run(parallel, jax.devices())
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(state_8.params), jax.tree.leaves(state_1.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(state_8.opt_state["critic"][0].count) == 15


def test_jit_matches_eager():
    update = _builder(G.GANObjective(kind="wgan_gp", n_critic=2))()
    state = create_train_state(_params(), {"generator": G_OPT, "critic": C_OPT})
    keys = example_keys(jax.random.key(3), state.step, 16)
    batch = {"image": jnp.asarray(_batch(0, n_critic=2)["image"])}
    with jax.disable_jit():
        eager, eager_metrics = update(state, batch, keys)
    jitted, jit_metrics = jax.jit(update)(state, batch, keys)
    for a, b in zip(jax.tree.leaves(eager.params), jax.tree.leaves(jitted.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eager_metrics["loss"], jit_metrics["loss"], rtol=1e-5)


def test_interrupted_run_resumes_to_identical_params(tmp_path):
    obj = G.GANObjective(kind="wgan_gp", n_critic=2)
    step = build_train_step(MultiPlayerUpdate(_builder(obj), {"generator": G_OPT, "critic": C_OPT}), devices=jax.devices()[:1])
    init = create_train_state(_params(), {"generator": G_OPT, "critic": C_OPT})

    def run(num_steps, directory):
        return train(
            train_step=step,
            state=init,
            batches=lambda s: _batch(s, n_critic=2),
            key=jax.random.key(5),
            num_steps=num_steps,
            checkpoint_every=3,
            checkpointer=Checkpointer(directory),
            progress=False,
        )

    straight = run(6, tmp_path / "a")
    run(3, tmp_path / "b")
    resumed = run(6, tmp_path / "b")
    assert resumed.start_step == 3
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)


def test_bad_objective_arguments():
    with pytest.raises(ValueError, match="gp_weight"):
        G.GANObjective(gp_weight=0.0)
    with pytest.raises(ValueError, match="gp_weight"):
        G.GANObjective(gp_weight=-10.0)
    with pytest.raises(ValueError, match="gp_weight"):
        G.GANObjective(gp_weight=float("inf"))
    with pytest.raises(ValueError, match="gp_weight"):
        G.GANObjective(gp_weight=True)
    with pytest.raises(ValueError, match="n_critic"):
        G.GANObjective(n_critic=0)
    with pytest.raises(ValueError, match="n_critic"):
        G.GANObjective(n_critic=2.0)
    with pytest.raises(ValueError, match="kind"):
        G.GANObjective(kind="lsgan")
    with pytest.raises(ValueError, match="clip_value"):
        G.GANObjective(kind="wgan_clip", clip_value=0.0)
    with pytest.raises(ValueError, match=r"eps: expected one weight per example, shape \(4,\)"):
        G.interpolate(jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros(()))
    with pytest.raises(ValueError, match="latent_dim"):
        G.make_gan_update(GEN.apply, CRITIC.apply, objective=G.GANObjective(), latent_dim=0, generator_optimizer=G_OPT, critic_optimizer=C_OPT)


def test_critic_must_be_scalar_per_example(key):
    def vector_critic(_, x):
        return x  # [B, 2]: two numbers per example

    with pytest.raises(ValueError, match="critic: expected one scalar per example"):
        G.critic_loss(G.GANObjective(), vector_critic, None, jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.zeros(4))
    with pytest.raises(ValueError, match="critic"):
        G.gradient_penalty(lambda _, x: jnp.sum(x), None, jnp.zeros((4, 2)))
    # [B, 1] is accepted and squeezed.
    assert G.critic_scores(lambda _, x: x[:, :1], None, jnp.zeros((4, 2))).shape == (4,)


def test_mismatched_real_and_fake(key):
    with pytest.raises(ValueError, match="fake: expected the shape of the real batch"):
        G.interpolate(jnp.zeros((4, 2)), jnp.zeros((3, 2)), jnp.zeros(4))
    with pytest.raises(ValueError, match="fake"):
        G.critic_loss(G.GANObjective(), CRITIC.apply, _params()["critic"], jnp.zeros((4, 2)), jnp.zeros((4, 3)), jnp.zeros(4))
    update = _builder(G.GANObjective(n_critic=3))()
    state = create_train_state(_params(), {"generator": G_OPT, "critic": C_OPT})
    with pytest.raises(ValueError, match=r"batch: expected real data of shape \[batch, n_critic=3"):
        update(state, {"image": jnp.zeros((16, 2))}, example_keys(key, state.step, 16))
    with pytest.raises(ValueError, match="fake"):
        update(state, {"image": jnp.zeros((16, 3, 5))}, example_keys(key, state.step, 16))


def test_step_noise_is_fresh_for_every_update_and_example(key):
    keys = jax.random.split(key, 16)
    noise = G.step_noise(keys, 3, 2)
    assert noise.critic_z.shape == (3, 16, 2) and noise.critic_eps.shape == (3, 16) and noise.generator_z.shape == (16, 2)
    z = np.concatenate([np.asarray(noise.critic_z).reshape(-1, 2), np.asarray(noise.generator_z)])
    assert len(np.unique(z[:, 0])) == z.shape[0], "a latent was reused between updates or examples"
    eps = np.asarray(noise.critic_eps)
    assert len(np.unique(eps)) == eps.size and eps.min() >= 0.0 and eps.max() <= 1.0
    # Example b's noise depends on keys[b] only: a device holding half the batch agrees.
    half = G.step_noise(keys[8:], 3, 2)
    np.testing.assert_array_equal(half.critic_z, noise.critic_z[:, 8:])
    np.testing.assert_array_equal(half.generator_z, noise.generator_z[8:])


def test_update_follows_algorithm_1_order_and_noise():
    """Critic step on its own z and eps, then the generator against the *updated* critic."""
    lr = 0.05
    sgd = optax.sgd(lr)
    obj = G.GANObjective(kind="wgan_gp", n_critic=1)
    update = jax.jit(
        functools.partial(G.make_gan_update, GEN.apply, CRITIC.apply, objective=obj, latent_dim=2, generator_optimizer=sgd, critic_optimizer=sgd)()
    )
    params = _params()
    state = create_train_state(params, {"generator": sgd, "critic": sgd})
    keys = example_keys(jax.random.key(1), state.step, 16)
    batch = _batch(0, n_critic=1)
    new = update(state, batch, keys)[0].params
    noise = G.step_noise(keys, 1, 2)
    fake = GEN.apply(params["generator"], noise.critic_z[0])
    c_grad = jax.grad(lambda c: G.critic_loss(obj, CRITIC.apply, c, jnp.asarray(batch["image"][:, 0]), fake, noise.critic_eps[0])[0])(params["critic"])
    expected_critic = jax.tree.map(lambda p, g: p - lr * g, params["critic"], c_grad)
    for a, b in zip(jax.tree.leaves(new["critic"]), jax.tree.leaves(expected_critic)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def g_loss(g, c):
        return jnp.mean(G.generator_loss(G.critic_scores(CRITIC.apply, c, GEN.apply(g, noise.generator_z)), "wgan_gp"))

    g_grad = jax.grad(g_loss)(params["generator"], expected_critic)
    for a, b in zip(jax.tree.leaves(new["generator"]), jax.tree.leaves(jax.tree.map(lambda p, g: p - lr * g, params["generator"], g_grad))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Against the critic from before its update the generator step would differ.
    stale = jax.grad(g_loss)(params["generator"], params["critic"])
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(stale), jax.tree.leaves(g_grad))) > 1e-5


def test_gradient_penalty_gradient_is_finite_where_the_input_gradient_vanishes():
    # A ReLU critic whose unit is dead at the first point: grad_x f = 0 there. sqrt's
    # derivative at 0 is infinite; the penalty must still give finite parameter gradients.
    def critic(p, x):
        return jax.nn.relu(x @ p["w"] + p["b"][None, :])[:, 0]

    params = {"w": jnp.array([[1.0], [0.5]]), "b": jnp.array([-1.0])}
    x = jnp.array([[-2.0, -2.0], [3.0, 1.0]])
    np.testing.assert_allclose(G.gradient_penalty(critic, params, x), [1.0, (np.sqrt(1.25) - 1.0) ** 2], rtol=1e-6)
    grads = jax.grad(lambda p: jnp.mean(G.gradient_penalty(critic, p, x)))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.slow
@pytest.mark.parametrize("kind, b1", [("non_saturating", 0.5), ("wgan_gp", 0.0)])
def test_training_on_eight_gaussians_covers_most_modes(kind, b1):
    """GAN (k = 1) and WGAN-GP (n_critic = 5) spread from at most 2 modes to 6 of 8 in 2,000 steps.

    A mode counts as covered when at least 10% of its fair share of 10,000 samples lie
    within 10 of its standard deviations (0.14; neighbouring modes are 1.08 apart). The
    untrained generator covers at most 2, so the check can fail. All 8 is not a stable
    outcome at 2,000 steps: with this setup and init seeds 0-5 (without this suite's XLA
    flags) the GAN covered 6, 8, 6, 7, 7, 8 modes and WGAN-GP 6, 8, 8, 8, 8, 8, and which
    modes a run drops changes with the CPU's floating-point round-off.
    """
    from genjax.data.toy2d import sample_toy2d, toy2d_mode_std, toy2d_modes
    from genjax.metrics import mode_metrics
    from genjax.nn.gan_nets import MLPCritic, MLPGenerator

    n_critic = 1 if kind == "non_saturating" else 5
    gen, critic = MLPGenerator(hidden=(64, 64, 64), output_shape=(2,)), MLPCritic(hidden=(64, 64, 64))
    opt = optax.adam(1e-3, b1=b1, b2=0.9)
    key = jax.random.key(0)
    params = {"generator": gen.init(key, jnp.zeros((1, 2))), "critic": critic.init(key, jnp.zeros((1, 2)))}
    builder = functools.partial(
        G.make_gan_update,
        gen.apply,
        critic.apply,
        objective=G.GANObjective(kind=kind, n_critic=n_critic),
        latent_dim=2,
        generator_optimizer=opt,
        critic_optimizer=opt,
    )
    step = build_train_step(MultiPlayerUpdate(builder, {"generator": opt, "critic": opt}), devices=jax.devices()[:1])
    state = step.place_state(create_train_state(params, {"generator": opt, "critic": opt}))
    data = jax.jit(lambda k: sample_toy2d(k, "eight_gaussians", 128 * n_critic).reshape(128, n_critic, 2))

    def covered(generator_params):
        x = np.asarray(G.sample(gen.apply, generator_params, jax.random.key(9), 10_000, 2))
        return mode_metrics(x, toy2d_modes("eight_gaussians"), toy2d_mode_std("eight_gaussians"), num_std=10.0)

    assert covered(params["generator"]).modes_covered <= 2
    for i in range(2000):
        state, _ = step.step(state, {"image": data(jax.random.fold_in(key, i))}, key)
    result = covered(step.fetch_state(state).params["generator"])
    assert result.modes_covered >= 6, result
