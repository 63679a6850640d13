"""Table 1 toy rows of Sohl-Dickstein et al. (arXiv 1503.03585) as ``genjax train`` configs.

    genjax train --config experiments/diffusion_toy/config.py:swiss_roll --workdir runs/diffusion_toy/swiss_roll

Presets (``:name``, or ``:name,tiny`` for a seconds-long smoke run of the same model on
a tiny network):

* ``swiss_roll``: the Gaussian diffusion (T = 40) of toy2d's swiss roll (noise 0.25),
  standardised; 8,000 steps of batch 256. Evaluation: K in bits from all T - 1 KL terms
  on 20,000 examples, and the bound of the best kernels for the learned schedule on 1,000.
* ``swiss_roll_thin``: the same curve with a tenth of the noise (0.025) and beta_1 = 3e-6,
  about as thin as the paper's K implies; 10,000 steps.
* ``heartbeat``: the binomial diffusion (T = 2000) of the 20-bit heartbeat sequences;
  20,000 steps, K on 2,000 stratified sequences.

``experiments/diffusion_toy/run.py`` trains all three and writes RESULTS.md's table and
the figures; RESULTS.md gives the wall times on 2 CPU cores and the measured bounds
(paper: swiss roll K = 2.35 bits, K - L_null = 6.45; heartbeat K = -2.414 bits).
"""

from __future__ import annotations

import ml_collections

from genjax.experiment import sohl_dickstein

PRESETS = ("swiss_roll", "swiss_roll_thin", "heartbeat")


def get_config(arg: str = "swiss_roll") -> ml_collections.ConfigDict:
    """Returns the config of ``"preset"`` or ``"preset,tiny"`` (see the module docstring)."""
    preset, *rest = arg.split(",")
    if preset not in PRESETS or rest not in ([], ["tiny"]):
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, optionally followed by ',tiny', got {arg!r}")
    c = sohl_dickstein.default_config()
    if preset == "swiss_roll_thin":
        c.data.noise = 0.025
        c.model.beta_1 = 3e-6
        c.train.num_steps = 10_000
    elif preset == "heartbeat":
        c.data.name = "heartbeat"
        c.model.num_timesteps = 2000
        c.train.num_steps = 20_000
        c.eval.num_examples = 2000
        c.eval.chunk = 50
        c.eval.oracle_chunk = 50
    c.train.decay_steps = c.train.num_steps - c.train.warmup_steps
    if rest:
        c.model.hidden = (16,)
        c.model.activation = "tanh"
        c.data.quadrature_grid = 2000
        c.train.num_steps = 10
        c.train.batch_size = 32
        c.train.learning_rate = 1e-3
        c.train.warmup_steps = 0
        c.train.decay_steps = 10
        c.train.log_every = 5
        c.train.checkpoint_every = 10
        c.eval.num_examples = 40 if preset == "heartbeat" else 64
        c.eval.quick_examples = 20
        c.eval.oracle_examples = 0
        c.eval.figure_samples = 100
        c.eval.num_grid = 100
        if preset == "heartbeat":
            # T = 50 instead of 2000 keeps the smoke run to seconds.
            c.model.num_timesteps = 50
    return c
