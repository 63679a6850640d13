"""DDPM on MNIST sized for a 2-core CPU (Ho, Jain & Abbeel, arXiv 2006.11239).

Presets, chosen with ``--config experiments/ddpm_mnist/config.py:PRESET``:

* ``cpu`` (default): the paper's process and objective (T = 1000, betas linear from
  1e-4 to 0.02, eps prediction, fixed variance beta_tilde, L_simple, 8-bit data scaled
  to [-1, 1]) with a UNet shrunk for this machine: ch 16, multipliers 1,2,2 (28, 14, 7),
  one res block per level, attention at 7x7, no dropout: 280,177 parameters. Adam at
  1e-3 with 100 warm-up steps, gradient clipping at 1, EMA 0.995, batch 64, 1,500 steps
  on the 50,000 offline MNIST training images (about two epochs). Evaluation: the L_vlb
  bound in bits/dim from all 1,000 terms on the first 100 test images, 36 ancestral
  samples and the progressive-generation figure. Measured on 2 otherwise idle Intel
  Xeon cores: 12 min of training and 3.3 min of evaluation (50 and 14 min on 2 AMD EPYC
  cores shared with other jobs); test bound 1.974 +- 0.034 bits/dim (RESULTS.md).
  ``experiments/ddpm_mnist/report.py`` adds the classifier Frechet distance of every
  sampler at 10-100 steps on 2,000 samples per cell, and the sampler grids.
  ``genjax train --config experiments/ddpm_mnist/config.py --workdir runs/ddpm_mnist``
* ``tiny``: a few steps of a tiny UNet on generated 8x8 images, for tests.
"""

import ml_collections

from genjax.experiment import ddpm


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    c = ddpm.default_config()
    c.data.name = "mnist"
    c.data.source = "offline"
    c.data.image_shape = (28, 28, 1)
    c.data.random_flip = False

    c.model.ch = 16
    c.model.ch_mult = (1, 2, 2)
    c.model.num_res_blocks = 1
    c.model.attn_resolutions = (7,)
    c.model.dropout = 0.0
    c.model.num_groups = 8

    c.train.num_steps = 1500
    c.train.batch_size = 64
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 100
    c.train.ema_decay = 0.995
    c.train.log_every = 25
    c.train.checkpoint_every = 250

    c.eval.num_examples = 1000
    c.eval.num_grid = 36
    c.eval.bpd_examples = 100
    c.eval.bpd_batch = 10
    c.eval.t_chunk = 100
    c.eval.progressive_rows = 6
    if preset == "cpu":
        pass
    elif preset == "tiny":
        c.data.source = "synthetic"
        c.data.image_shape = (8, 8, 1)
        c.model.ch = 8
        c.model.ch_mult = (1, 2)
        c.model.attn_resolutions = (4,)
        c.model.num_groups = 4
        c.model.num_timesteps = 20
        c.train.num_steps = 4
        c.train.batch_size = 8
        c.train.warmup_steps = 2
        c.train.log_every = 2
        c.train.checkpoint_every = 2
        c.eval.num_examples = 16
        c.eval.batch_size = 8
        c.eval.num_grid = 4
        c.eval.bpd_examples = 4
        c.eval.bpd_batch = 2
        c.eval.t_chunk = 8
        c.eval.sampler_steps = 20
        c.eval.progressive_frames = 4
        c.eval.progressive_rows = 2
    else:
        raise ValueError(f"preset: expected one of cpu, tiny, got {preset!r}")
    return c
