"""Classifier-free guidance: the closed form, one network call per step, w = 0, every
sampler, condition dropout, and the class-conditional DDPM from the command line."""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import cli, samplers
from genjax.models import diffusion as diff
from genjax.nn.unet import UNet

T = 50
ABAR = diff.make_schedule(diff.beta_schedule("linear", T, beta_start=1e-3, beta_end=0.1)).alphas_cumprod
SHAPE = (4, 4, 1)


def _toy(x_t, t, label):
    """A conditional denoiser with distinct conditional and unconditional outputs."""
    scale = 1.0 + 0.1 * jnp.asarray(label, jnp.float32)
    return samplers.Prediction(eps=jnp.tanh(x_t * scale + 0.01 * t))


@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])
def test_guided_eps_is_the_closed_form(w):
    x = jax.random.normal(jax.random.key(0), SHAPE)
    t = jnp.float32(17.0)
    got = samplers.guided(_toy, jnp.int32(2), jnp.int32(9), w)(x, t).eps
    eps_c, eps_u = _toy(x, t, 2).eps, _toy(x, t, 9).eps
    np.testing.assert_allclose(got, (1 + w) * eps_c - w * eps_u, rtol=1e-6, atol=1e-6)


def test_guidance_interval_switches_it_off_outside():
    x = jax.random.normal(jax.random.key(0), SHAPE)
    denoiser = samplers.guided(_toy, jnp.int32(2), jnp.int32(9), 4.0, interval=(10.0, 20.0))
    unguided = samplers.guided(_toy, jnp.int32(2), jnp.int32(9), jnp.float32(0.0))
    np.testing.assert_array_equal(denoiser(x, jnp.float32(30.0)).eps, unguided(x, jnp.float32(30.0)).eps)
    np.testing.assert_allclose(denoiser(x, jnp.float32(30.0)).eps, _toy(x, 30.0, 2).eps, rtol=1e-6, atol=1e-7)
    assert not np.allclose(denoiser(x, jnp.float32(15.0)).eps, _toy(x, 15.0, 2).eps)


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_every_sampler_guides_with_one_network_call_per_evaluation(name):
    calls = []

    def network(x_t, t, label):
        calls.append(np.shape(label))
        return _toy(x_t, t, label)

    def plain(x_t, t):
        calls.append("plain")
        return _toy(x_t, t, 2)

    key = jax.random.key(3)
    sampler = samplers.get_sampler(name)
    jax.eval_shape(lambda: samplers.sample(plain, ABAR, key, SHAPE, sampler=sampler, steps=4))
    unguided = len(calls)
    calls.clear()
    guided = samplers.guided(network, jnp.int32(2), jnp.int32(9), 1.5)
    jax.eval_shape(lambda: samplers.sample(guided, ABAR, key, SHAPE, sampler=sampler, steps=4))
    # The same number of network calls as without guidance, each on the (c, null) pair.
    assert len(calls) == unguided and all(c == () for c in calls), calls

    # Guided sampling is sampling with the guided noise: the closed form as a denoiser.
    def closed_form(x_t, t):
        return samplers.Prediction(eps=2.5 * _toy(x_t, t, 2).eps - 1.5 * _toy(x_t, t, 9).eps)

    a = samplers.sample(guided, ABAR, key, SHAPE, sampler=sampler, steps=4)
    b = samplers.sample(closed_form, ABAR, key, SHAPE, sampler=sampler, steps=4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_zero_guidance_is_the_conditional_sampler_exactly():
    unet = UNet(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=4, num_classes=4)
    params = unet.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), params)  # no zero-init layers

    def conditional(x_t, t, label):
        apply = lambda x, tb: unet.apply(params, x, tb, jnp.broadcast_to(label, tb.shape))
        return samplers.denoiser_from_apply(apply, alphas_cumprod=ABAR)(x_t, t)

    key = jax.random.key(5)
    labels = jnp.array([0, 1, 2, 1])
    keys = jax.random.split(key, 4)
    for name in ("ddpm", "ddim"):
        plain = jax.jit(jax.vmap(lambda k, y, name=name: samplers.sample(lambda x, t: conditional(x, t, y), ABAR, k, (8, 8, 1), sampler=name, steps=5)))
        guided = jax.jit(
            jax.vmap(lambda k, y, name=name: samplers.sample(samplers.guided(conditional, y, jnp.int32(3), 0.0), ABAR, k, (8, 8, 1), sampler=name, steps=5))
        )
        np.testing.assert_array_equal(guided(keys, labels), plain(keys, labels))
        # A traced scale of 0 runs the network on the pair: the same to round-off.
        traced = jax.jit(
            jax.vmap(lambda k, y, w, name=name: samplers.sample(samplers.guided(conditional, y, jnp.int32(3), w), ABAR, k, (8, 8, 1), sampler=name, steps=5))
        )
        np.testing.assert_allclose(traced(keys, labels, jnp.zeros(4)), plain(keys, labels), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_condition_dropout_rate(p):
    n = 20_000
    labels = jnp.full((n,), 3, jnp.int32)
    keys = jax.random.split(jax.random.key(11), n)
    dropped = jax.vmap(lambda y, k: diff.condition_dropout(y, k, p, 10))(labels, keys)
    assert set(np.unique(dropped).tolist()) <= {3, 10}
    rate = float(np.mean(dropped == 10))
    # Four standard errors of a binomial proportion; exact at 0 and 1.
    assert abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / n), rate


