"""Discrete-latent models (genjax.models.gumbel) against enumeration, and their losses
through the stateful training step on 1 and 8 devices."""

import importlib.util
import itertools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.distributions import bernoulli_log_prob
from genjax.models import gumbel as G
from genjax.train import Checkpointer, LossUpdate, build_train_step, create_train_state, make_optimizer, train

CAT = G.DiscreteLatent("categorical", num_vars=2, num_classes=3)
BERN = G.DiscreteLatent("bernoulli", num_vars=3)
VAE = G.DiscreteVAE(latent=CAT, data_dim=6, hidden=(8,))
SBN = G.SBN(latent=BERN, num_layers=2, in_dim=4, out_dim=4)


def _vae_params():
    params = VAE.init(jax.random.key(0), jnp.zeros((6,)))
    # Larger weights than the default init, so that q(z|x) is far from uniform and a
    # mistake in the KL or the log-likelihood shows up.
    return jax.tree.map(lambda p: 3.0 * p, params)


def _sbn_params():
    return jax.tree.map(lambda p: 2.0 * p, SBN.init(jax.random.key(1), jnp.zeros((4,))))


def _x(n, d, seed=0):
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


def _all_values(latent):
    if latent.kind == "bernoulli":
        return [np.array(v, np.float32) for v in itertools.product([0.0, 1.0], repeat=latent.num_vars)]
    eye = np.eye(latent.num_classes, dtype=np.float32)
    return [np.stack([eye[c] for c in combo]) for combo in itertools.product(range(latent.num_classes), repeat=latent.num_vars)]


def _exact_elbo(params, x):
    logits = VAE.apply(params, x, method=G.DiscreteVAE.encode)
    probs = jax.nn.softmax(logits, -1)
    total = 0.0
    for z in _all_values(CAT):
        q = float(jnp.prod(jnp.sum(probs * z, -1)))
        log_lik = float(jnp.sum(bernoulli_log_prob(x, VAE.apply(params, z, method=G.DiscreteVAE.decode))))
        total += q * (log_lik - math.log(q) - CAT.num_vars * math.log(CAT.num_classes))
    return total


def test_discrete_elbo_matches_enumeration():
    params = _vae_params()
    x = jnp.asarray(_x(1, 6)[0])
    exact = _exact_elbo(params, x)
    draws = jax.vmap(lambda k: G.discrete_elbo(VAE, params, x, k, 1))(jax.random.split(jax.random.key(2), 20000))
    se = float(jnp.std(draws)) / math.sqrt(draws.shape[0])
    assert abs(float(jnp.mean(draws)) - exact) < 4 * se + 1e-4, (float(jnp.mean(draws)), exact, se)
    # The analytic KL of the model equals sum q log(q / p) by enumeration.
    logits = VAE.apply(params, x, method=G.DiscreteVAE.encode)
    p = np.asarray(jax.nn.softmax(logits, -1), np.float64)
    np.testing.assert_allclose(float(G.latent_kl(logits, CAT)), np.sum(p * np.log(p * 3)), rtol=1e-5)


@pytest.mark.parametrize("latent", [CAT, BERN], ids=["categorical", "bernoulli"])
@pytest.mark.parametrize("estimator", G.ESTIMATORS)
def test_sample_latent_values_and_gradients(latent, estimator):
    logits = jax.random.normal(jax.random.key(3), latent.shape)
    key = jax.random.key(4)
    z = G.sample_latent(key, logits, latent, estimator, 0.5)
    assert z.shape == latent.shape
    discrete = estimator != "gumbel_softmax"
    values = np.unique(np.asarray(z))
    if discrete:
        assert set(values) <= {0.0, 1.0}
    else:
        assert len(values) > 2
    if latent.kind == "categorical":
        np.testing.assert_allclose(np.sum(np.asarray(z), -1), 1.0, rtol=1e-6)
    w = jax.random.normal(jax.random.key(5), latent.shape)
    grad = jax.grad(lambda lg: jnp.sum(w * G.sample_latent(key, lg, latent, estimator, 0.5)))(logits)
    if estimator == "score_function":
        assert not np.any(np.asarray(grad)), "score-function samples must carry no gradient"
    else:
        assert np.all(np.isfinite(grad)) and np.any(np.asarray(grad))


def test_annealed_straight_through_uses_the_temperature():
    logits = jax.random.normal(jax.random.key(3), CAT.shape)
    key, w = jax.random.key(4), jax.random.normal(jax.random.key(5), CAT.shape)

    def grad(estimator, tau):
        return jax.grad(lambda lg: jnp.sum(w * G.sample_latent(key, lg, CAT, estimator, tau)))(logits)

    np.testing.assert_allclose(grad("straight_through", 0.5), grad("straight_through", 2.0))
    np.testing.assert_allclose(grad("annealed_straight_through", 1.0), grad("straight_through", 0.3), rtol=1e-6)
    assert not np.allclose(grad("annealed_straight_through", 0.5), grad("annealed_straight_through", 2.0))


