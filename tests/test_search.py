"""Inference-time search: NFE spent, plain sampling as the one-candidate case, the tilted
target of FK steering, devices, monotone gains in budget, bad inputs, every sampler and
classifier-free guidance.

Every denoiser here is analytic. For Gaussian data N(MU, SD^2 I) the exact noise
prediction is eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) MU) / (abar SD^2 + 1 - abar);
for a mixture of Gaussians it is -sqrt(1 - abar) times the mixture's score at noise level
abar, a softmax-weighted sum of the components' scores. Without x0 clipping the DDIM and
DDPM samplers are then affine in their Gaussian inputs, so their samples are exactly
Gaussian, which makes the target of FK steering, p(x) exp(lam r(x)) with a quadratic r,
a Gaussian in closed form.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import samplers as S
from genjax.samplers import search as Q
from genjax.samplers.base import run_rows, table_rows

T = 50
ABAR = np.cumprod(1.0 - np.linspace(1e-3, 0.2, T)).astype(np.float32)
MU, SD = 0.3, 0.5
SHAPE = (2,)
# The mixture of the monotonicity test: four modes on the corners of a square.
MODES = jnp.array([[0.7, 0.7], [-0.7, 0.7], [-0.7, -0.7], [0.7, -0.7]], jnp.float32)
MODE_SD = 0.1


def gaussian(x, t, mu=MU):
    a = S.abar_at(ABAR, t)
    return S.Prediction(eps=jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * SD**2 + 1 - a))


# Its exact denoiser is the library's (genjax.samplers.gaussian_mixture).
mixture = S.GaussianMixture(np.asarray(MODES), MODE_SD).denoiser(ABAR)


def quadratic(x, condition):
    """r(x) = -|x - 1|^2 / 2: the reward of the tilted-target tests."""
    del condition
    return -0.5 * jnp.sum((x - 1.0) ** 2)


def counting(denoiser, calls):
    """The denoiser, counting its evaluations at run time, one per example under vmap.

    ``jax.debug.callback`` with the batched ``x`` as argument is unbatched by vmap into
    one call per example (sequentially), so each example's evaluation counts once.
    """

    def bump(x):
        del x
        calls[0] += 1

    def wrapped(x, t, *condition):
        jax.debug.callback(bump, x)
        return denoiser(x, t, *condition)

    return wrapped


OPTIONS = {"zero_order": {"radius": 0.5}, "fk": {"lam": 1.0}}


def run_method(p, denoiser=gaussian, verifier=quadratic, devices=None, **kw):
    return Q.run_search(jax.random.key(0), denoiser, ABAR, SHAPE, plan=p, verifier=verifier, devices=devices, **OPTIONS.get(p.method, {}), **kw)


# ------------------------------------------------------------------------------ budget


def test_plan_spends_at_most_the_budget_and_buys_the_scaled_axis():
    p = Q.plan("random", 50, "ddim", num_timesteps=T, steps=8)
    assert (p.candidates, p.nfe, p.remainder, p.budget) == (6, 48, 2, 50)
    p = Q.plan("fk", 50, "heun", num_timesteps=T, steps=4)  # 7 NFE per Heun pass
    assert (p.candidates, p.nfe, p.remainder) == (7, 49, 1)
    p = Q.plan("zero_order", 100, "ddim", num_timesteps=T, steps=5, neighbours=3)
    assert (p.candidates, p.rounds, p.nfe) == (3, 6, (1 + 18) * 5)
    p = Q.plan("paths", 100, "ddim", num_timesteps=T, steps=6, rounds=2, copies=3, renoise=1, advance=3)
    # start = 6 - 2 * 2 = 2; rounds restart at rows 1 and 3 and run 3 rows: 2 + 3 * (3 + 3) = 20 per noise.
    assert (p.start, list(p.restarts()), p.candidates, p.nfe) == (2, [1, 3], 5, 100)
    p = Q.plan("paths", 100, "heun", num_timesteps=T, steps=6, rounds=2, copies=3, renoise=1, advance=3)
    # Heun rows cost 2, the last 1: 4 + 3 * (6 + 5) = 37 per noise.
    assert (p.candidates, p.nfe) == (2, 74)
    # more_steps: the most steps whose one pass fits, capped at T.
    assert Q.plan("more_steps", 20, "ddpm", num_timesteps=T).steps == 20
    assert Q.plan("more_steps", 500, "ddpm", num_timesteps=T).steps == T
    assert (Q.plan("more_steps", 20, "heun", num_timesteps=T).steps, Q.plan("more_steps", 20, "heun", num_timesteps=T).nfe) == (10, 19)
    # A range of steps: the steps that waste the least (ties: fewer steps, more candidates).
    p = Q.plan("random", 50, "ddim", num_timesteps=T, steps=(6, 9))
    assert (p.steps, p.candidates, p.remainder) == (7, 7, 1)
    p = Q.plan("random", 60, "ddim", num_timesteps=T, steps=(4, 6))
    assert (p.steps, p.candidates, p.remainder) == (4, 15, 0)
    # A directly built plan spends its own count.
    direct = Q.Plan("fk", S.get_sampler("heun"), 4, candidates=3)
    assert direct.nfe == direct.budget == 21 and direct.remainder == 0
    assert hash(direct) == hash(Q.Plan("fk", "heun", 4, candidates=3))


@pytest.mark.parametrize("sampler", ["ddpm", "heun"])
def test_nfe_counted_at_run_time_equals_plan_nfe(sampler):
    """Every method, 3 outputs vmapped, one compiled program: each method's denoiser runs
    exactly plan.nfe times per output (Heun: 2 per step, 1 on the last; paths: the
    re-noised segments included)."""
    plans = [
        Q.plan("random", 30, sampler, num_timesteps=T, steps=3),
        Q.plan("zero_order", 40, sampler, num_timesteps=T, steps=3, neighbours=2),
        Q.plan("paths", 40, sampler, num_timesteps=T, steps=4, rounds=2, copies=2, renoise=1, advance=2),
        Q.plan("fk", 30, sampler, num_timesteps=T, steps=3),
        Q.plan("more_steps", 30, sampler, num_timesteps=T),
    ]
    calls = [[0] for _ in plans]

    @jax.jit
    def run_all(keys):
        return [
            jax.vmap(lambda k, p=p, c=c: Q.run_search(k, counting(gaussian, c), ABAR, SHAPE, plan=p, verifier=quadratic, **OPTIONS.get(p.method, {})))(keys)
            for p, c in zip(plans, calls, strict=True)
        ]

    outs = jax.block_until_ready(run_all(jax.random.split(jax.random.key(1), 3)))
    jax.effects_barrier()
    for p, c, out in zip(plans, calls, outs, strict=True):
        assert c[0] == 3 * p.nfe and out.nfe == p.nfe, (p.method, c[0], p.nfe)
        assert p.nfe <= p.budget and p.remainder == p.budget - p.nfe


def test_one_candidate_is_plain_sampling_bit_for_bit():
    for name in ("ddpm", "heun"):
        p = Q.Plan("random", S.get_sampler(name), 5, candidates=1)
        key = jax.random.key(7)
        searched = jax.jit(lambda k, p=p: Q.random_search(k, gaussian, ABAR, SHAPE, plan=p, verifier=quadratic).sample)(key)
        plain = jax.jit(lambda k, name=name: S.sample(gaussian, ABAR, k, SHAPE, sampler=name, steps=5))(key)
        np.testing.assert_array_equal(searched, plain)
    # Candidate 0 of a larger search is that sample too, and the keys are all distinct.
    keys = Q.candidate_keys(jax.random.key(7), 6)
    data = np.asarray(jax.random.key_data(jnp.concatenate([keys, jax.random.split(jax.random.key(7)), Q.search_key(jax.random.key(7))[None]])))
    assert len({tuple(row) for row in data}) == 9


# --------------------------------------------------------------------- FK steering


@functools.cache
def _plain_moments(sampler, n=40_000):
    """Mean and variance of the plain sampler's samples (one coordinate), by Monte Carlo."""
    xs = jax.jit(jax.vmap(lambda k: S.sample(gaussian, ABAR, k, (1,), sampler=sampler, steps=6)))(jax.random.split(jax.random.key(99), n))
    xs = np.asarray(xs, np.float64)[:, 0]
    return xs.mean(), xs.var(), n


