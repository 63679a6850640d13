"""Counts salt-and-pepper samples of the ODE samplers with and without clipping x_0.

Draws the report's 16 noises (key 2026) through DPM-Solver++(2M) and DDIM (eta = 0) at
20 steps, with ``clip_x0`` off and on, and counts the samples in which more than 5% of
the pixels differ from the mean of their 4 neighbours by more than 1 (on [-1, 1]).

Usage::

    python experiments/ddpm_mnist/clip_check.py --workdir runs/ddpm_mnist
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from genjax import experiment, samplers
from genjax.experiment.ddpm import denoiser_of


def noisy_fraction(x: np.ndarray) -> np.ndarray:
    """Per sample, the fraction of pixels more than 1 away from their 4-neighbour mean."""
    x = np.asarray(x)[..., 0]
    neighbours = (np.roll(x, 1, 1) + np.roll(x, -1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 2)) / 4
    return (np.abs(x - neighbours) > 1.0).mean(axis=(1, 2))


def main() -> None:
    """Prints one line per (sampler, clip_x0)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the genjax train workdir of ddpm_mnist")
    args = parser.parse_args()
    run = experiment.load_run(args.workdir)
    model = run.experiment.model
    diffusion, shape = model.diffusion, model.image_shape
    denoiser = denoiser_of(diffusion, model.apply)(run.params)
    abar = diffusion.schedule.alphas_cumprod
    for sampler in ("dpmpp_2m", "ddim"):
        for clip in (False, True):
            built = samplers.get_sampler(sampler, clip_x0=clip)
            x = jax.jit(lambda k, s=built: samplers.sample_batch(denoiser, abar, k, 16, shape, sampler=s, steps=20))(jax.random.key(2026))
            frac = noisy_fraction(x)
            print(f"{sampler:9s} clip_x0={clip!s:5s} noisy samples: {int((frac > 0.05).sum())}/16  {np.round(frac, 2).tolist()}")


if __name__ == "__main__":
    main()