def test_score_function_loss_gradient_is_unbiased_for_the_encoder():
    """The SF estimator of d ELBO / d logits, averaged over many draws, equals the exact one."""
    params = _vae_params()
    x = jnp.asarray(_x(1, 6, seed=1)[0])
    logits = VAE.apply(params, x, method=G.DiscreteVAE.encode)

    def exact(lg):
        probs = jax.nn.softmax(lg, -1)
        total = 0.0
        for z in _all_values(CAT):
            q = jnp.prod(jnp.sum(probs * z, -1))
            total += q * jnp.sum(bernoulli_log_prob(x, VAE.apply(params, z, method=G.DiscreteVAE.decode)))
        return total

    def surrogate(lg, key):
        z = G.sample_latent(key, lg, CAT, "score_function", 1.0)
        cost = -jnp.sum(bernoulli_log_prob(x, VAE.apply(params, z, method=G.DiscreteVAE.decode)))
        log_q = G.latent_log_prob(z, lg, CAT)
        value, _ = G.surrogate_cost(G.EstimatorConfig("score_function"), cost[None], log_q[None], {"baseline": jnp.float32(4.0)})
        return -value[0]

    grads = jax.vmap(jax.grad(surrogate), in_axes=(None, 0))(logits, jax.random.split(jax.random.key(6), 40000))
    mean, se = np.asarray(jnp.mean(grads, 0)), np.asarray(jnp.std(grads, 0)) / 200.0
    target = np.asarray(jax.grad(exact)(logits))
    assert np.all(np.abs(mean - target) < 5 * se + 1e-3), (mean, target, se)


def test_sbn_bound_converges_to_enumerated_likelihood():
    params = _sbn_params()
    x = _x(1, 8, seed=2)[0]
    xu, xl = jnp.asarray(x[:4]), jnp.asarray(x[4:])
    log_p, expected_1 = -np.inf, 0.0
    for h1 in _all_values(BERN):
        lp1 = float(G.latent_log_prob(jnp.asarray(h1), SBN.apply(params, xu, 0, method=G.SBN.layer_logits), BERN))
        for h2 in _all_values(BERN):
            lp2 = float(G.latent_log_prob(jnp.asarray(h2), SBN.apply(params, jnp.asarray(h1), 1, method=G.SBN.layer_logits), BERN))
            out = SBN.apply(params, jnp.asarray(h2), method=G.SBN.output_logits)
            log_lik = float(jnp.sum(bernoulli_log_prob(xl, out)))
            log_p = np.logaddexp(log_p, lp1 + lp2 + log_lik)
            expected_1 -= math.exp(lp1 + lp2) * log_lik
    nll = jax.vmap(lambda k: G.sbn_test_nll(SBN, params, xu, xl, k, 2000, 500))(jax.random.split(jax.random.key(7), 8))
    nll1 = jax.vmap(lambda k: G.sbn_test_nll(SBN, params, xu, xl, k, 1, 1))(jax.random.split(jax.random.key(8), 4000))
    assert abs(float(jnp.mean(nll)) + log_p) < 0.02, (float(jnp.mean(nll)), -log_p)
    # One sample estimates E_h[-log p(x_l | h)], the looser bound.
    se = float(jnp.std(nll1)) / math.sqrt(nll1.shape[0])
    assert abs(float(jnp.mean(nll1)) - expected_1) < 4 * se, (float(jnp.mean(nll1)), expected_1, se)
    assert expected_1 > -log_p


def test_split_halves_and_bad_shapes():
    images = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3, 1)
    upper, lower = G.split_halves(images)
    np.testing.assert_array_equal(upper[0], np.arange(6))
    np.testing.assert_array_equal(lower[1], np.arange(18, 24))
    with pytest.raises(ValueError, match="images"):
        G.split_halves(jnp.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="estimator"):
        G.EstimatorConfig("reinforce")
    with pytest.raises(ValueError, match="num_classes"):
        G.DiscreteLatent("categorical", 3, 1)
    with pytest.raises(ValueError, match="baseline_decay"):
        G.EstimatorConfig(baseline_decay=1.0)


