"""Table 1 toy rows and Fig. 1 of Sohl-Dickstein et al., "Deep Unsupervised Learning using
Nonequilibrium Thermodynamics" (arXiv:1503.03585): the lower bound K on the
log-likelihood of a Gaussian diffusion model of the 2D swiss roll (T = 40) and of a
binomial diffusion model of 20-bit "heartbeat" sequences (T = 2000).

    python experiments/diffusion_toy/run.py --out experiments/diffusion_toy --workdir runs/diffusion_toy

trains three models with the genjax engine (checkpoints in ``--workdir``: a killed run
resumes where it stopped): the swiss roll, a ten times thinner swiss roll, and the
heartbeat data. It evaluates K in bits with all T - 1 KL terms, the bound of the best
kernels of each family for the learned schedule (``oracle_reverse``) and the true
log-likelihood of the data, and writes ``results.json``, ``trajectories.png`` and
``trajectories_thin.png`` (Fig. 1: the forward diffusion at t = 0, T/2, T and the learned
reverse diffusion at t = T, T/2, 0), ``heartbeat.png`` (data and samples) and
``training.png`` into ``--out``. If ``--out`` holds a RESULTS.md with
``<!-- table:begin -->``/``<!-- table:end -->`` markers, the table between them is
rewritten with the measured numbers. ``--tiny`` is a seconds-long smoke run (tests).

Data:

* Swiss roll: the distribution of genjax's ``sample_toy2d(key, "swiss_roll", n)``
  (scikit-learn's roll in the (x, z) plane, ``t = 1.5 pi (1 + 2u)``, noise 0.25, divided
  by 7.5), then centred and divided by one scalar so that the isotropic Gaussian fitted
  to it is N(0, I), the paper's convention (its null model is a unit isotropic Gaussian,
  L_null = -log2(2 pi e) = -4.094 bits). Mean, scale and the true density of the data
  (whose mean log is the ceiling of K) come from quadrature over the roll parameter.
  The thin roll is the same curve with noise 0.025.
* Heartbeat: 20 bins with a 1 every 5th bin and a uniformly random offset (5 equally
  likely sequences; true log-likelihood -log2 5 = -2.32 bits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genjax.data.toy2d import SWISS_DIVISOR, SWISS_NOISE, SwissRoll
from genjax.data.toy_sequences import heartbeat_sequences, sample_heartbeat
from genjax.hardware import device_description
from genjax.models import sohl_dickstein as sd
from genjax.train import (
    Checkpointer,
    MetricsWriter,
    LossUpdate,
    build_train_step,
    create_train_state,
    make_optimizer,
    num_params,
    read_metrics,
    train,
)

HERE = pathlib.Path(__file__).resolve().parent
LOG2 = math.log(2.0)

PAPER = {"swiss_roll_K_bits": 2.35, "swiss_roll_K_minus_isotropic_bits": 6.45, "heartbeat_K_bits": -2.414, "heartbeat_K_minus_independent_bits": 12.024}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Hyperparameters of one model's run."""

    steps: int
    batch_size: int
    learning_rate: float
    hidden: tuple[int, ...]
    activation: str
    eval_examples: int
    num_steps: int  # the diffusion's T
    oracle_examples: int = 0  # examples for the bound of the best kernel (0: skip)
    figure_samples: int = 2000  # samples per panel of the figures
    noise: float = SWISS_NOISE  # swiss roll only: noise std in the raw units of toy2d (before / 7.5)
    beta_1: float = 1e-4  # Gaussian only: the fixed first-step variance
    warmup_steps: int = 200
    grad_clip: float | None = 1.0
    log_every: int = 100
    checkpoint_every: int = 1000