def test_fk_with_a_constant_verifier_is_plain_sampling_in_distribution():
    sampler = S.DDPM(clip_x0=False)
    runs, k = 256, 8
    p = Q.Plan("fk", sampler, 6, candidates=k)
    fk = jax.jit(jax.vmap(lambda key: Q.fk_steering(key, gaussian, ABAR, (1,), plan=p, verifier=lambda x, c: jnp.float32(2.0), lam=3.0)))
    out = fk(jax.random.split(jax.random.key(5), runs))
    np.testing.assert_allclose(np.exp(out.log_weights), 1.0 / k, rtol=1e-6)  # equal weights: the target is p(x)
    xs = np.asarray(out.samples, np.float64).reshape(-1)
    mean, var, n = _plain_moments(sampler)
    # Particles of one run are independent plain samples (equal weights keep every one).
    m = xs.size
    assert abs(xs.mean() - mean) < 5 * np.sqrt(var / m + var / n)
    assert abs(xs.var() - var) < 5 * var * np.sqrt(2 / (m - 1) + 2 / (n - 1))
    # And the chosen one is particle 0, the plain sample of the run's key.
    plain = jax.jit(jax.vmap(lambda key: S.sample(gaussian, ABAR, key, (1,), sampler=sampler, steps=6)))(jax.random.split(jax.random.key(5), runs))
    np.testing.assert_array_equal(out.sample, plain)


