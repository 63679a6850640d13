"""DDPM on CIFAR-10 with the paper's exact setup (Ho, Jain & Abbeel, arXiv 2006.11239).

Presets, chosen with ``--config experiments/ddpm_cifar10/config.py:PRESET``:

* ``paper`` (default): sec. 4 and Appendix B. The 35,746,307-parameter UNet (ch 128,
  multipliers 1,2,2,2, 2 res blocks per level, attention at 16x16, dropout 0.1),
  T = 1000 with betas linear from 1e-4 to 0.02, eps prediction, fixed variance
  beta_tilde, L_simple; batch 128, Adam at 2e-4 with 5,000 linear warm-up steps,
  gradient clipping at global norm 1, EMA 0.9999, random horizontal flips, 800,000
  steps on the 50,000 tfds ``cifar10`` training images. Evaluation: the L_vlb bound in
  bits/dim from all 1,000 terms on the first ``eval.bpd_examples`` test images (the
  paper reports 3.75 on all 10,000), and ancestral samples. Sized for a TPU or GPU:
  the paper reports 21 steps/s on a TPU v3-8, i.e. about 10.6 hours; on this project's
  2-core CPU one step takes minutes, so it has not been run here.
  ``genjax train --config experiments/ddpm_cifar10/config.py --workdir runs/ddpm_cifar10``
* ``paper_bf16``: the same with the UNet computing in bfloat16 (parameters, optimiser
  and scheduler arithmetic stay float32).
* ``smoke``: the paper's config on 2 steps with a narrow UNet (ch 16, one res block
  per level, 8 groups; still 4 levels with attention at 16x16) and a batch of 8, for
  the test suite on tfds mock data or generated 32x32x3 images
  (``--config.data.source=synthetic``); everything else as in ``paper``, except that
  the 1,000-term bits/dim evaluation is skipped (the DDPM MNIST tests cover it).
"""

import ml_collections

from genjax.experiment import ddpm


def get_config(preset: str = "paper") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    c = ddpm.default_config()
    if preset == "paper":
        pass
    elif preset == "paper_bf16":
        c.model.dtype = "bfloat16"
    elif preset == "smoke":
        c.model.ch = 16
        c.model.num_res_blocks = 1
        c.model.num_groups = 8
        c.train.num_steps = 2
        c.train.batch_size = 8
        c.train.log_every = 1
        c.train.checkpoint_every = 1
        c.eval.num_examples = 8
        c.eval.batch_size = 8
        c.eval.bpd_examples = 0
        c.eval.sampler = "ddim"
        c.eval.sampler_steps = 2
        c.eval.num_grid = 4
        c.eval.progressive_frames = 2
        c.eval.progressive_rows = 1
    else:
        raise ValueError(f"preset: expected one of paper, paper_bf16, smoke, got {preset!r}")
    return c