_MLP = {"hidden": (256, 256, 256), "activation": "relu"}
FULL = {
    # toy2d's swiss roll (noise 0.25): the main row.
    "swiss_roll": RunConfig(steps=8000, batch_size=256, learning_rate=2e-3, eval_examples=20000, oracle_examples=1000, num_steps=40, **_MLP),
    # The same curve with a tenth of the noise, about as thin as the paper's K implies.
    "swiss_roll_thin": RunConfig(steps=10000, batch_size=256, learning_rate=2e-3, eval_examples=20000, oracle_examples=1000, num_steps=40, noise=0.025, beta_1=3e-6, **_MLP),
    "heartbeat": RunConfig(steps=20000, batch_size=256, learning_rate=2e-3, eval_examples=2000, oracle_examples=1000, num_steps=2000, **_MLP),
}
_TINY = {"steps": 10, "batch_size": 32, "learning_rate": 1e-3, "hidden": (16,), "activation": "tanh", "warmup_steps": 0, "log_every": 5, "checkpoint_every": 10}
TINY = {
    "swiss_roll": RunConfig(eval_examples=64, num_steps=40, figure_samples=100, **_TINY),
    # T = 50 instead of 2000 keeps the smoke run to seconds.
    "heartbeat": RunConfig(eval_examples=40, num_steps=50, figure_samples=100, **_TINY),
}


# ---------------------------------------------------------------- null model


def isotropic_gaussian_log_likelihood(x: np.ndarray) -> float:
    """Mean log-likelihood (nats) of ``x`` under the ML isotropic Gaussian fitted to it."""
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    var = np.mean((x - x.mean(0)) ** 2)
    return -0.5 * d * (math.log(2.0 * math.pi * var) + 1.0)


# ---------------------------------------------------------------------- training


def train_model(name: str, model: sd.Model, cfg: RunConfig, batches: Any, workdir: pathlib.Path, seed: int) -> tuple[Any, dict[str, Any]]:
    """Trains (or resumes) one model with the genjax engine; returns params and a record."""
    key = jax.random.key(seed)
    params = model.init(jax.random.fold_in(key, 1))
    optimizer = make_optimizer(
        "adam", learning_rate=cfg.learning_rate, schedule="cosine", warmup_steps=cfg.warmup_steps, decay_steps=max(cfg.steps - cfg.warmup_steps, 1), grad_clip=cfg.grad_clip
    )
    state = create_train_state(params, optimizer)
    step_fn = build_train_step(LossUpdate(sd.make_loss(model), optimizer), parallel="jit", devices=jax.devices()[:1])
    run_dir = workdir / name
    metrics_path = run_dir / "metrics.jsonl"
    print(f"[{name}] training {cfg.steps} steps of batch {cfg.batch_size}, {num_params(params):,} parameters, workdir {run_dir}", flush=True)
    result = train(
        train_step=step_fn,
        state=state,
        batches=batches,
        key=jax.random.fold_in(key, 2),
        num_steps=cfg.steps,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        checkpointer=Checkpointer(run_dir / "checkpoints", max_to_keep=2),
        metrics=MetricsWriter(metrics_path),
        metadata={"name": name, "config": dataclasses.asdict(cfg)},
        progress=False,
    )
    records = read_metrics(metrics_path)
    for r in records[-1:]:
        print(f"[{name}] step {r['step']}: minibatch K estimate {r['K_bits']:.3f} bits, train wall time {result.wall_time_s:.1f} s", flush=True)
    return result.state.params, {"train_wall_time_s": result.wall_time_s, "start_step": result.start_step, "curve": [(r["step"], r["K_bits"]) for r in records]}