def test_bad_guidance_arguments():
    with pytest.raises(ValueError, match="guidance: expected a finite scale w >= -1"):
        samplers.check_guidance(-2.0)
    with pytest.raises(ValueError, match="guidance: expected a finite scale"):
        samplers.check_guidance(float("nan"))
    with pytest.raises(ValueError, match="guidance_interval: expected \\(t_lo, t_hi\\) with t_lo <= t_hi"):
        samplers.check_guidance(1.0, (5.0, 1.0))


ROOT = pathlib.Path(__file__).resolve().parents[1]
# The cfg_mnist tiny preset at MNIST's 28x28x1 (the sweep's classifier needs it), without
# attention (28x28 tokens would be the slowest part).
CONDITIONAL = [
    "--config",
    "experiments/cfg_mnist/config.py:tiny",
    "--config.data.image_shape=(28, 28, 1)",
    "--config.model.attn_resolutions=()",
]


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cfg")
    assert cli.main(["train", "--workdir", str(workdir), *CONDITIONAL]) == 0
    return workdir


def test_the_guidance_sweep_writes_the_issue_schema(conditional_run, tmp_path):
    spec = importlib.util.spec_from_file_location("cfg_sweep", ROOT / "experiments" / "cfg_mnist" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    argv = ["--workdir", str(conditional_run), "--out", str(tmp_path), "--guidance", "0,3", "--samplers", "ddim:2", "--per-class", "2", "--batch", "8"]
    assert sweep.main(argv) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert [(r["sampler"], r["steps"], r["guidance"]) for r in result["rows"]] == [("ddim", 2, 0.0), ("ddim", 2, 3.0)]
    for row in result["rows"]:
        assert 0.0 <= row["classifier_accuracy"] <= 1.0 and row["frechet_distance"] > 0 and row["diversity"] > 0 and row["num"] == 20
    assert result["command"].startswith("genjax train --config experiments/cfg_mnist/config.py") and result["wall_time_s"] > 0
    assert (tmp_path / "tradeoff.png").is_file() and (tmp_path / "grid.png").is_file()
    with pytest.raises(SystemExit):
        sweep.main(["--workdir", str(conditional_run), "--samplers", "ddim"])


def test_diversity_is_the_mean_within_class_pairwise_distance():
    spec = importlib.util.spec_from_file_location("cfg_sweep", ROOT / "experiments" / "cfg_mnist" / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    features = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0], [1.0, 3.0]])
    labels = np.array([0, 0, 1, 1, 1])
    # class 0: one pair at distance 5; class 1: distances 0, 2, 2 -> mean 4/3.
    assert sweep.diversity(features, labels) == pytest.approx((5.0 + 4.0 / 3.0) / 2)


