"""ClusterGAN: latent sampling, the encoder loss, the three-player update and a tiny run."""

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import experiment
from genjax.experiment import clustergan as cg_experiment
from genjax.models import clustergan as cg
from genjax.models import gan as gan_lib
from genjax.train import MultiPlayerUpdate, build_train_step, create_train_state

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "cluster_mnist" / "config.py")
LATENT, K, SIGMA = 3, 4, 0.1


def test_latent_is_one_hot_uniform_and_normal():
    num, k, dim, sigma = 20_000, 10, 30, 0.1
    z_n, z_c = cg.sample_latent(jax.random.key(0), num, dim, k, sigma)
    z_n, z_c = np.asarray(z_n), np.asarray(z_c)
    assert z_n.shape == (num, dim) and z_c.shape == (num, k)
    assert set(np.unique(z_c)) == {0.0, 1.0}
    np.testing.assert_array_equal(z_c.sum(axis=1), 1.0)
    counts = z_c.sum(axis=0)
    # Each count is Binomial(num, 1/k): within 5 standard deviations of num / k.
    bound = 5 * np.sqrt(num * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - num / k) < bound), counts
    # z_n's standard deviation over 600,000 draws is sigma to within 1%.
    np.testing.assert_allclose(z_n.std(), sigma, rtol=0.01)
    assert abs(z_n.mean()) < 5 * sigma / np.sqrt(z_n.size)


def test_fixed_clusters_are_respected():
    clusters = np.arange(50) % 7
    _, z_c = cg.sample_latent(jax.random.key(1), 50, 2, 7, 0.5, clusters)
    np.testing.assert_array_equal(np.argmax(z_c, axis=1), clusters)
    np.testing.assert_array_equal(np.asarray(z_c).sum(axis=1), 1.0)
    np.testing.assert_array_equal(cg_experiment.cluster_order(20, 10), np.repeat(np.arange(10), 2))
    with pytest.raises(ValueError, match=r"clusters: expected indices in \[0, 7\)"):
        cg.sample_latent(jax.random.key(1), 50, 2, 7, 0.5, clusters + 1)
    with pytest.raises(ValueError, match="clusters: expected 50"):
        cg.sample_latent(jax.random.key(1), 50, 2, 7, 0.5, clusters[:10])


@pytest.mark.parametrize(
    "args, match",
    [((4, 2, 1, 0.1), "num_clusters: expected an int >= 2"), ((4, 0, 3, 0.1), "latent_dim"), ((4, 2, 3, 0.0), "sigma"), ((0, 2, 3, 0.1), "num: ")],
)
def test_bad_latent_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        cg.sample_latent(jax.random.key(0), *args)


def test_encoder_loss_closed_forms():
    z_n, z_c = cg.sample_latent(jax.random.key(2), 8, 5, K, 0.3)
    logits = jax.random.normal(jax.random.key(3), (8, K))
    # The z_n term vanishes, with zero gradient, at z_n_hat = z_n.
    loss = cg.encoder_loss(z_n, z_c, z_n, logits, 10.0, 10.0)
    np.testing.assert_array_equal(loss.latent, 0.0)
    grad_n = jax.grad(lambda zh: jnp.sum(cg.encoder_loss(z_n, z_c, zh, logits, 10.0, 10.0).total))(z_n)
    np.testing.assert_array_equal(grad_n, 0.0)
    # The z_n term is the squared distance; the z_c term's logit gradient is beta_c (softmax - z_c).
    shift = jnp.full_like(z_n, 0.5)
    np.testing.assert_allclose(cg.encoder_loss(z_n, z_c, z_n + shift, logits, 1.0, 1.0).latent, 5 * 0.25, rtol=1e-6)
    grad_c = jax.grad(lambda lg: jnp.sum(cg.encoder_loss(z_n, z_c, z_n, lg, 10.0, 3.0).total))(logits)
    np.testing.assert_allclose(grad_c, 3.0 * (jax.nn.softmax(logits) - z_c), rtol=1e-5, atol=1e-6)
    # Logits t * z_c give H = log(1 + (K - 1) e^-t), decreasing to 0 at the perfect code.
    for t in (0.0, 2.0, 20.0):
        ce = cg.encoder_loss(z_n, z_c, z_n, t * z_c, 1.0, 1.0).cluster
        np.testing.assert_allclose(ce, np.log1p((K - 1) * np.exp(-t)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss.total, 10.0 * loss.cluster, rtol=1e-6)


def test_loss_gradient_vanishes_at_a_linear_inverse():
    # G(z) = A z with A invertible and E(x) = B x: at B = A^-1 the encoder recovers z_n
    # exactly, so the z_n term and its gradient in E's parameters are zero.
    dim = LATENT + K
    a = jax.random.normal(jax.random.key(4), (dim, dim)) + 3.0 * jnp.eye(dim)
    b = jnp.linalg.inv(a)
    z_n, z_c = cg.sample_latent(jax.random.key(5), 16, LATENT, K, SIGMA)
    x = cg.join_latent(z_n, z_c) @ a.T

    def latent_term(b):
        out = x @ b.T
        return jnp.mean(cg.encoder_loss(z_n, z_c, out[:, :LATENT], out[:, LATENT:], 1.0, 0.0).total)

    assert float(latent_term(b)) < 1e-8
    np.testing.assert_allclose(jax.grad(latent_term)(b), 0.0, atol=1e-5)
    assert float(latent_term(b + 0.01)) > 1e-6


class TinyGenerator(nn.Module):
    @nn.compact
    def __call__(self, z):
        return jnp.tanh(nn.Dense(6)(nn.relu(nn.Dense(8)(z))))


class TinyCritic(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))[:, 0]


