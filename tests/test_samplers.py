"""Diffusion samplers against an analytic denoiser, plain-loop references and devices.

The data distribution is x0 ~ N(MU, SD^2 I). Under the DDPM forward process the optimal
noise predictor is known in closed form,

    eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) MU) / (abar SD^2 + 1 - abar),

so every sampler can be checked against the exact answer: the probability-flow ODE maps
x_T to MU + SD (x_T - sqrt(abar_T) MU) / sqrt(abar_T SD^2 + 1 - abar_T), a sample of
N(MU, SD^2) exactly. The reference loops below are written from the papers' equations in
float64 numpy, independently of the library's code, and use the library's documented
noise convention (k_init, k_steps = split(key); x_T = normal(k_init); z_i =
normal(split(k_steps, steps)[i])).
"""

import functools
import time

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import samplers as S

MU, SD = 0.3, 0.5


def _table(T, beta_max):
    return np.cumprod(1.0 - np.linspace(1e-4, beta_max, T)).astype(np.float32)


SMALL = _table(100, 0.2)  # abar_{T-1} ~ 4e-5
BIG = _table(1000, 0.02)  # the DDPM paper's schedule


def interp_abar(table, t):
    """abar at a non-integer t in [0, T-1], linear between the table's entries."""
    lower = jnp.clip(jnp.floor(t), 0, table.shape[0] - 2)
    w = t - lower
    i = lower.astype(jnp.int32)
    return jnp.asarray(table)[i] * (1 - w) + jnp.asarray(table)[i + 1] * w


def analytic(table, mu=MU, sd=SD, var_frac=False):
    """The exact eps predictor for N(mu, sd^2) data; abar interpolated linearly in t."""

    def denoiser(x, t):
        a = interp_abar(table, t)
        eps = jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * sd**2 + 1 - a)
        return S.Prediction(eps=eps, var_frac=jax.nn.sigmoid(x) if var_frac else None)

    return denoiser


# The plain-loop comparisons use wider data, N(MU, LOOP_SD^2), so that clipping the
# predicted x0 to [-1, 1] happens all along the trajectory, not only at the end.
LOOP_SD = 2.0


def np_eps(table, x, t):
    a = np.interp(t, np.arange(len(table)), table.astype(np.float64))
    return np.sqrt(1 - a) * (x - np.sqrt(a) * MU) / (a * LOOP_SD**2 + 1 - a)


def flow_map(table, x_T, t_end=None):
    """Exact probability-flow solution from x_T at t=T-1 to abar=1 (or to t_end)."""
    a = float(table[-1])
    invariant = (x_T / np.sqrt(a) - MU) / np.sqrt(SD**2 + (1 - a) / a)  # (xbar - mu)/sqrt(s^2+sigma^2)
    if t_end is None:
        return MU + SD * invariant
    a0 = float(table[t_end])
    return np.sqrt(a0) * (MU + np.sqrt(SD**2 + (1 - a0) / a0) * invariant)


def draws(key, shape, steps):
    """x_T and the per-step noise z [steps, *shape] under the documented key convention.

    Called inside the jitted program under test, where XLA shares the work with the
    sampler's own draws, so it adds no compilation of its own.
    """
    k_init, k_steps = jax.random.split(key)
    return jax.random.normal(k_init, shape), jax.lax.map(lambda k: jax.random.normal(k, shape), jax.random.split(k_steps, steps))


def spaced(T, steps):
    """Nichol & Dhariwal's evenly spaced subset, including 0 and T-1, decreasing."""
    if steps == 1:
        return [T - 1]
    return [int(np.floor(i * (T - 1) / (steps - 1) + 0.5)) for i in range(steps)][::-1]


# ------------------------------------------------------------------ reference loops


def ref_ddpm(table, draws, steps, variance, clip):
    ab = table.astype(np.float64)
    x, z = draws
    ts = spaced(len(ab), steps)
    x0s = []
    for i, t in enumerate(ts):
        a = ab[t]
        a_prev = ab[ts[i + 1]] if i + 1 < steps else 1.0
        beta = 1 - a / a_prev  # respaced beta (Nichol & Dhariwal, Sec. 4)
        eps = np_eps(ab, x, t)
        x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        if clip:
            x0 = np.clip(x0, -1, 1)
            mean = np.sqrt(a_prev) * beta / (1 - a) * x0 + np.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * x  # eq. 7
        else:
            mean = (x - beta / np.sqrt(1 - a) * eps) / np.sqrt(1 - beta)  # eq. 11
        beta_tilde = (1 - a_prev) / (1 - a) * beta
        if variance == "small":
            var = beta_tilde
        elif variance == "large":
            var = beta
        else:
            v = 1 / (1 + np.exp(-x))  # the test denoiser's var_frac
            var = np.exp(v * np.log(beta) + (1 - v) * np.log(max(beta_tilde, 1e-30)))
        x = mean + (np.sqrt(var) * z[i] if i + 1 < steps else 0.0)
        x0s.append(x0)
    return x, np.stack(x0s)