def test_class_conditional_ddpm_trains_and_samples_with_guidance(conditional_run, capsys, tmp_path):
    config = json.loads((conditional_run / "config.json").read_text())
    assert config["model"]["num_classes"] == 10 and config["model"]["cond_drop_prob"] == 0.1
    args = ["sample", "--workdir", str(conditional_run), "--num", "3", "--out", str(tmp_path)]
    assert cli.main([*args, "--class-label", "3", "--guidance", "2"]) == 0
    first = np.load(json.loads(capsys.readouterr().out)["npz"])["images"]
    assert cli.main([*args, "--class-label", "3", "--guidance", "0"]) == 0
    second = np.load(json.loads(capsys.readouterr().out)["npz"])["images"]
    assert first.shape == (3, 28, 28, 1) and np.isfinite(first).all() and not np.array_equal(first, second)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--class-label", "10"], "--class-label: expected ints in [0, 10), got [10]"),
        (["--class-label", "-1"], "--class-label: expected ints in [0, 10), got [-1]"),
        (["--guidance", "-3"], "guidance: expected a finite scale w >= -1"),
    ],
)
def test_bad_class_labels_and_guidance_are_one_line(args, message, conditional_run, capsys):
    code = cli.main(["sample", "--workdir", str(conditional_run), "--num", "2", *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1, err


def test_guidance_on_an_unconditional_model_is_refused(capsys, tmp_path):
    base = ["train", "--config", "experiments/ddpm_mnist/config.py:tiny", "--workdir", str(tmp_path / "w")]
    assert cli.main([*base, "--config.eval.guidance=2.0"]) == 1
    assert "eval.guidance: classifier-free guidance needs a class-conditional model" in capsys.readouterr().err
    assert cli.main([*base, "--config.model.num_classes=-1"]) == 1
    assert "model.num_classes: expected 0 (unconditional) or a positive int, got -1" in capsys.readouterr().err


def test_the_configured_guidance_interval_guides_only_inside_it(capsys, tmp_path):
    from genjax.experiment.ddpm import guided_denoiser_of

    diffusion = diff.Diffusion(schedule=diff.make_schedule(diff.beta_schedule("linear", T, beta_start=1e-3, beta_end=0.1)))

    def apply_fn(params, x, t, dropout_key, y=None):
        return _toy(x, t[:, None, None, None], y[:, None, None, None]).eps

    x = jax.random.normal(jax.random.key(0), (1,) + SHAPE)[0]
    condition = {"label": jnp.int32(2), "guidance": jnp.float32(3.0)}
    inside = guided_denoiser_of(diffusion, apply_fn, 9, (10.0, 20.0))(None, condition)
    everywhere = guided_denoiser_of(diffusion, apply_fn, 9)(None, condition)
    unguided = guided_denoiser_of(diffusion, apply_fn, 9)(None, {"label": jnp.int32(2)})
    np.testing.assert_array_equal(inside(x, jnp.float32(15.0)).eps, everywhere(x, jnp.float32(15.0)).eps)
    np.testing.assert_allclose(inside(x, jnp.float32(30.0)).eps, unguided(x, jnp.float32(30.0)).eps, rtol=1e-6)
    assert not np.allclose(everywhere(x, jnp.float32(30.0)).eps, unguided(x, jnp.float32(30.0)).eps)
    base = ["train", "--config", "experiments/cfg_mnist/config.py:tiny", "--workdir", str(tmp_path / "w")]
    assert cli.main([*base, "--config.eval.guidance_interval=(5, 1)"]) == 1
    assert "eval.guidance_interval: expected () or (t_lo, t_hi) with 0 <= t_lo <= t_hi, got (5, 1)" in capsys.readouterr().err
