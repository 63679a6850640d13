"""Stable Diffusion v1.5's networks as genjax experiments (Rombach et al. 2022, arXiv 2112.10752).

The presets build the networks of ``runwayml/stable-diffusion-v1-5`` (``vae/`` and
``unet/config.json``) through the ordinary families, so ``genjax info`` reports their
parameter counts without initialising them and ``genjax train`` fine-tunes them:

* ``vae``: the ``autoencoder_kl`` family at SD v1.5's autoencoder (levels of 128, 256,
  512, 512 channels, two residual blocks each, 4 latent channels, f = 8) on 512x512 RGB
  images: 83,653,863 parameters, as diffusers builds it.
  ``genjax info --config experiments/stable_diffusion/config.py:vae``
* ``unet``: the ``ddpm`` family with ``model.network = "sd15_unet"`` on SD's 64x64x4
  latents: the U-Net has 859,520,964 parameters, as diffusers builds it, plus the
  768-entry learned context that stands in for the text encoder's sequence
  (``genjax.nn.sd.LabelContextUNet``; ``num_params_by_module`` in the output separates
  the two). SD's process: T = 1000, betas from 0.00085 to 0.012 linear in sqrt(beta)
  (diffusers' ``scaled_linear``), eps prediction, x0 unclipped.
  ``genjax info --config experiments/stable_diffusion/config.py:unet``
* ``ldm``: the same U-Net and process as a latent diffusion model on 512x512 RGB images
  through a trained ``autoencoder_kl`` run named by ``--config.model.autoencoder=DIR``
  (the ``vae`` preset trained on your data), latents scaled by SD's 0.18215.

The data fields point at generated images (``data.source = "synthetic"``): genjax ships no
512x512 dataset, so set ``data.name``/``data.source`` to yours before training. To use
SD's released weights instead, load them with ``genjax.nn.sd_import``
(``load_diffusers_sd_unet``, ``load_diffusers_autoencoder_kl``).
"""

import ml_collections

from genjax.experiment import ddpm, latent

PRESETS = ("vae", "unet", "ldm")


def _sd_process(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c.model.network = "sd15_unet"
    c.model.schedule = "quadratic"
    c.model.beta_start = 0.00085
    c.model.beta_end = 0.012
    c.model.num_timesteps = 1000
    c.model.parameterization = "eps"
    c.model.clip_x0 = False
    c.model.dropout = 0.0
    c.data.source = "synthetic"
    c.data.random_flip = False
    c.train.learning_rate = 1e-4
    c.eval.bpd_examples = 0
    return c


def get_config(preset: str = "unet") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    if preset == "vae":
        c = latent.autoencoder_config()
        c.data.source = "synthetic"
        c.data.image_shape = (512, 512, 3)
        return c
    if preset == "unet":
        c = _sd_process(ddpm.default_config())
        c.data.image_shape = (64, 64, 4)
        return c
    c = _sd_process(latent.ldm_config())
    c.data.image_shape = (512, 512, 3)
    c.model.scale_factor = 0.18215
    return c