@pytest.mark.parametrize("potential", Q.POTENTIALS)
def test_fk_weighted_particles_target_the_tilted_density(potential):
    """p(x) exp(lam r(x)) with r = -|x - 1|^2 / 2 and Gaussian p(x) = N(m, v) is
    N((m / v + lam) / (1 / v + lam), 1 / (1 / v + lam)): the weighted particle mean must
    match it within Monte Carlo error, and differ from the plain mean."""
    sampler, lam, runs, k = S.DDPM(clip_x0=False), 1.0, 128, 32
    mean, var, n = _plain_moments(sampler)
    tilted = (mean / var + lam) / (1 / var + lam)
    p = Q.Plan("fk", sampler, 6, candidates=k)
    fk = jax.jit(jax.vmap(lambda key: Q.fk_steering(key, gaussian, ABAR, (1,), plan=p, verifier=quadratic, lam=lam, potential=potential, resample_every=2)))
    out = fk(jax.random.split(jax.random.key(3), runs))
    w = np.exp(np.asarray(out.log_weights, np.float64))
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)
    per_run = (w * np.asarray(out.samples, np.float64)[..., 0]).sum(1)
    se = np.hypot(per_run.std(ddof=1) / np.sqrt(runs), np.sqrt(var / n))
    assert abs(per_run.mean() - tilted) < 4 * se, (per_run.mean(), tilted, se)
    assert abs(tilted - mean) > 8 * se  # the test can tell the tilt from plain sampling


def test_systematic_resampling_counts():
    key = jax.random.key(0)
    resample = jax.jit(Q.systematic_resample)
    np.testing.assert_array_equal(resample(key, jnp.zeros(8)), np.arange(8))
    idx = resample(key, jnp.log(jnp.array([0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0])))
    np.testing.assert_array_equal(np.bincount(np.asarray(idx), minlength=8), [4, 2, 2, 0, 0, 0, 0, 0])


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("method", ["random", "zero_order", "paths", "fk"])
def test_one_and_eight_devices_give_the_same_search(method):
    assert jax.device_count() == 8
    extra = {"zero_order": {"rounds": 2}, "paths": {"rounds": 2, "copies": 2, "renoise": 1, "advance": 2}}.get(method, {})
    p = Q.Plan(method, S.get_sampler("ddpm"), 5, candidates=8, **extra)
    outs = [jax.jit(lambda devices=devices: run_method(p, devices=devices))() for devices in (jax.devices()[:1], jax.devices())]
    a, b = outs
    assert b.samples.sharding.mesh.devices.size == 8
    # The same candidates are chosen; values agree to float32 round-off (XLA vectorises
    # one device's 8 candidates and eight devices' 1 differently).
    np.testing.assert_array_equal(np.argmax(a.scores), np.argmax(b.scores))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="candidates: 8 candidates must be divisible by the device count 3"):
        run_method(p, devices=jax.devices()[:3])