def mean_and_stderr(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def run_swiss_roll(name: str, cfg: RunConfig, workdir: pathlib.Path, seed: int, tiny: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trains and evaluates the Gaussian model of one swiss roll; metric names start with ``name``."""
    data = SwissRoll(noise=cfg.noise / SWISS_DIVISOR, grid=2000 if tiny else 20000)
    model = sd.GaussianDiffusion(data_dim=2, num_steps=cfg.num_steps, beta_1=cfg.beta_1, final_alpha_bar=1e-3, learn_beta=True, hidden=cfg.hidden, activation=cfg.activation)
    base = jax.random.key(seed + 100)

    def batches(step: int) -> dict[str, np.ndarray]:
        return {"x0": data.sample(jax.random.fold_in(base, step), cfg.batch_size)}

    params, record = train_model(name, model, cfg, batches, workdir, seed)
    tic = time.perf_counter()
    x_eval = data.sample(jax.random.key(seed + 7), cfg.eval_examples)
    bound = sd.evaluate_bound(model, params, x_eval, jax.random.key(seed + 8))
    k, k_se = mean_and_stderr(bound["k"] / LOG2)
    k14, k14_se = mean_and_stderr(bound["k_eq14"] / LOG2)
    l_null = isotropic_gaussian_log_likelihood(x_eval) / LOG2
    ceiling, ceiling_se = mean_and_stderr(data.log_density(x_eval) / LOG2)
    diff, diff_se = mean_and_stderr(bound["k"] / LOG2 - l_null)
    key_s, key_f = jax.random.split(jax.random.key(seed + 9))
    n_fig = min(cfg.figure_samples, cfg.eval_examples)
    reverse_path = np.asarray(jax.jit(lambda p, k: model.sample(p, k, n_fig, trajectory=True))(params, key_s))
    # The forward panels need only the marginals q(x_t | x_0), drawn in closed form.
    x_fig = jnp.asarray(x_eval[:n_fig])
    betas_fig = model.betas(params)
    forward_path = {}
    for i, t in enumerate((model.num_steps // 2, model.num_steps)):
        mean, var = model.forward_marginal(betas_fig, x_fig, t)
        forward_path[t] = np.asarray(mean + jnp.sqrt(var) * jax.random.normal(jax.random.fold_in(key_f, i), x_fig.shape))
    forward_path[0] = np.asarray(x_fig)
    oracle = {}
    if cfg.oracle_examples:
        # The best diagonal-Gaussian kernels for this schedule: the data as a mixture of Gaussians
        # on the roll, with nodes spaced at most half a noise std apart.
        centres = (data.nodes - data.mean) / data.scale
        sigma = data.noise / data.scale
        spacing = np.median(np.linalg.norm(np.diff(centres, axis=0), axis=1))
        centres = centres[:: max(1, int(0.5 * sigma / spacing))]
        n = cfg.oracle_examples
        best = sd.evaluate_bound(model, params, x_eval[:n], jax.random.key(seed + 8), chunk=16, reverse=model.oracle_reverse(params, centres, sigma**2))
        ok, ok_se = mean_and_stderr(best["k"] / LOG2)
        gain, gain_se = mean_and_stderr((best["k"] - bound["k"][:n]) / LOG2)  # paired: same x_0, same x_t
        oracle = {"oracle_K_bits": ok, "oracle_K_bits_stderr": ok_se, "oracle_minus_learned_bits": gain, "oracle_minus_learned_bits_stderr": gain_se, "oracle_examples": n, "oracle_nodes": int(centres.shape[0])}
        print(f"[{name}] best diagonal-Gaussian kernels for this schedule: K = {ok:.3f} +- {ok_se:.3f} bits, {gain:.3f} +- {gain_se:.3f} above the learned (paired, {n} examples)", flush=True)
    samples_logp = data.log_density(reverse_path[0]) / LOG2
    near_samples = float(np.mean(data.distance_to_roll(reverse_path[0]) < 3.0))
    near_data = float(np.mean(data.distance_to_roll(x_eval[:n_fig]) < 3.0))
    betas = np.asarray(model.betas(params), np.float64)
    metrics = {
        "K_bits": k,
        "K_bits_stderr": k_se,
        "K_eq14_bits": k14,
        "K_eq14_bits_stderr": k14_se,
        "K_minus_isotropic_bits": diff,
        "K_minus_isotropic_bits_stderr": diff_se,
        "isotropic_L_null_bits": l_null,
        "data_log_likelihood_bits": ceiling,
        "data_log_likelihood_bits_stderr": ceiling_se,
        "K_bits_toy2d_units": k - 2.0 * math.log2(data.scale),
        "samples_median_data_log_density_bits": float(np.median(samples_logp)),
        "samples_within_3_noise_std_of_roll": near_samples,
        "data_within_3_noise_std_of_roll": near_data,
        "noise_std_toy2d_units": data.noise,
        "scale": data.scale,
        "mean": [float(v) for v in data.mean],
        "noise_std_standardised": data.noise / data.scale,
        "beta_1": cfg.beta_1,
        "eval_examples": cfg.eval_examples,
        "train_steps": cfg.steps,
        "train_wall_time_s": record["train_wall_time_s"],
        "eval_wall_time_s": time.perf_counter() - tic,
        "learned_beta": [float(b) for b in betas],
        "alpha_bar_T": float(np.prod(1.0 - betas)),
        **oracle,
    }
    metrics = {f"{name}_{k}": v for k, v in metrics.items()}
    print(
        f"[{name}] K = {k:.3f} +- {k_se:.3f} bits (eq. 14 form {k14:.3f}), K - L_null = {diff:.3f} bits "
        f"(L_null {l_null:.3f}); data log-likelihood (ceiling) {ceiling:.3f} +- {ceiling_se:.3f} bits; paper K = 2.35, K - L_null = 6.45",
        flush=True,
    )
    extras = {"forward": forward_path, "reverse": reverse_path, "curve": record["curve"], "final": (k, ceiling)}
    return metrics, extras


def run_heartbeat(cfg: RunConfig, workdir: pathlib.Path, seed: int, tiny: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    model = sd.BinomialDiffusion(data_dim=20, num_steps=cfg.num_steps, hidden=cfg.hidden, activation=cfg.activation)

    def batches(step: int) -> dict[str, np.ndarray]:
        return {"x0": sample_heartbeat(np.random.default_rng([seed, 200, step]), cfg.batch_size)}

    params, record = train_model("heartbeat", model, cfg, batches, workdir, seed + 1)
    tic = time.perf_counter()
    # Stratified: every offset equally often (the expectation over x_0 is then exact).
    x_eval = heartbeat_sequences()[np.arange(cfg.eval_examples) % 5]
    bound = sd.evaluate_bound(model, params, x_eval, jax.random.key(seed + 11), chunk=50)
    k, k_se = mean_and_stderr(bound["k"] / LOG2)
    l_null = sd.independent_bernoulli_log_likelihood(x_eval) / LOG2
    oracle = {}
    if cfg.oracle_examples:
        n = cfg.oracle_examples  # a multiple of 5 keeps the offsets balanced
        best = sd.evaluate_bound(model, params, x_eval[:n], jax.random.key(seed + 11), chunk=50, reverse=model.oracle_reverse(heartbeat_sequences()))
        ok, ok_se = mean_and_stderr(best["k"] / LOG2)
        gain, gain_se = mean_and_stderr((best["k"] - bound["k"][:n]) / LOG2)
        oracle = {
            "heartbeat_oracle_K_bits": ok,
            "heartbeat_oracle_K_bits_stderr": ok_se,
            "heartbeat_oracle_minus_learned_bits": gain,
            "heartbeat_oracle_minus_learned_bits_stderr": gain_se,
            "heartbeat_oracle_examples": n,
        }
        print(f"[heartbeat] best factorised Bernoulli kernels for this schedule: K = {ok:.3f} +- {ok_se:.3f} bits, {gain:.3f} +- {gain_se:.3f} above the learned (paired, {n} examples)", flush=True)
    samples = np.asarray(jax.jit(lambda p, k: model.sample(p, k, cfg.figure_samples // 4))(params, jax.random.key(seed + 12)))
    valid = np.any(np.all(samples[:, None, :] == heartbeat_sequences()[None], axis=-1), axis=1)
    metrics = {
        "heartbeat_K_bits": k,
        "heartbeat_K_bits_stderr": k_se,
        "heartbeat_K_minus_independent_bits": k - l_null,
        "heartbeat_K_minus_independent_bits_stderr": k_se,
        "heartbeat_independent_L_null_bits": l_null,
        "heartbeat_true_log_likelihood_bits": -math.log2(5.0),
        "heartbeat_K_per_offset_bits": [float(np.mean(bound["k"][np.arange(cfg.eval_examples) % 5 == o]) / LOG2) for o in range(5)],
        "heartbeat_samples_valid_fraction": float(np.mean(valid)),
        "heartbeat_eval_examples": cfg.eval_examples,
        "heartbeat_train_steps": cfg.steps,
        "heartbeat_train_wall_time_s": record["train_wall_time_s"],
        "heartbeat_eval_wall_time_s": time.perf_counter() - tic,
        **oracle,
    }
    print(
        f"[heartbeat] K = {k:.3f} +- {k_se:.3f} bits/sequence, K - L_null = {k - l_null:.3f} bits (L_null {l_null:.3f}); "
        f"true log-likelihood -2.322; {100 * np.mean(valid):.1f}% of samples are heartbeats; paper K = -2.414, K - L_null = 12.024",
        flush=True,
    )
    return metrics, {"samples": samples, "curve": record["curve"], "final": (k, -math.log2(5.0))}


# ------------------------------------------------------------------------ output


def plot_trajectories(forward: dict[int, np.ndarray], reverse: np.ndarray, noise: float, path: pathlib.Path) -> None:
    """Fig. 1 style: forward diffusion at t = 0, T/2, T (top), reverse at T, T/2, 0 (bottom)."""
    T = reverse.shape[0] - 1
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.8))
    for col, t in enumerate((0, T // 2, T)):
        axes[0, col].scatter(forward[t][:, 0], forward[t][:, 1], s=1.5, alpha=0.5, color="C0")
        axes[0, col].set_title(f"forward q, t = {t}")
    for col, t in enumerate((T, T // 2, 0)):
        axes[1, col].scatter(reverse[t, :, 0], reverse[t, :, 1], s=1.5, alpha=0.5, color="C3")
        axes[1, col].set_title(f"reverse p, t = {t}")
    for ax in axes.ravel():
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
    fig.suptitle(f"Swiss roll (noise {noise:g}, standardised), Gaussian diffusion with T = {T}: {reverse.shape[1]:,} samples per panel")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_heartbeat(samples: np.ndarray, num_steps: int, path: pathlib.Path) -> None:
    """Training data (5 sequences) and 40 samples of the reverse process as binary images."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), gridspec_kw={"width_ratios": [1, 3]})
    axes[0].imshow(heartbeat_sequences(), cmap="gray_r", aspect="auto", interpolation="nearest")
    axes[0].set_title("data (all 5 sequences)")
    axes[1].imshow(samples[:40], cmap="gray_r", aspect="auto", interpolation="nearest")
    axes[1].set_title(f"40 samples of the reverse diffusion (T = {num_steps})")
    for ax in axes:
        ax.set_xlabel("bin")
        ax.set_xticks([0, 5, 10, 15])
    axes[0].set_ylabel("sequence")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(curves: dict[str, list], finals: dict[str, tuple[float, float]], path: pathlib.Path) -> None:
    """The logged one-t minibatch estimates of K (and their running mean), the evaluated K and its ceiling."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items()):
        if not curve:
            continue
        steps, values = (np.asarray(v, np.float64) for v in zip(*curve))
        ax.plot(steps, values, lw=0.8, color="C0", alpha=0.35, label="minibatch estimate (one t per example)")
        window = max(1, min(10, len(values) // 5))
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.5, color="C0", label=f"running mean of {window}")
        k, ceiling = finals[name]
        ax.axhline(k, color="C3", ls="--", lw=1, label=f"K, all T terms: {k:.3f}")
        ax.axhline(ceiling, color="k", ls=":", lw=1, label=f"true log-likelihood: {ceiling:.3f}")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("bits")
        ax.grid(alpha=0.3)
        ax.set_ylim(min(np.percentile(values, 5), k) - 0.5, max(values.max(), ceiling) + 0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(metrics: dict[str, Any]) -> str:
    """The markdown table of RESULTS.md (rows for the runs present in ``metrics``)."""
    m = metrics

    def pm(key: str) -> str:
        return f"{m[key]:.3f} +- {m[key + '_stderr']:.3f}" if key in m else "-"

    rows = [
        "| data | K (bits) | K - L_null (bits) | best kernels: gain over K (bits) | true log-likelihood (bits) | paper K | paper K - L_null | steps | train time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {"swiss_roll": "swiss roll (toy2d, noise 0.25)", "swiss_roll_thin": "swiss roll, thin (noise 0.025)"}
    for name, label in labels.items():
        if f"{name}_K_bits" in m:
            rows.append(
                f"| {label} | {pm(f'{name}_K_bits')} | {pm(f'{name}_K_minus_isotropic_bits')} | {pm(f'{name}_oracle_minus_learned_bits')} | "
                f"{pm(f'{name}_data_log_likelihood_bits')} | 2.35 | 6.45 | {m[f'{name}_train_steps']:,} | {m[f'{name}_train_wall_time_s'] / 60:.1f} min |"
            )
    if "heartbeat_K_bits" in m:
        rows.append(
            f"| heartbeat (bits per sequence) | {pm('heartbeat_K_bits')} | {pm('heartbeat_K_minus_independent_bits')} | {pm('heartbeat_oracle_minus_learned_bits')} | "
            f"-2.322 | -2.414 | 12.024 | {m['heartbeat_train_steps']:,} | {m['heartbeat_train_wall_time_s'] / 60:.1f} min |"
        )
    return "\n".join(rows)


def update_results_md(path: pathlib.Path, metrics: dict[str, Any]) -> None:
    """Rewrites the block between the table markers of RESULTS.md, if both are there."""
    if not path.exists():
        return
    text = path.read_text()
    pattern = re.compile(r"(<!-- table:begin -->\n).*?(<!-- table:end -->)", re.DOTALL)
    if pattern.search(text):
        path.write_text(pattern.sub(lambda mt: mt.group(1) + table(metrics) + "\n" + mt.group(2), text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE), help="where results.json and the figures go")
    parser.add_argument("--workdir", default="runs/diffusion_toy", help="checkpoints and metrics (resumable)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=tuple(FULL), default=None, help="run one model only")
    for name in FULL:
        parser.add_argument(f"--{name.replace('_', '-')}-steps", type=int, default=None, help=f"override the {name} training steps")
    args = parser.parse_args(argv)
    tic = time.perf_counter()
    configs = dict(TINY if args.tiny else FULL)
    for name, cfg in configs.items():
        steps = getattr(args, f"{name}_steps")
        if steps is not None:
            if steps < 1:
                parser.error(f"--{name.replace('_', '-')}-steps: expected a positive int, got {steps}")
            configs[name] = dataclasses.replace(cfg, steps=steps)
    out, workdir = pathlib.Path(args.out), pathlib.Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    hardware = device_description()
    print(f"hardware: {hardware}; jax {jax.__version__}", flush=True)
    metrics: dict[str, Any] = {}
    curves: dict[str, list] = {}
    finals: dict[str, tuple[float, float]] = {}
    for name, cfg in configs.items():
        if args.only not in (None, name):
            continue
        if name.startswith("swiss_roll"):
            m, extras = run_swiss_roll(name, cfg, workdir, args.seed, args.tiny)
            plot_trajectories(extras["forward"], extras["reverse"], cfg.noise, out / f"trajectories{name[len('swiss_roll'):]}.png")
        else:
            m, extras = run_heartbeat(cfg, workdir, args.seed, args.tiny)
            plot_heartbeat(extras["samples"], cfg.num_steps, out / "heartbeat.png")
        metrics.update(m)
        curves[name] = extras["curve"]
        finals[name] = extras["final"]
    plot_training(curves, finals, out / "training.png")
    wall = time.perf_counter() - tic
    command = "python " + " ".join([str(pathlib.Path(sys.argv[0]).as_posix()) if argv is None else "experiments/diffusion_toy/run.py", *(sys.argv[1:] if argv is None else argv)])
    results = {
        "metrics": metrics,
        "paper": PAPER,
        "configs": {k: dataclasses.asdict(v) for k, v in configs.items()},
        "command": command,
        "wall_time_s": wall,
        "hardware": hardware,
        "jax_version": jax.__version__,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.tiny and args.only is None:
        update_results_md(out / "RESULTS.md", metrics)
    print(f"wrote {out / 'results.json'}; wall time {wall:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
