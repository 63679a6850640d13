"""genjax: deep generative models as pure functional JAX/Flax code.

Unrelated to the probabilistic-programming package GenJAX; this library implements the
VAE, Gumbel-softmax, GAN and diffusion papers with tests and benchmarks.

The gradient estimators for discrete variables (``genjax.estimators``) and the densities
and KL divergences of their distributions (``genjax.distributions``) are exported here, so
that ``genjax.gumbel_softmax(key, logits, temperature=0.5, hard=True)`` works in any JAX
model.
"""

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

__all__ = [
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