# --------------------------------------------------------------------- monotonicity


def test_every_method_gains_monotonically_with_budget():
    """On a four-mode mixture with a verifier preferring one mode, the mean verifier score
    over 256 seeds (fixed) rises with the budget, 3, 12 and 48 passes of 4 DDIM steps, for
    every method. The margins between consecutive budgets, in standard errors of the
    difference of the means, measured: random 13.0 and 12.2, zero-order 9.3 and 7.5,
    paths 16.1 and 11.7, fk 13.0 and 12.2; the test asks for 4."""
    verifier = S.log_density_verifier(lambda x: -jnp.sum((x - MODES[0]) ** 2) / (2 * 0.5**2))
    keys = jax.random.split(jax.random.key(1), 256)
    steps, e = 4, 4  # DDIM: one NFE per step
    methods = {"random": {}, "zero_order": {"neighbours": 2}, "paths": {}, "fk": {}}
    options = {"zero_order": {"radius": 1.0}, "fk": {"lam": 4.0}}
    for method, plan_options in methods.items():
        means, ses = [], []
        for budget in (3 * e, 12 * e, 48 * e):
            p = Q.plan(method, budget, "ddim", num_timesteps=T, steps=steps, **plan_options)
            run = jax.jit(
                jax.vmap(lambda k, p=p, method=method: Q.run_search(k, mixture, ABAR, SHAPE, plan=p, verifier=verifier, **options.get(method, {})).score)
            )
            scores = np.asarray(run(keys), np.float64)
            means.append(scores.mean())
            ses.append(scores.std(ddof=1) / np.sqrt(scores.size))
        margins = [(means[i + 1] - means[i]) / np.hypot(ses[i], ses[i + 1]) for i in range(2)]
        assert min(margins) > 4, (method, means, ses, margins)


# ------------------------------------------------------------------------ bad inputs


def test_bad_budgets_and_counts_are_named():
    with pytest.raises(ValueError, match=r"budget: expected at least 8 network evaluations .* got 7"):
        Q.plan("random", 7, "ddim", num_timesteps=T, steps=8)
    with pytest.raises(ValueError, match=r"budget: expected at least 15 network evaluations .* got 14"):
        Q.plan("fk", 14, "heun", num_timesteps=T, steps=8)
    with pytest.raises(ValueError, match=r"budget: expected at least 15 network evaluations .*smallest zero_order plan.* got 10"):
        Q.plan("zero_order", 10, "ddim", num_timesteps=T, steps=5, neighbours=2)
    with pytest.raises(ValueError, match=r"budget: expected an int >= 1, got 0"):
        Q.plan("random", 0, "ddim", num_timesteps=T, steps=8)
    with pytest.raises(ValueError, match=r"budget: expected an int >= 1, got 10.5"):
        Q.plan("random", 10.5, "ddim", num_timesteps=T, steps=8)
    with pytest.raises(ValueError, match=r"budget: this plan spends 16 .* more than the budget 10"):
        Q.Plan("random", "ddim", 8, candidates=2, budget=10)
    with pytest.raises(ValueError, match=r"candidates: expected an int >= 1, got 0"):
        Q.Plan("random", "ddim", 8, candidates=0)
    with pytest.raises(ValueError, match=r"candidates: expected an int >= 1, got 2.0"):
        Q.Plan("fk", "ddim", 8, candidates=2.0)
    with pytest.raises(ValueError, match=r"neighbours: expected an int >= 1, got -1"):
        Q.plan("zero_order", 100, "ddim", num_timesteps=T, steps=5, neighbours=-1)
    with pytest.raises(ValueError, match=r"copies: expected an int >= 1, got 0"):
        Q.plan("paths", 100, "ddim", num_timesteps=T, steps=5, copies=0)
    with pytest.raises(ValueError, match=r"advance: expected an int >= 3, got 2"):
        Q.plan("paths", 100, "ddim", num_timesteps=T, steps=5, renoise=2, advance=2)
    with pytest.raises(ValueError, match=r"steps: a path search .* needs at least .* = 5 steps, got 4"):
        Q.plan("paths", 100, "ddim", num_timesteps=T, steps=4, rounds=4)
    with pytest.raises(ValueError, match=r"rounds: not an option of the 'random' method"):
        Q.Plan("random", "ddim", 8, rounds=2)
    with pytest.raises(ValueError, match=r"neighbours: not an option of the 'fk' method"):
        Q.plan("fk", 100, "ddim", num_timesteps=T, steps=5, neighbours=2)
    with pytest.raises(ValueError, match=r"steps: must lie in \[1, T=50\], got 51"):
        Q.plan("random", 100, "ddim", num_timesteps=T, steps=51)
    with pytest.raises(ValueError, match=r"steps: the 'random' method needs"):
        Q.plan("random", 100, "ddim", num_timesteps=T)
    with pytest.raises(ValueError, match=r"method: expected one of"):
        Q.plan("beam", 100, "ddim", num_timesteps=T, steps=5)
    with pytest.raises(ValueError, match="plan: expected a plan for the 'fk' method, got one for 'random'"):
        Q.fk_steering(jax.random.key(0), gaussian, ABAR, SHAPE, plan=Q.Plan("random", "ddim", 3), verifier=quadratic)
    with pytest.raises(ValueError, match=r"steps: must lie in \[1, T=50\], got 60"):
        run_method(Q.Plan("random", "ddim", 60))


