"""Sample quality against the number of steps for every sampler, and results.json.

Reads a finished ``genjax train`` run of ``experiments/ddpm_mnist/config.py``, draws the
same ``--num`` initial noises through every sampler (ancestral DDPM with both fixed
variances, DDIM with eta = 0, DPM-Solver++(2M) and EDM-style Heun) at each number of
steps, and writes:

* ``sampler_grid.png``: rows are samplers, columns numbers of steps, each cell a grid
  of the samples from the same noise (the samples are in ``sampler_samples.npz``);
* ``results.json``: ``{"metrics": {"test_bits_per_dim": ..., ...}, "samplers": [...],
  "command": ..., "wall_time_s": ...}`` with the run's eval.json metrics and the
  wall time of each sampler call (training + evaluation + this report in
  ``wall_time_s``).

Usage::

    python experiments/ddpm_mnist/report.py --workdir runs/ddpm_mnist --out experiments/ddpm_mnist
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from genjax import samplers as samplers_lib
from genjax import viz
from genjax.cli import load_run
from genjax.hardware import device_description
from genjax.models import diffusion as diff
from genjax.tasks.diffusion import (
    build_diffusion,
    build_unet,
    denoiser_of,
    sampler_options,
    unet_apply,
)

# (label, sampler, options): the two fixed variances of the paper are separate rows.
ROWS = (
    ("DDPM, sigma^2 = beta_tilde", "ddpm", {"variance": "small"}),
    ("DDPM, sigma^2 = beta", "ddpm", {"variance": "large"}),
    ("DDIM, eta = 0", "ddim", {"eta": 0.0}),
    ("DPM-Solver++(2M)", "dpmpp_2m", {}),
    ("Heun (EDM)", "heun", {}),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the report; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the genjax train workdir")
    parser.add_argument("--out", required=True, help="folder for sampler_grid.png and results.json")
    parser.add_argument("--steps", default="10,20,50,100,1000", help="comma-separated numbers of steps")
    parser.add_argument("--num", type=int, default=16, help="samples per cell")
    args = parser.parse_args(argv)
    tic = time.perf_counter()
    try:
        config, _, state = load_run(args.workdir)
    except (FileNotFoundError, ValueError) as err:
        print(f"report: error: {err}", file=sys.stderr)
        return 1
    steps_list = [int(s) for s in args.steps.split(",")]
    eval_path = pathlib.Path(args.workdir) / "eval.json"
    if not eval_path.is_file():
        print(f"report: error: --workdir: no eval.json in {args.workdir}; let 'genjax train' finish first", file=sys.stderr)
        return 1
    evaluation = json.loads(eval_path.read_text())
    if f"{config.eval.split}_bits_per_dim" not in evaluation:
        print(f"report: error: --workdir: {eval_path} has no bits/dim; evaluate with eval.bpd_examples > 0", file=sys.stderr)
        return 1
    diffusion = build_diffusion(config)
    shape = tuple(config.data.image_shape)
    unet = build_unet(config, shape[-1], diffusion)
    params = state.ema_params if state.ema_params is not None else state.params
    denoiser = denoiser_of(diffusion, unet_apply(unet))(params)
    abar = diffusion.schedule.alphas_cumprod
    key = jax.random.key(2026)
    cells, timings = {}, []
    for label, sampler, options in ROWS:
        for steps in steps_list:
            opts = {**sampler_options(diffusion, sampler, 0.0), **options}
            fn = jax.jit(lambda k, s=sampler, n=steps, o=opts: samplers_lib.sample_batch(denoiser, abar, k, args.num, shape, sampler=s, steps=n, **o))
            start = time.perf_counter()
            images = diff.from_model_scale(jax.block_until_ready(fn(key)))
            seconds = time.perf_counter() - start
            cells[(label, steps)] = images
            timings.append({"sampler": sampler, "label": label, **options, "steps": steps, "evals_per_image": samplers_lib.num_evaluations(sampler, steps), "num": args.num, "seconds_with_compile": seconds})
            print(f"{label:28s} {steps:5d} steps: {seconds:7.1f}s", flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(ROWS), len(steps_list), figsize=(2.2 * len(steps_list), 2.3 * len(ROWS)), squeeze=False)
    for i, (label, _, _) in enumerate(ROWS):
        for j, steps in enumerate(steps_list):
            ax = axes[i, j]
            grid = viz.image_grid(cells[(label, steps)], ncols=int(np.ceil(np.sqrt(args.num))))
            ax.imshow(grid.squeeze(), cmap="gray", vmin=0, vmax=255)  # image_grid returns uint8
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{steps} steps")
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    # The samples behind the figure, keyed "<row>_<sampler>_<steps>" (rows in ROWS order).
    np.savez_compressed(out / "sampler_samples.npz", **{f"{i}_{sampler}_{steps}": cells[(label, steps)] for i, (label, sampler, _) in enumerate(ROWS) for steps in steps_list})
    fig.suptitle(f"ddpm_mnist at step {int(state.step)}: the same {args.num} noises through every sampler")
    fig.tight_layout()
    fig.savefig(out / "sampler_grid.png", dpi=110)
    plt.close(fig)
    split = config.eval.split
    metrics = {
        "test_bits_per_dim": evaluation[f"{split}_bits_per_dim"],
        "test_bits_per_dim_stderr": evaluation[f"{split}_bits_per_dim_stderr"],
        "test_bits_per_dim_examples": evaluation["bpd_examples"],
        "test_bits_per_dim_prior": evaluation[f"{split}_bits_per_dim_prior"],
        "test_bits_per_dim_decoder": evaluation[f"{split}_bits_per_dim_decoder"],
        "test_mse": evaluation[f"{split}_mse"],
        "train_steps": int(state.step),
    }
    report_s = time.perf_counter() - tic
    result = {
        "metrics": metrics,
        "samplers": timings,
        "command": (
            f"genjax train --config experiments/ddpm_mnist/config.py --workdir {args.workdir} && "
            f"python experiments/ddpm_mnist/report.py --workdir {args.workdir} --out {args.out}"
        ),
        "wall_time_s": evaluation.get("train_wall_time_s", 0.0) + evaluation.get("eval_wall_time_s", 0.0) + report_s,
        "train_wall_time_s": evaluation.get("train_wall_time_s"),
        "eval_wall_time_s": evaluation.get("eval_wall_time_s"),
        "report_wall_time_s": report_s,
        "hardware": device_description(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
