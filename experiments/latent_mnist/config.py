"""Latent diffusion on MNIST (Rombach et al. 2022, arXiv 2112.10752), sized for a 2-core CPU.

Two runs, the second on the frozen first, each a preset of
``--config experiments/latent_mnist/config.py:PRESET``:

* ``autoencoder``: a KL-regularised autoencoder (diffusers' ``AutoencoderKL`` tree,
  ``genjax.nn.sd``) with three levels of 32, 64, 64 channels, one residual block per
  level, GroupNorm over 16 groups, a 4-channel latent of 7x7 (``f = 4``: 784 pixels to
  196 latent dimensions), L1 reconstruction and KL weight 1e-6 (the paper's
  Appendix G, without the perceptual and adversarial terms). Adam at 1e-3 with 100
  warm-up steps, batch 64, 1,500 steps on the 50,000 offline MNIST training images.
  ``genjax train --config experiments/latent_mnist/config.py:autoencoder --workdir runs/latent_mnist_ae``
* ``ldm`` (default): ``experiments/ddpm_mnist``'s process, objective, optimiser and
  budget (T = 1000, linear betas, eps prediction, L_simple; Adam 1e-3, EMA 0.995, batch
  64, 1,500 steps) on the autoencoder's latents scaled to unit variance (scale factor
  estimated from 1,000 training images): a one-level UNet at 7x7 (ch 32, two residual
  blocks, attention at 7x7), x_0 unclipped. Samples are decoded.
  ``genjax train --config experiments/latent_mnist/config.py:ldm --workdir runs/latent_mnist_ldm``
  (``--config.model.autoencoder=DIR`` if the autoencoder ran elsewhere), then
  ``python experiments/latent_mnist/compare.py`` for the comparison with pixel-space
  DDPM (RESULTS.md gives the measured times and numbers).
* ``autoencoder_tiny`` / ``ldm_tiny``: a few steps on generated 8x8 images, for tests
  (``ldm_tiny`` needs ``--config.model.autoencoder`` pointing at an
  ``autoencoder_tiny`` run).
"""

import ml_collections

from genjax.experiment import latent

PRESETS = ("autoencoder", "ldm", "autoencoder_tiny", "ldm_tiny")


def _mnist(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c.data.name = "mnist"
    c.data.source = "offline"
    c.data.image_shape = (28, 28, 1)
    c.data.binarize = "none"
    c.train.num_steps = 1500
    c.train.batch_size = 64
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 100
    c.train.log_every = 25
    c.train.checkpoint_every = 250
    c.eval.num_examples = 1000
    c.eval.num_grid = 36
    return c


def _tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c.data.source = "synthetic"
    c.data.image_shape = (8, 8, 1)
    c.train.num_steps = 4
    c.train.batch_size = 8
    c.train.warmup_steps = 2
    c.train.log_every = 2
    c.train.checkpoint_every = 2
    c.eval.num_examples = 16
    c.eval.batch_size = 8
    c.eval.num_grid = 4
    return c


def get_config(preset: str = "ldm") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    if preset.startswith("autoencoder"):
        c = _mnist(latent.autoencoder_config())
        c.model.block_out_channels = (32, 64, 64)
        c.model.layers_per_block = 1
        c.model.latent_channels = 4
        c.model.norm_num_groups = 16
        c.model.kl_weight = 1e-6
        c.model.reconstruction = "l1"
        if preset == "autoencoder_tiny":
            _tiny(c)
            c.model.block_out_channels = (8, 8)
            c.model.norm_num_groups = 4
        return c
    c = _mnist(latent.ldm_config())
    c.data.random_flip = False
    c.model.autoencoder = "runs/latent_mnist_ae"
    c.model.ch = 32
    c.model.ch_mult = (1,)
    c.model.num_res_blocks = 2
    c.model.attn_resolutions = (7,)
    c.model.dropout = 0.0
    c.model.num_groups = 8
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.995
    c.eval.progressive_rows = 6
    if preset == "ldm_tiny":
        _tiny(c)
        c.model.autoencoder = ""
        c.model.ch = 8
        c.model.attn_resolutions = (4,)
        c.model.num_groups = 4
        c.model.num_timesteps = 20
        c.model.scale_examples = 16
        c.eval.sampler_steps = 4
        c.eval.progressive_frames = 2
        c.eval.progressive_rows = 2
    return c