def test_bad_radius_potential_and_verifier_are_named():
    p = Q.Plan("zero_order", "ddim", 3, candidates=2)
    key = jax.random.key(0)
    for radius in (0.0, -1.0, float("inf"), float("nan"), "1"):
        with pytest.raises(ValueError, match=r"radius: expected a number in \(0, inf\), got"):
            Q.zero_order_search(key, gaussian, ABAR, SHAPE, plan=p, verifier=quadratic, radius=radius)
    with pytest.raises(ValueError, match="potential: expected one of"):
        Q.fk_steering(key, gaussian, ABAR, SHAPE, plan=Q.Plan("fk", "ddim", 3), verifier=quadratic, potential="min")
    with pytest.raises(ValueError, match="resample_every: expected an int >= 1, got 0"):
        Q.fk_steering(key, gaussian, ABAR, SHAPE, plan=Q.Plan("fk", "ddim", 3), verifier=quadratic, resample_every=0)
    with pytest.raises(ValueError, match="lam: not an option of the 'random' search"):
        run_method(Q.Plan("random", "ddim", 3), lam=1.0)
    # A verifier must give one scalar per example: the shape is checked at trace time.
    with pytest.raises(ValueError, match=r"verifier: expected one scalar score per example, shape \(\), got \(2,\)"):
        jax.eval_shape(lambda: run_method(Q.Plan("random", "ddim", 3), verifier=lambda x, c: x))
    with pytest.raises(ValueError, match=r"verifier: expected one scalar score per example, shape \(\), got \(1,\)"):
        jax.eval_shape(lambda: run_method(Q.Plan("fk", "ddim", 3), verifier=lambda x, c: jnp.sum(x, keepdims=True)))


def test_non_finite_scores_raise_naming_the_verifier():
    def bad(x, c):  # NaN for some candidates only
        return jnp.where(x[0] > 0, jnp.nan, -jnp.sum(x**2))

    p = Q.Plan("random", "ddim", 2, candidates=8)
    with pytest.raises(ValueError, match="verifier: returned a non-finite score"):
        run_method(p, verifier=bad)  # eager: raises at once
    out = jax.jit(lambda: run_method(p, verifier=bad))()  # under jit: a flag, raised on the host
    assert not bool(out.finite)
    with pytest.raises(ValueError, match="verifier: returned a non-finite score"):
        Q.check_scores(out)
    good = jax.jit(lambda: run_method(p))()
    assert Q.check_scores(good) is good


# ------------------------------------------------------- samplers, guidance, verifiers


def _conditional(x, t, label):
    """Gaussian data whose mean is -0.5 for class 0 and +0.5 for class 1 (2: the null)."""
    mu = jnp.where(label == 0, -0.5, jnp.where(label == 1, 0.5, 0.0))
    return gaussian(x, t, mu=mu)


def _toy_classifier(pixels):
    """Logits of class 0 and 1 from pixels in [0, 1]: data below / above 0.5."""
    z = 8.0 * (jnp.mean(pixels.reshape(pixels.shape[0], -1), axis=1) - 0.5)
    return jnp.stack([-z, z], axis=1)