def test_vae_loss_reports_the_schedule_and_the_baseline():
    config = G.EstimatorConfig("score_function", anneal_rate=0.5, anneal_every=2, tau_min=0.1)
    loss = G.make_vae_loss(VAE, config)
    batch = {"image": jnp.asarray(_x(4, 6)).reshape(4, 2, 3, 1)}
    keys = jax.random.split(jax.random.key(9), 4)
    value, (metrics, state) = loss(_vae_params(), batch, keys, step=jnp.int32(3), model_state={"baseline": jnp.float32(10.0)})
    np.testing.assert_allclose(metrics["temperature"], math.exp(-0.5 * 2), rtol=1e-6)
    np.testing.assert_allclose(value, metrics["recon"] + metrics["kl"], rtol=1e-6)
    np.testing.assert_allclose(state["baseline"], 0.9 * 10.0 + 0.1 * metrics["recon"], rtol=1e-6)


def _stateful_run(estimator, parallel, devices, num_steps=6):
    config = G.EstimatorConfig(estimator, anneal_every=1, anneal_rate=0.2)
    loss = G.make_vae_loss(VAE, config)
    opt = make_optimizer("adam", learning_rate=1e-2)
    data = _x(num_steps * 16, 6, seed=3).reshape(num_steps, 16, 2, 3, 1)
    step = build_train_step(LossUpdate(loss, opt, stateful=True), parallel=parallel, devices=devices)
    state = step.place_state(create_train_state(_vae_params(), opt, model_state=G.init_model_state(config)))
    out = []
    for i in range(num_steps):
        state, metrics = step.step(state, step.place_batch({"image": data[i]}), jax.random.key(1))
        out.append((float(metrics["loss"]), float(metrics["temperature"])))
    return np.array(out), step.fetch_state(state)


