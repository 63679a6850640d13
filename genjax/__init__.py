"""genjax: deep generative models as pure functional JAX/Flax code.

Unrelated to the probabilistic-programming package GenJAX; this library implements the
VAE, Gumbel-softmax, GAN and diffusion papers with tests and benchmarks.

The gradient estimators for discrete variables (``genjax.estimators``) and the densities
and KL divergences of their distributions (``genjax.distributions``) are exported here, so
that ``genjax.gumbel_softmax(key, logits, temperature=0.5, hard=True)`` works in any JAX
model. The subpackages load on first use (``genjax.samplers``, ``genjax.train``, ...):

* ``genjax.models``: one module per family (``vae``, ``gumbel``, ``gan``, ``diffusion``,
  ``sohl_dickstein``): Flax modules, losses and updates on plain pytrees.
* ``genjax.samplers``: the diffusion samplers, their registry and scan skeleton.
* ``genjax.train``: the update contract, the jit and pmap back ends, the loop, checkpoints.
* ``genjax.experiment``: configs to runs (``train``, ``evaluate``, ``sample``, ``load_run``).
* ``genjax.distributed``: multi-process runs on ``jax.distributed`` (start-up, which
  process writes, cross-process checks).
* ``genjax.nn``, ``genjax.metrics``, ``genjax.data``, ``genjax.distributions``,
  ``genjax.keys``, ``genjax.types``, ``genjax.sharding``, ``genjax.viz``.
"""

import importlib
from types import ModuleType

from genjax.distributions import (
    bernoulli_kl,
    bernoulli_log_prob,
    categorical_kl_uniform,
    categorical_log_prob,
    gumbel_softmax_log_prob,
    relaxed_bernoulli_log_prob,
)
from genjax.estimators import (
    ema_baseline_update,
    gumbel_softmax,
    relaxed_bernoulli,
    sample_gumbel,
    score_function_surrogate,
    straight_through_bernoulli,
    straight_through_categorical,
    temperature_schedule,
)

__version__ = "0.1.0"

SUBMODULES = (
    "data",
    "distributed",
    "distributions",
    "estimators",
    "experiment",
    "keys",
    "metrics",
    "models",
    "nn",
    "samplers",
    "sharding",
    "train",
    "types",
    "viz",
)


def __getattr__(name: str) -> ModuleType:
    """Imports ``genjax.<name>`` on first access, so that ``import genjax`` stays light."""
    if name in SUBMODULES:
        return importlib.import_module(f"genjax.{name}")
    raise AttributeError(f"module 'genjax' has no attribute {name!r}")


__all__ = [
    *SUBMODULES,
    "bernoulli_kl",
    "bernoulli_log_prob",
    "categorical_kl_uniform",
    "categorical_log_prob",
    "ema_baseline_update",
    "gumbel_softmax",
    "gumbel_softmax_log_prob",
    "relaxed_bernoulli",
    "relaxed_bernoulli_log_prob",
    "sample_gumbel",
    "score_function_surrogate",
    "straight_through_bernoulli",
    "straight_through_categorical",
    "temperature_schedule",
]