GEN, CRITIC, ENC = TinyGenerator(), TinyCritic(), cg.ClusterEncoder(latent_dim=LATENT, num_clusters=K, hidden=(8,))
OPTS = {name: optax.adam(1e-3, b1=0.5, b2=0.9) for name in ("generator", "critic", "encoder")}
N_CRITIC = 3


def _builder():
    return functools.partial(
        cg.make_clustergan_update,
        GEN.apply,
        CRITIC.apply,
        ENC.apply,
        objective=gan_lib.GANObjective(kind="wgan_gp", n_critic=N_CRITIC),
        latent_dim=LATENT,
        num_clusters=K,
        sigma=SIGMA,
        beta_n=10.0,
        beta_c=10.0,
        generator_optimizer=OPTS["generator"],
        critic_optimizer=OPTS["critic"],
        encoder_optimizer=OPTS["encoder"],
    )


def _params():
    kg, kc, ke = jax.random.split(jax.random.key(0), 3)
    return {
        "generator": GEN.init(kg, jnp.zeros((1, LATENT + K))),
        "critic": CRITIC.init(kc, jnp.zeros((1, 6))),
        "encoder": ENC.init(ke, jnp.zeros((1, 6))),
    }


def _run(parallel, devices, num_steps=3):
    step = build_train_step(MultiPlayerUpdate(_builder(), OPTS), parallel=parallel, devices=devices)
    state = step.place_state(create_train_state(_params(), OPTS))
    out = []
    for i in range(num_steps):
        batch = {"image": np.random.default_rng(i).uniform(-1, 1, (16, N_CRITIC, 6)).astype(np.float32)}
        state, metrics = step.step(state, step.place_batch(batch), jax.random.key(7))
        out.append([float(metrics[k]) for k in ("loss", "generator_loss", "encoder_loss", "cluster_loss")])
    return np.array(out), step.fetch_state(state)


@pytest.fixture(scope="module")
def jit_run():
    return _run("jit", jax.devices()[:1])


@pytest.mark.parametrize("parallel, num_devices", [("pmap", 1), ("pmap", 8), ("jit", 8)])
def test_back_ends_match_the_single_device_jit_step(jit_run, parallel, num_devices):
    metrics_1, state_1 = jit_run
    metrics, state = _run(parallel, jax.devices()[:num_devices])
    assert np.all(np.isfinite(metrics_1))
    np.testing.assert_allclose(metrics, metrics_1, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_1.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_update_trains_every_player(jit_run):
    _, state = jit_run
    assert int(state.step) == 3
    assert int(state.opt_state["critic"][0].count) == 3 * N_CRITIC
    assert int(state.opt_state["encoder"][0].count) == 3
    for name, new in state.params.items():
        moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new, _params()[name])
        assert max(jax.tree.leaves(moved)) > 1e-4, name


def test_too_few_clusters_name_the_field(tmp_path):
    config = experiment.load_config(f"{CONFIG}:clustergan_tiny", ["model.num_clusters=1"])
    with pytest.raises(ValueError, match="model.num_clusters"):
        cg_experiment.build(config)


def test_tiny_run_clusters_the_synthetic_data(tmp_path):
    # One device: the back ends are compared on the update above; 3000 tiny steps
    # sharded over 8 simulated CPU devices would spend their time in collectives.
    config = experiment.load_config(f"{CONFIG}:clustergan_tiny", ["num_devices=1"])
    metrics = experiment.train(config, tmp_path)
    print(f"clustergan_tiny: acc {metrics['acc']:.4f}, test_acc {metrics['test_acc']:.4f}")
    assert metrics["acc"] >= 0.99, metrics
    assert metrics["test_acc"] >= 0.99, metrics
    for name in ("samples.png", "cluster_samples.png", "confusion.png", "latent.png", "eval.json"):
        assert (tmp_path / name).is_file(), name
    run = experiment.load_run(tmp_path)
    images = run.experiment.sample(run.params, jax.random.key(0), 100)
    assert images.shape == (100, 8, 8, 1) and images.min() >= 0.0 and images.max() <= 1.0
    # Row k of the grid is generated with z_c = e_k, and the encoder maps it back to k.
    model = run.experiment.model
    recovered = np.asarray(cg.cluster_assignment(model.encoder.apply, run.params["encoder"], jnp.asarray(images) * 2.0 - 1.0))
    assert np.mean(recovered == cg_experiment.cluster_order(100, 10)) >= 0.95
