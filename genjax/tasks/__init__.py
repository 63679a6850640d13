"""From a config to library calls: the one place (with ``cli``) that reads configs.

A ``Task`` bundles what the generic training loop and the CLI need from a model family:
initial parameters, the loss, the batches, an evaluation, samples and figures. Families
register a builder in ``TASK_BUILDERS`` keyed by ``config.model.family``.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from genjax.tasks.base import Task, load_split, synthetic_images
from genjax.tasks.diffusion import build_ddpm_task
from genjax.tasks.discrete import build_discrete_vae_task, build_sbn_task
from genjax.tasks.gan import build_gan_task
from genjax.tasks.vae import build_vae_task

TASK_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    "vae": build_vae_task,
    "discrete_vae": build_discrete_vae_task,
    "sbn": build_sbn_task,
    "ddpm": build_ddpm_task,
    "gan": build_gan_task,
}


def build_task(config: ml_collections.ConfigDict) -> Task:
    """Builds the task named by ``config.model.family``."""
    family = config.model.family
    if family not in TASK_BUILDERS:
        raise ValueError(f"model.family: expected one of {sorted(TASK_BUILDERS)}, got {family!r}")
    return TASK_BUILDERS[family](config)


__all__ = ["TASK_BUILDERS", "Task", "build_task", "load_split", "synthetic_images"]