@pytest.mark.parametrize("name", sorted(S.SAMPLERS))
def test_every_sampler_searches_with_guidance(name):
    """Random search and FK steering with classifier-free guidance and a class verifier:
    NFE at run time (one per guided call, which runs the network on the pair), finite
    scores, and the chosen sample is the best candidate."""
    calls = [0]
    net = counting(_conditional, calls)
    verifier = S.classifier_verifier(_toy_classifier)
    labels = jnp.array([0, 1])
    keys = jax.random.split(jax.random.key(2), 2)
    plans = [Q.plan("random", 16, name, num_timesteps=T, steps=3), Q.plan("fk", 16, name, num_timesteps=T, steps=3)]

    @jax.jit
    def run(keys, labels):
        def one(key, label):
            den = S.guided(net, label, jnp.int32(2), 2.0)
            return [Q.run_search(key, den, ABAR, SHAPE, plan=p, verifier=verifier, condition=label, **OPTIONS.get(p.method, {})) for p in plans]

        return jax.vmap(one)(keys, labels)

    outs = jax.block_until_ready(run(keys, labels))
    jax.effects_barrier()
    assert calls[0] == 2 * sum(p.nfe for p in plans)
    for out in outs:
        Q.check_scores(out)
        np.testing.assert_array_equal(out.score, out.scores.max(axis=1))
        assert out.sample.shape == (2,) + SHAPE
    # The class verifier prefers the intended side: the chosen samples lie on it.
    assert float(outs[0].sample[0].mean()) < 0 < float(outs[0].sample[1].mean())


def test_classifier_verifier_maps_model_scale_to_pixels():
    seen = []

    def apply_fn(pixels):
        seen.append(pixels)
        return _toy_classifier(pixels)

    verifier = S.classifier_verifier(apply_fn)
    x = jnp.array([[-1.0, 0.0], [1.0, 1.2]])  # 1.2: overshoot, clipped to pixel 1
    score = verifier(x, 1)
    np.testing.assert_allclose(seen[0][0], [[0.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(score, jax.nn.log_softmax(_toy_classifier(seen[0]))[0, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="sample_range"):
        S.classifier_verifier(apply_fn, sample_range=(1.0, -1.0))


def test_classifier_verifier_with_the_shipped_mnist_classifier():
    from genjax.metrics import MNISTClassifier, load_mnist_classifier

    params = load_mnist_classifier()
    verifier = S.classifier_verifier(lambda images: MNISTClassifier().apply(params, images)[0])
    x = jax.random.uniform(jax.random.key(0), (28, 28, 1), minval=-1.0, maxval=1.0)

    @jax.jit
    def both(x):
        logits = MNISTClassifier().apply(params, ((x + 1.0) / 2.0)[None])[0][0]
        return logits, jax.vmap(lambda c: verifier(x, c))(jnp.arange(10))

    logits, scores = both(x)
    np.testing.assert_allclose(scores, jax.nn.log_softmax(logits), rtol=1e-5, atol=1e-5)
    assert abs(float(jax.nn.logsumexp(scores))) < 1e-5


def test_restarting_a_sampler_mid_way():
    """init of the remaining rows inverts x_t, and DPM-Solver++ restarts first order."""
    x = jax.random.normal(jax.random.key(0), SHAPE)
    for name in S.SAMPLERS:
        sampler = S.get_sampler(name)
        rows = table_rows(sampler.step_table(ABAR, 6), 2, 3)
        np.testing.assert_allclose(sampler.x_t(rows, sampler.init(rows, x)), x, rtol=1e-6)
    dpm = S.DPMpp2M()
    table = dpm.step_table(ABAR, 6)
    rows = table_rows(table, 2, 1)
    (after, _, _), x0 = run_rows(dpm, gaussian, rows, dpm.init(rows, x), jax.random.split(jax.random.key(1), 1))
    row = S.table_row(table, 2)
    np.testing.assert_allclose(after, row.ratio * x + row.coef * x0, rtol=1e-6)  # D = x0: first order
    assert float(row.w_prev) != 0.0  # while the row itself is second order