def ref_ddim(table, draws, steps, eta, clip):
    ab = table.astype(np.float64)
    x, z = draws
    ts = spaced(len(ab), steps)
    x0s = []
    for i, t in enumerate(ts):
        a = ab[t]
        a_prev = ab[ts[i + 1]] if i + 1 < steps else 1.0
        eps = np_eps(ab, x, t)
        x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        if clip:
            x0 = np.clip(x0, -1, 1)
            eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        sigma = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)  # eq. 16
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps + sigma * z[i]  # eq. 12
        x0s.append(x0)
    return x, np.stack(x0s)


def ref_dpmpp_2m(table, draws, steps):
    ab = table.astype(np.float64)
    T = len(ab)
    x, _ = draws
    ts = [(T - 1) * (1 - i / steps) for i in range(steps + 1)]
    a = np.interp(ts, np.arange(T), ab)
    alpha, sigma = np.sqrt(a), np.sqrt(1 - a)
    lam = np.log(alpha / sigma)
    x0s = []
    for i in range(1, steps + 1):  # Algorithm 2, step from t_{i-1} to t_i
        eps = np_eps(ab, x, ts[i - 1])
        x0s.append((x - sigma[i - 1] * eps) / alpha[i - 1])
        h = lam[i] - lam[i - 1]
        if i == 1 or i == steps:  # first step, and lower-order final step
            d = x0s[-1]
        else:
            r = (lam[i - 1] - lam[i - 2]) / h
            d = (1 + 1 / (2 * r)) * x0s[-1] - 1 / (2 * r) * x0s[-2]
        x = sigma[i] / sigma[i - 1] * x - alpha[i] * (np.exp(-h) - 1) * d
    return x, np.stack(x0s)