@pytest.mark.parametrize(("estimator", "parallel"), [("score_function", "jit"), ("score_function", "pmap"), ("gumbel_softmax", "pmap")])
def test_stateful_step_matches_on_one_and_eight_devices(estimator, parallel):
    """The baseline and the step-dependent temperature agree between 1 and 8 devices."""
    metrics_1, state_1 = _stateful_run(estimator, "jit", jax.devices()[:1])
    metrics_8, state_8 = _stateful_run(estimator, parallel, jax.devices())
    np.testing.assert_allclose(metrics_8, metrics_1, rtol=1e-5)
    np.testing.assert_allclose(metrics_1[:, 1], np.exp(-0.2 * np.arange(6)).clip(0.5), rtol=1e-6)
    np.testing.assert_allclose(state_8.model_state["baseline"], state_1.model_state["baseline"], rtol=1e-5)
    if estimator == "score_function":
        assert float(state_1.model_state["baseline"]) > 0, "the baseline must track the positive costs"
    for a, b in zip(jax.tree.leaves(state_8.params), jax.tree.leaves(state_1.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_stateful_loop_resumes_exactly(tmp_path):
    """An interrupted run with a model_state ends where an uninterrupted one does."""
    config = G.EstimatorConfig("score_function", anneal_every=1)
    loss = G.make_vae_loss(VAE, config)
    opt = make_optimizer("adam", learning_rate=1e-2)
    data = _x(8 * 16, 6, seed=4).reshape(8, 16, 2, 3, 1)
    step = build_train_step(LossUpdate(loss, opt, stateful=True), devices=jax.devices()[:1])
    init = create_train_state(_vae_params(), opt, model_state=G.init_model_state(config))

    def run(workdir, num_steps):
        return train(
            train_step=step,
            state=init,
            batches=lambda s: {"image": data[s]},
            key=jax.random.key(2),
            num_steps=num_steps,
            log_every=2,
            checkpoint_every=3,
            checkpointer=Checkpointer(workdir),
            progress=False,
        ).state

    straight = run(tmp_path / "a", 8)
    run(tmp_path / "b", 5)
    resumed = run(tmp_path / "b", 8)
    assert float(straight.model_state["baseline"]) > 0
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def test_loss_and_state_forms_must_match():
    opt = make_optimizer("adam", learning_rate=1e-2)
    step = build_train_step(LossUpdate(G.make_vae_loss(VAE, G.EstimatorConfig()), opt, stateful=True), devices=jax.devices()[:1])
    batch = step.place_batch({"image": jnp.asarray(_x(4, 6)).reshape(4, 2, 3, 1)})
    with pytest.raises(ValueError, match="model_state"):
        step.step(step.place_state(create_train_state(_vae_params(), opt)), batch, jax.random.key(0))


ROOT = pathlib.Path(__file__).resolve().parents[1]


def _script(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_tables(tmp_path_factory):
    """Both Table 1 experiments on their tiny presets, through experiments/gumbel_table.py."""
    table = _script(ROOT / "experiments" / "gumbel_table.py")
    root = tmp_path_factory.mktemp("tables")
    runs = {"gumbel_vae_mnist": ["score_function"], "gumbel_sbn_mnist": ["annealed_straight_through"]}
    for experiment, estimators in runs.items():
        out = root / experiment
        out.mkdir()
        args = ["--experiment", experiment, "--steps", "12", "--runs", str(root / "runs"), "--presets", "tiny", "--out", str(out), "--estimators", *estimators]
        assert table.main(args) == 0
    # A second invocation adds the longer "target" run and keeps the rows.
    vae_sf = root / "runs" / "gumbel_vae_mnist" / "tiny_score_function"
    args = [
        "--experiment",
        "gumbel_vae_mnist",
        "--steps",
        "12",
        "--runs",
        str(root / "runs"),
        "--presets",
        "tiny",
        "--out",
        str(root / "gumbel_vae_mnist"),
        "--estimators",
        "score_function",
        "--report-only",
        "--target-run",
        str(vae_sf),
    ]
    assert table.main(args) == 0
    return root


def test_tables_write_results_in_the_issue_schema(tiny_tables):
    vae = json.loads((tiny_tables / "gumbel_vae_mnist" / "results.json").read_text())
    sbn = json.loads((tiny_tables / "gumbel_sbn_mnist" / "results.json").read_text())
    assert [(r["model"], r["estimator"]) for r in vae["rows"]] == [("vae_categorical", "score_function")]
    assert [(r["model"], r["estimator"]) for r in sbn["rows"]] == [("sbn_categorical", "annealed_straight_through")]
    for r in vae["rows"] + sbn["rows"]:
        assert r["steps"] == 12 and r["wall_time_s"] > 0 and math.isfinite(r["test_loss"]) and r["test_loss"] > 0
    assert "--steps 12" in vae["command"] and "--report-only" not in vae["command"]
    assert vae["target"]["steps"] == 12 and [s for s, _ in vae["target"]["eval_curve_one_sample"]] == [6, 12]
    assert (tiny_tables / "gumbel_vae_mnist" / "training_curves.png").is_file()
    report = (tiny_tables / "gumbel_vae_mnist" / "RESULTS.md").read_text()
    assert "| vae_categorical | score_function |" in report and "110.6" in report


def test_tiny_runs_keep_their_outputs_and_state(tiny_tables):
    from genjax import experiment

    runs = tiny_tables / "runs"
    vae_sf = runs / "gumbel_vae_mnist" / "tiny_score_function"
    assert (vae_sf / "reconstructions.png").is_file() and (vae_sf / "samples.png").is_file()
    assert (runs / "gumbel_sbn_mnist" / "tiny_annealed_straight_through" / "completions.png").is_file()
    records = [json.loads(line) for line in (vae_sf / "metrics.jsonl").read_text().splitlines()]
    # tiny: tau = max(0.5, exp(-0.1 * 5 * floor(s / 5))) at update s; logged after 4, 8, 12 updates.
    temps = {r["step"]: r["temperature"] for r in records if "temperature" in r}
    np.testing.assert_allclose([temps[4], temps[8], temps[12]], [1.0, math.exp(-0.5), 0.5], rtol=1e-6)
    state = experiment.load_run(vae_sf).state
    assert int(state.step) == 12 and float(state.model_state["baseline"]) > 0


def test_grad_variance_script_on_a_tiny_run(tiny_tables, tmp_path):
    script = _script(ROOT / "experiments" / "gumbel_vae_mnist" / "grad_variance.py")
    workdir = tiny_tables / "runs" / "gumbel_vae_mnist" / "tiny_score_function"
    args = [
        "--workdir",
        str(workdir),
        "--examples",
        "2",
        "--samples",
        "200",
        "--reference-samples",
        "2000",
        "--temperatures",
        "0.3",
        "3.0",
        "--out",
        str(tmp_path),
    ]
    assert script.main(args) == 0
    result = json.loads((tmp_path / "grad_variance.json").read_text())
    assert (tmp_path / "grad_variance.png").is_file()
    gs = result["gumbel_softmax"]
    # The relaxed estimator's variance grows as the temperature falls (paper, section 2).
    assert gs[0]["variance"] > gs[1]["variance"] > 0
    assert result["score_function_scalar_baseline"]["variance"] > result["score_function"]["variance"] > result["straight_through"]["variance"]


def test_losses_name_keys_when_given_one_key_instead_of_one_per_example():
    x = jnp.asarray(_x(4, 6))
    loss = G.make_vae_loss(VAE, G.EstimatorConfig())
    state = G.init_model_state(G.EstimatorConfig())
    with pytest.raises(ValueError, match=r"keys: expected shape \[batch\] = \(4,\) of typed PRNG keys"):
        loss(_vae_params(), {"image": x}, jax.random.key(0), step=jnp.int32(0), model_state=state)
    with pytest.raises(ValueError, match=r"keys: expected shape \[batch\] = \(4,\)"):
        loss(_vae_params(), {"image": x}, jax.random.split(jax.random.key(0), 3), step=jnp.int32(0), model_state=state)
