"""The experiment layer: the one place that turns a config into library calls.

Each family has one module here holding its config schema (``default_config()``) and its
builder (``build(config) -> Experiment``), registered in ``FAMILIES``. ``train``,
``evaluate``, ``sample``, ``load_run`` and ``info`` run any of them; the ``genjax``
command only parses arguments and calls these, and so do the experiment scripts::

    from genjax import experiment

    config = experiment.load_config("experiments/vae_mnist/config.py:tiny", ["train.num_steps=50"])
    experiment.train(config, "runs/vae_tiny")
    run = experiment.load_run("runs/vae_tiny")
    images = run.experiment.sample(run.params, jax.random.key(0), 16)
"""

from genjax.experiment.base import Experiment
from genjax.experiment.config import ConfigError, apply_overrides, base_config, load_config_file
from genjax.experiment.families import FAMILIES, Family, build, get_family
from genjax.experiment.run import (
    LOADABLE_FIELDS,
    RESUMABLE_FIELDS,
    Run,
    SampleResult,
    check_config,
    check_resume_config,
    evaluate,
    info,
    load_config,
    load_run,
    run_config,
    sample,
    train,
)
from genjax.experiment.scripts import positive_ints
from genjax.experiment.workdir import WorkdirBusyError, WorkdirLock, prepare_workdir

__all__ = [
    "FAMILIES",
    "LOADABLE_FIELDS",
    "RESUMABLE_FIELDS",
    "ConfigError",
    "Experiment",
    "Family",
    "Run",
    "SampleResult",
    "WorkdirBusyError",
    "WorkdirLock",
    "apply_overrides",
    "base_config",
    "build",
    "check_config",
    "check_resume_config",
    "evaluate",
    "get_family",
    "info",
    "load_config",
    "load_config_file",
    "load_run",
    "positive_ints",
    "prepare_workdir",
    "run_config",
    "sample",
    "train",
]
