"""Class-conditional DDPM on MNIST with classifier-free guidance (Ho & Salimans 2022,
arXiv 2207.12598), sized for a 2-core CPU.

Presets, chosen with ``--config experiments/cfg_mnist/config.py:PRESET``:

* ``cpu`` (default): ``experiments/ddpm_mnist/config.py:cpu`` (T = 1000, linear betas,
  eps prediction, L_simple; the 280k-parameter UNet, batch 64, 1,500 steps) made
  class-conditional: the UNet embeds the 10 digit labels and an eleventh, learned null
  label, to which each training label is dropped with probability 0.1 (the paper's
  ``p_uncond``). The final evaluation's bound is that of the null (unconditional) model;
  its sample grid shows the digits in turn at guidance ``eval.guidance = 1``.
  ``genjax train --config experiments/cfg_mnist/config.py --workdir runs/cfg_mnist``, then
  ``python experiments/cfg_mnist/sweep.py --workdir runs/cfg_mnist`` for the guidance
  sweep (RESULTS.md gives the measured times and numbers).
* ``tiny``: a few steps of a tiny UNet on generated 8x8 images with 10 labels, for tests.
"""

import importlib.util
import pathlib

import ml_collections

_DDPM_MNIST = pathlib.Path(__file__).resolve().parents[1] / "ddpm_mnist" / "config.py"


def _ddpm_mnist(preset: str) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("ddpm_mnist_config", _DDPM_MNIST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset)


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """Returns the config of a preset (see the module docstring)."""
    if preset not in ("cpu", "tiny"):
        raise ValueError(f"preset: expected one of cpu, tiny, got {preset!r}")
    c = _ddpm_mnist(preset)
    c.model.num_classes = 10
    c.model.cond_drop_prob = 0.1
    c.eval.guidance = 1.0
    if preset == "tiny":
        c.model.ch_mult = (1,)
        c.model.attn_resolutions = (8,)
        c.eval.bpd_examples = 0
        c.eval.sampler_steps = 4
        c.eval.progressive_frames = 2
    return c