def ref_heun(table, draws, steps, rho=7.0, sigma_max=None):
    ab = table.astype(np.float64)
    sig = np.sqrt((1 - ab) / ab)
    smin, smax = sig[0], (sig[-1] if sigma_max is None else sigma_max)
    i = np.arange(steps)
    sg = (smax ** (1 / rho) + i / max(steps - 1, 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho  # eq. 5
    sg = np.append(sg, 0.0)

    def denoise(x, s):  # the exact posterior mean E[x0 | x0 + s n = x] of N(MU, LOOP_SD^2) data
        return MU + LOOP_SD**2 / (LOOP_SD**2 + s**2) * (x - MU)

    x = draws[0] * np.sqrt(1 + smax**2)
    x0s = []
    for k in range(steps):  # Algorithm 1, S_churn = 0
        x0s.append(denoise(x, sg[k]))
        d = (x - x0s[-1]) / sg[k]
        x_next = x + (sg[k + 1] - sg[k]) * d
        if sg[k + 1] != 0:
            d2 = (x_next - denoise(x_next, sg[k + 1])) / sg[k + 1]
            x_next = x + (sg[k + 1] - sg[k]) * (d + d2) / 2
        x = x_next
    return x, np.stack(x0s)


# ---------------------------------------------------------------------------- tests
#
# Compilation dominates the run time on a shared CPU, so the tests favour one unbatched
# sample with many elements (the analytic denoiser is elementwise, so the elements of one
# sample are independent draws) over vmapped batches, and fold related checks into one
# jitted program.


def test_schedules_and_evaluation_counts():
    np.testing.assert_array_equal(S.timesteps("ddim", 5, 50), [49, 37, 25, 12, 0, -1])
    np.testing.assert_array_equal(S.timesteps("ddpm", 4, 4), [3, 2, 1, 0, -1])
    np.testing.assert_array_equal(S.timesteps("ddpm", 1, 10), [9, -1])
    np.testing.assert_allclose(S.timesteps("dpmpp_2m", 4, 9), [8, 6, 4, 2, 0])
    heun_t = S.timesteps("heun", 5, 100, alphas_cumprod=SMALL)
    assert heun_t.shape == (6,) and heun_t[-1] == -1
    np.testing.assert_allclose(heun_t[[0, 4]], [99, 0], atol=1e-3)
    assert np.all(np.diff(heun_t) < 0)
    for sampler in S.SAMPLERS:
        for steps in (1, 7):
            expected = 2 * steps - 1 if sampler == "heun" else steps
            assert S.num_evaluations(sampler, steps) == expected


LOOP_CASES = {
    "ddpm-full": ("ddpm", 100, {"variance": "small"}),
    "ddpm-respaced-large": ("ddpm", 17, {"variance": "large"}),
    "ddpm-respaced-learned-clip": ("ddpm", 17, {"variance": "learned", "clip_x0": True}),
    "ddpm-respaced-small-clip": ("ddpm", 17, {"variance": "small", "clip_x0": True}),
    "ddim-eta-clip": ("ddim", 17, {"eta": 0.5, "clip_x0": True}),
    "ddim-eta1-clip": ("ddim", 17, {"eta": 1.0, "clip_x0": True}),
    "dpmpp_2m": ("dpmpp_2m", 17, {}),
    "heun": ("heun", 17, {}),
    "heun-sigma_max": ("heun", 17, {"sigma_max": 2.0}),
}
LOOP_SHAPE = (4, 4, 1)
# Cases also run with the table passed as a jit argument (traced).
TRACED_CASES = ("ddpm-respaced-learned-clip", "ddim-eta-clip", "dpmpp_2m", "heun")


def _loop_record(steps):
    return (steps - 1, 0, steps // 2)


@pytest.fixture(scope="module")
def loop_runs():
    """Every case of ``LOOP_CASES`` in one jitted program (one compilation), together with
    the test's own draws of the noise for each case."""
    key = jax.random.key(3)

    @jax.jit
    def run(traced_table, key):
        results = {}
        cases = [(name, SMALL, case) for name, case in LOOP_CASES.items()]
        cases += [("traced-" + name, traced_table, LOOP_CASES[name]) for name in TRACED_CASES]
        for name, table, (sampler, steps, kw) in cases:
            den = analytic(SMALL, sd=LOOP_SD, var_frac=kw.get("variance") == "learned")
            kw = {"clip_x0": False, **kw}
            out = S.sample(den, table, key, LOOP_SHAPE, sampler=S.get_sampler(sampler, **kw), steps=steps, record=_loop_record(steps))
            results[name] = (out, draws(key, LOOP_SHAPE, steps))
        data = MU + LOOP_SD * jax.random.normal(key, LOOP_SHAPE)
        results["encode"] = (data, S.ddim_encode(analytic(SMALL, sd=LOOP_SD), SMALL, data, steps=17))
        return results

    return jax.tree.map(lambda a: np.asarray(a, np.float64), run(jnp.asarray(SMALL), key))


@pytest.mark.parametrize("case", list(LOOP_CASES))
def test_scan_matches_plain_loop(loop_runs, case):
    """The scan equals a step-by-step loop of the paper's update, with the same noise,
    and ``record`` holds that loop's predicted x0 at the requested steps."""
    sampler, steps, kw = LOOP_CASES[case]
    kw = {"clip_x0": False, **kw}
    record = _loop_record(steps)
    (out, x0_rec), noise = loop_runs[case]
    assert out.shape == LOOP_SHAPE and x0_rec.shape == (3,) + LOOP_SHAPE
    if sampler == "ddpm":
        ref, ref_x0 = ref_ddpm(SMALL, noise, steps, kw["variance"], kw["clip_x0"])
    elif sampler == "ddim":
        ref, ref_x0 = ref_ddim(SMALL, noise, steps, kw["eta"], kw["clip_x0"])
    elif sampler == "dpmpp_2m":
        ref, ref_x0 = ref_dpmpp_2m(SMALL, noise, steps)
    else:
        ref, ref_x0 = ref_heun(SMALL, noise, steps, sigma_max=kw.get("sigma_max"))
    np.testing.assert_allclose(out, ref, atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(x0_rec, ref_x0[list(record)], atol=2e-4, rtol=2e-4)
    if kw["clip_x0"]:  # the clipping was exercised early on, where it changes the path
        assert np.abs(ref_x0[: steps // 2]).max() == 1.0
    if sampler == "heun":  # the final Euler step to sigma = 0 lands on D
        np.testing.assert_allclose(x0_rec[0], out, atol=1e-6)


def test_ddim_encode_matches_plain_loop(loop_runs):
    """DDIM inversion: Euler steps of the eta=0 ODE forward, eps taken at the current
    point and timestep (the data is treated as x_{t_0} for the first step)."""
    data, latent = loop_runs["encode"]
    ab = SMALL.astype(np.float64)
    ts = spaced(len(ab), 17)[::-1]  # increasing
    x, a_cur, t_cur = data, 1.0, ts[0]
    for t in ts:
        eps = np_eps(ab, x, t_cur)
        x0 = (x - np.sqrt(1 - a_cur) * eps) / np.sqrt(a_cur)
        x = np.sqrt(ab[t]) * x0 + np.sqrt(1 - ab[t]) * eps
        a_cur, t_cur = ab[t], t
    np.testing.assert_allclose(latent, x, atol=2e-4, rtol=2e-4)


def test_ancestral_ddpm_matches_data_distribution():
    """DDPM with T steps samples N(MU, SD^2); the respaced chain matches its exact moments."""
    n = 16000

    @jax.jit
    def run(key):
        full = S.sample(analytic(BIG), BIG, key, (n,), sampler=S.DDPM(clip_x0=False), steps=1000)
        large = S.sample(analytic(BIG), BIG, key, (n,), sampler=S.DDPM(variance="large", clip_x0=False), steps=50)
        return full, large

    full, large = (np.asarray(a, np.float64) for a in run(jax.random.key(0)))
    assert abs(full.mean() - MU) < 0.015 and abs(full.std() - SD) < 0.015, (full.mean(), full.std())
    # The 50-step respaced chain is a linear Gaussian map of x_T: its exact moments. With
    # "small" its std would be 0.44, with the wrong (unrespaced) betas far from 0.518.
    ab = BIG.astype(np.float64)
    ts = spaced(1000, 50)
    m, v = 0.0, 1.0
    for i, t in enumerate(ts):
        a, a_prev = ab[t], (ab[ts[i + 1]] if i + 1 < 50 else 1.0)
        beta = 1 - a / a_prev
        c = np.sqrt(1 - a) / (a * SD**2 + 1 - a)
        k = beta / np.sqrt(1 - a)
        gain, shift = (1 - k * c) / np.sqrt(1 - beta), k * c * np.sqrt(a) * MU / np.sqrt(1 - beta)
        m, v = gain * m + shift, gain**2 * v + beta * (i + 1 < 50)
    assert abs(np.sqrt(v) - 0.518) < 0.002
    assert abs(large.mean() - m) < 0.015 and abs(large.std() - np.sqrt(v)) < 0.01, (large.std(), np.sqrt(v))


def test_deterministic_samplers_follow_the_exact_flow():
    """DDIM(eta=0), DPM-Solver++(2M) and Heun solve the probability-flow ODE: each output
    is the exact flow map of its x_T, so the outputs are N(MU, SD^2) samples."""
    shape = (1024,)
    key = jax.random.key(1)

    @jax.jit
    def run(key):
        den = analytic(BIG)
        return (
            S.sample(den, BIG, key, shape, sampler=S.DDIM(clip_x0=False), steps=1000),
            S.sample(den, BIG, key, shape, sampler=S.DDIM(clip_x0=False), steps=50),
            S.sample(den, BIG, key, shape, sampler="dpmpp_2m", steps=50),
            S.sample(den, BIG, key, shape, sampler="heun", steps=60),
            draws(key, shape, 1)[0],
        )

    ddim, ddim50, dpm, heun, x_T = (np.asarray(a, np.float64) for a in run(key))
    exact, exact_t0 = flow_map(BIG, x_T), flow_map(BIG, x_T, t_end=0)
    assert np.abs(ddim - exact).max() < 0.02
    assert np.abs(heun - exact).max() < 0.02
    assert np.abs(dpm - exact_t0).max() < 0.02
    # Second order beats first order at the same number of evaluations.
    assert np.abs(ddim50 - exact).max() > 5 * np.abs(dpm - exact_t0).max()
    for out in (ddim, heun, dpm):
        assert abs(out.mean() - MU) < 0.05 and abs(out.std() - SD) < 0.05


def test_ddim_eta_one_is_ancestral_ddpm_with_small_variance(loop_runs):
    """Song et al. Sec. 4.1: eta = 1 gives the DDPM posterior with variance beta_tilde."""
    (ddim, _), _ = loop_runs["ddim-eta1-clip"]
    (ddpm, _), _ = loop_runs["ddpm-respaced-small-clip"]
    np.testing.assert_allclose(ddim, ddpm, atol=1e-4)


def test_ddim_is_deterministic_and_inverts():
    steps, shape = 1000, (64,)
    den = analytic(BIG)
    decode = jax.jit(lambda k, x_T: S.sample(den, BIG, k, shape, sampler=S.DDIM(clip_x0=False), steps=steps, x_T=x_T, record=(steps - 1, 0)))
    x_T = jax.random.normal(jax.random.key(0), shape)
    a, a_rec = decode(jax.random.key(1), x_T)
    b, _ = decode(jax.random.key(2), x_T)
    np.testing.assert_array_equal(a, b)  # eta = 0: the key plays no role given x_T
    np.testing.assert_array_equal(a_rec[0], a)  # x0 predicted at the last step is the sample
    assert a.dtype == jnp.float32
    # Round trip through the ODE: data -> x_T -> data.
    data = MU + SD * jax.random.normal(jax.random.key(7), shape)
    latent = jax.jit(lambda x: S.ddim_encode(den, BIG, x, steps=steps))(data)
    np.testing.assert_allclose(latent, (data - MU) / SD, atol=0.05)  # the inverse flow map
    back, _ = decode(jax.random.key(0), latent)
    np.testing.assert_allclose(back, data, atol=0.02)


def test_vmap_equals_single_samples():
    shape, n = (3,), 4
    den = analytic(SMALL)
    kw = {"sampler": "ddpm", "steps": 10, "record": (2, 9)}

    @jax.jit
    def run(key):
        batch = S.sample_batch(den, SMALL, key, n, shape, **kw)
        # One unbatched sample per key, one after the other (lax.map is a loop, not vmap).
        singles = jax.lax.map(lambda k: S.sample(den, SMALL, k, shape, **kw), jax.random.split(key, n))
        return batch, singles

    (batch, batch_rec), (singles, singles_rec) = run(jax.random.key(4))
    assert batch.shape == (n,) + shape and batch_rec.shape == (n, 2) + shape
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    np.testing.assert_allclose(batch_rec, singles_rec, atol=1e-6)
    assert np.abs(np.diff(np.asarray(batch), axis=0)).min() > 0  # distinct keys, distinct samples


@pytest.mark.parametrize("case", TRACED_CASES)
def test_traced_table_matches_concrete_table(loop_runs, case):
    """With ``alphas_cumprod`` a jit argument the coefficients are computed in float32
    inside the program instead of float64 on the host; the samples agree."""
    (traced, traced_rec), _ = loop_runs["traced-" + case]
    (concrete, concrete_rec), _ = loop_runs[case]
    np.testing.assert_allclose(traced, concrete, atol=2e-4, rtol=2e-4)
    np.testing.assert_allclose(traced_rec, concrete_rec, atol=2e-4, rtol=2e-4)


def _compile_seconds(fn, key):
    start = time.perf_counter()
    jax.jit(fn).lower(key).compile()
    return time.perf_counter() - start


def test_compile_time_does_not_grow_with_steps():
    """A 1000-step sampler compiles as fast as a 10-step one (steps live in a scan).

    Up to three interleaved measurements of each, keeping the minimum, so a burst of load
    on the shared CPU does not decide the outcome; an unrolled loop would be ~100x slower
    and could never pass.
    """
    den = lambda x, t: S.Prediction(eps=0.1 * x)
    key = jax.random.key(0)
    times = {10: [], 1000: []}
    for rep in range(3):
        shape = (4 + rep,)  # a new program each time: identical ones would hit JAX's compile cache
        for steps, seconds in times.items():
            fn = functools.partial(S.sample, den, BIG, shape=shape, sampler="ddpm", steps=steps)
            seconds.append(_compile_seconds(lambda k, fn=fn: fn(k), key))
        if min(times[1000]) < 1.3 * min(times[10]):
            break
    assert min(times[1000]) < 1.3 * min(times[10]), times


def test_denoiser_is_traced_a_fixed_number_of_times():
    for sampler in S.SAMPLERS:
        counts = []
        for steps in (2, 10, 1000):
            calls = []

            def den(x, t, calls=calls):
                calls.append(1)
                return S.Prediction(eps=0.1 * x)

            fn = functools.partial(S.sample, den, BIG, shape=(4,), sampler=sampler, steps=steps)
            jax.make_jaxpr(lambda k, fn=fn: fn(k))(jax.random.key(0))
            counts.append(len(calls))
        assert counts[0] == counts[1] == counts[2] <= 3, (sampler, counts)


def test_network_evaluations_are_counted_at_run_time():
    calls = {name: 0 for name in S.SAMPLERS}
    steps = {"ddpm": 6, "ddim": 5, "dpmpp_2m": 4, "heun": 5}

    def counting(name):
        base = analytic(SMALL)

        def bump():
            calls[name] += 1

        def den(x, t):
            jax.debug.callback(bump)
            return base(x, t)

        return den

    @jax.jit
    def run(key):
        outs = [S.sample(counting(s), SMALL, key, (2,), sampler=s, steps=steps[s]) for s in S.SAMPLERS]
        outs.append(S.sample(counting("heun"), SMALL, key, (2,), sampler="heun", steps=1))
        return outs

    jax.block_until_ready(run(jax.random.key(0)))
    jax.effects_barrier()
    for s in ("ddpm", "ddim", "dpmpp_2m"):
        assert calls[s] == S.num_evaluations(s, steps[s]) == steps[s]
    assert calls["heun"] == S.num_evaluations("heun", 5) + S.num_evaluations("heun", 1) == 9 + 1


def test_build_sampler_spreads_over_devices():
    assert jax.device_count() == 8
    shape, n = (2, 2, 1), 16
    built = []

    def denoiser_of(params):
        built.append(1)
        return analytic(SMALL, mu=params["mu"], sd=params["sd"])

    params = {"mu": jnp.float32(-0.2), "sd": jnp.float32(0.3)}
    key = jax.random.key(11)
    kw = {"sampler": "ddim", "steps": 8}
    expected = jax.jit(lambda k: S.sample_batch(denoiser_of(params), SMALL, k, n, shape, **kw))(key)
    for parallel in ("jit", "pmap"):
        fn = S.build_sampler(denoiser_of, SMALL, shape, parallel=parallel, **kw)
        before = len(built)
        out = fn(params, key, n)
        assert out.shape == (n,) + shape and out.dtype == jnp.float32
        np.testing.assert_allclose(out, expected, atol=1e-5)
        np.testing.assert_allclose(fn(params, key, n), expected, atol=1e-5)  # cached: no retrace
        assert len(built) - before == 1
        with pytest.raises(ValueError, match="num"):
            fn(params, key, 12)


def _scan_carry_dtypes(jaxpr):
    dtypes = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            start = eqn.params["num_consts"]
            dtypes += [v.aval.dtype for v in eqn.invars[start : start + eqn.params["num_carry"]]]
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            dtypes += _scan_carry_dtypes(sub)
    return dtypes


def test_bfloat16_network_keeps_float32_sampling():
    def apply_fn(x, t):  # a "network" computing in bfloat16
        a = interp_abar(SMALL, t)[:, None, None, None].astype(jnp.bfloat16)
        x = x.astype(jnp.bfloat16)
        return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * MU) / (a * SD**2 + 1 - a)

    den = S.denoiser_from_apply(apply_fn, alphas_cumprod=SMALL)
    assert jax.eval_shape(apply_fn, jnp.zeros((1, 2, 2, 1)), jnp.zeros(1)).dtype == jnp.bfloat16
    assert jax.eval_shape(den, jnp.zeros((2, 2, 1)), jnp.float32(3.0)).eps.dtype == jnp.float32

    def raw(x, t):  # a denoiser that hands back bfloat16 itself
        return S.Prediction(eps=analytic(SMALL)(x, t).eps.astype(jnp.bfloat16))

    key = jax.random.key(0)
    for sampler in S.SAMPLERS:
        for d in (den, raw):
            fn = functools.partial(S.sample, d, SMALL, shape=(2, 2, 1), sampler=sampler, steps=5, record=(1,))
            closed = jax.make_jaxpr(lambda k, fn=fn: fn(k))(key)
            assert [a.dtype for a in closed.out_avals] == [jnp.float32, jnp.float32]
            carry = _scan_carry_dtypes(closed.jaxpr)
            assert carry and all(dt == jnp.float32 for dt in carry if jnp.issubdtype(dt, jnp.floating)), carry

    @jax.jit
    def run(k):
        kw = {"sampler": "ddim", "steps": 10}
        return S.sample(den, SMALL, k, (2, 2, 1), **kw), S.sample(analytic(SMALL), SMALL, k, (2, 2, 1), **kw)

    low, high = run(key)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, high, atol=0.05)


def test_denoiser_from_apply_parameterizations():
    x_t = jax.random.normal(jax.random.key(0), (2, 2, 1))
    t = jnp.float32(12.5)  # non-integer: abar interpolated linearly
    a = interp_abar(SMALL, t)
    eps = analytic(SMALL)(x_t, t).eps
    x0 = (x_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
    v = jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0  # Salimans & Ho: v = alpha eps - sigma x0
    raw = jnp.tanh(x_t)
    for param, target in (("eps", eps), ("x0", x0), ("v", v)):
        seen = []

        def apply_fn(xb, tb, target=target, seen=seen):
            seen.append((xb.shape, tb.shape))
            return jnp.concatenate([target, raw], axis=-1)[None]

        den = S.denoiser_from_apply(apply_fn, parameterization=param, learned_variance=True, alphas_cumprod=SMALL)
        pred = jax.jit(den)(x_t, t)
        assert seen[0] == ((1, 2, 2, 1), (1,))
        np.testing.assert_allclose(pred.eps, eps, atol=1e-5)
        np.testing.assert_allclose(pred.var_frac, (raw + 1) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="parameterization"):
        S.denoiser_from_apply(lambda x, t: x, parameterization="score", alphas_cumprod=SMALL)


def test_bad_inputs_raise():
    den = analytic(SMALL)
    key = jax.random.key(0)

    def call(table=SMALL, sampler="ddim", steps=10, record=(), x_T=None, **options):
        # abstract evaluation: the errors come at trace time
        built = S.get_sampler(sampler, **options)
        return jax.eval_shape(lambda k: S.sample(den, table, k, (2,), sampler=built, steps=steps, record=record, x_T=x_T), key)

    with pytest.raises(ValueError, match=r"sampler.*ddpm.*ddim.*dpmpp_2m.*heun"):
        call(sampler="euler")
    with pytest.raises(ValueError, match=r"sampler.*ddpm.*ddim.*dpmpp_2m.*heun"):
        jax.eval_shape(lambda k: S.sample(den, SMALL, k, (2,), sampler="euler", steps=10), key)
    with pytest.raises(ValueError, match=r"steps.*\[1, T=100\]"):
        call(steps=0)
    with pytest.raises(ValueError, match=r"steps.*\[1, T=100\]"):
        call(steps=101)
    with pytest.raises(ValueError, match="steps"):
        S.ddim_encode(den, SMALL, jnp.zeros(2), steps=101)
    with pytest.raises(ValueError, match="steps"):
        S.num_evaluations("heun", 0)
    with pytest.raises(ValueError, match="sampler"):
        S.num_evaluations("euler", 3)
    with pytest.raises(ValueError, match="eta"):
        call(eta=-0.1)
    with pytest.raises(ValueError, match="eta"):
        call(sampler="ddpm", eta=0.5)
    with pytest.raises(ValueError, match="variance"):
        call(sampler="ddpm", variance="medium")
    with pytest.raises(ValueError, match="variance"):
        call(sampler="ddpm", variance="learned")  # the denoiser has no var_frac
    with pytest.raises(ValueError, match="record"):
        call(record=(10,))
    with pytest.raises(ValueError, match="record"):
        call(record=(-1,))
    with pytest.raises(ValueError, match="alphas_cumprod"):
        call(table=np.stack([SMALL, SMALL]))
    with pytest.raises(ValueError, match="alphas_cumprod"):
        call(table=SMALL[::-1].copy())
    with pytest.raises(ValueError, match="alphas_cumprod"):
        call(table=np.concatenate([[1.0], SMALL[1:]]).astype(np.float32))
    with pytest.raises(ValueError, match="alphas_cumprod"):
        call(table=np.concatenate([SMALL[:-1], [0.0]]).astype(np.float32))
    with pytest.raises(ValueError, match="x_T"):
        call(x_T=jnp.zeros(3))
    with pytest.raises(ValueError, match="sigma_min"):
        call(sampler="heun", sigma_min=1e-6)
    with pytest.raises(ValueError, match="sigma_max"):
        call(sampler="heun", sigma_max=1e6)
    with pytest.raises(ValueError, match="sigma_min"):
        call(sampler="ddim", sigma_min=0.1)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        S.timesteps("heun", 5, 100)
    with pytest.raises(ValueError, match="parallel"):
        S.build_sampler(lambda p: den, SMALL, (2,), sampler="ddim", steps=5, parallel="shard_map")
    with pytest.raises(ValueError, match="steps"):
        S.build_sampler(lambda p: den, SMALL, (2,), sampler="ddim", steps=500)


# ---------------------------------------------------------------- registry and steps


def test_registry_names_every_sampler_once():
    assert dict(S.SAMPLERS) == {"ddpm": S.DDPM, "ddim": S.DDIM, "dpmpp_2m": S.DPMpp2M, "heun": S.Heun}
    for name, cls in S.SAMPLERS.items():
        sampler = S.get_sampler(name)
        assert type(sampler) is cls and isinstance(sampler, S.Sampler)
        assert sampler == cls() and hash(sampler) == hash(cls())  # frozen: usable as a static argument
    ddim = S.get_sampler("ddim", eta=0.5, clip_x0=False)
    assert ddim == S.DDIM(eta=0.5, clip_x0=False)
    with pytest.raises(AttributeError):
        ddim.eta = 1.0  # type: ignore[misc]
    assert S.get_sampler("heun", sigma_max=2.0, rho=5.0) == S.Heun(sigma_max=2.0, rho=5.0)


def test_unknown_sampler_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"sampler: unknown name 'euler'; known samplers: ddpm, ddim, dpmpp_2m, heun"):
        S.get_sampler("euler")
    with pytest.raises(ValueError, match="known samplers: ddpm, ddim, dpmpp_2m, heun"):
        S.num_evaluations("euler", 3)
    with pytest.raises(TypeError, match="sampler"):
        S.sample(analytic(SMALL), SMALL, jax.random.key(0), (2,), sampler=3, steps=2)


def test_bad_sampler_options_are_named():
    with pytest.raises(ValueError, match=r"eta: not an option of the 'ddpm' sampler; its options are \('variance', 'clip_x0'\)"):
        S.get_sampler("ddpm", eta=0.5)
    with pytest.raises(ValueError, match=r"variance: not an option of the 'heun' sampler.*sigma_min.*sigma_max.*rho.*clip_x0"):
        S.get_sampler("heun", variance="small")
    bad_values = [
        (lambda: S.DDIM(eta=-0.1), "eta"),
        (lambda: S.DDIM(eta=float("nan")), "eta"),
        (lambda: S.DDPM(variance="medium"), "variance"),
        (lambda: S.Heun(rho=0.0), "rho"),
        (lambda: S.Heun(sigma_min=-1.0), "sigma_min"),
        (lambda: S.Heun(sigma_min=2.0, sigma_max=1.0), "sigma_min"),
    ]
    for make, field in bad_values:
        with pytest.raises(ValueError, match=f"^{field}: "):
            make()
    bad_types = [
        (lambda: S.DDPM(clip_x0="yes"), "clip_x0"),
        (lambda: S.DPMpp2M(clip_x0=1), "clip_x0"),
        (lambda: S.DDIM(eta="0.5"), "eta"),
        (lambda: S.Heun(sigma_max="2"), "sigma_max"),
    ]
    for make, field in bad_types:
        with pytest.raises(TypeError, match=f"^{field}: "):
            make()


def test_plain_array_denoiser_is_refused_by_name():
    """A denoiser returning eps as a bare array is refused: it could be eps, x0 or v."""
    key = jax.random.key(0)
    for name in S.SAMPLERS:
        with pytest.raises(TypeError, match=r"denoiser: must return a genjax\.samplers\.Prediction"):
            jax.eval_shape(lambda k, name=name: S.sample(lambda x, t: 0.1 * x, SMALL, k, (2,), sampler=name, steps=3), key)
    with pytest.raises(TypeError, match="denoiser_from_apply"):
        S.ddim_encode(lambda x, t: 0.1 * x, SMALL, jnp.zeros(2), steps=3)


def test_custom_loop_of_public_steps_equals_sample():
    """``step_table``, ``init``, ``step`` over ``table_row`` and ``result`` are ``sample``."""
    shape, steps = (3,), 5
    key = jax.random.key(5)
    den = analytic(SMALL, var_frac=True)
    record = tuple(range(steps))
    for sampler in (S.DDPM(variance="learned"), S.DDIM(eta=0.5), S.DPMpp2M(), S.Heun(rho=5.0, clip_x0=True)):
        out, x0_rec = jax.jit(lambda k, s=sampler: S.sample(den, SMALL, k, shape, sampler=s, steps=steps, record=record))(key)
        table = sampler.step_table(SMALL, steps)
        k_init, k_steps = jax.random.split(key)
        state = sampler.init(table, jax.random.normal(k_init, shape))
        # Op by op or compiled, round-off differs by a few ulps of the largest carried
        # value (Heun's EDM-scale x reaches sigma_max |x_T|, ~160 |x_T| here).
        atol = 1e-6 * max(1.0, float(jnp.abs(jax.tree.leaves(state)[0]).max()))
        x0s = []
        for i, k in enumerate(jax.random.split(k_steps, steps)):
            state, x0 = sampler.step(S.table_row(table, i), den, state, k)
            x0s.append(x0)
        np.testing.assert_allclose(sampler.result(state), out, atol=atol, err_msg=repr(sampler))
        np.testing.assert_allclose(np.stack(x0s), x0_rec, atol=atol, err_msg=repr(sampler))
        with pytest.raises(ValueError, match="row"):
            sampler.step(table, den, state, k_steps)  # the whole table, not one row


def test_sampler_names_are_the_default_objects():
    key = jax.random.key(2)

    @jax.jit
    def run(k):
        return [
            (S.sample(analytic(SMALL), SMALL, k, (2,), sampler=name, steps=4), S.sample(analytic(SMALL), SMALL, k, (2,), sampler=cls(), steps=4))
            for name, cls in S.SAMPLERS.items()
        ]

    for by_name, by_object in run(key):
        np.testing.assert_array_equal(by_name, by_object)
