"""genjax: deep generative models as pure functional JAX/Flax code.

Unrelated to the probabilistic-programming package GenJAX; this library implements the
VAE, Gumbel-softmax, GAN and diffusion papers with tests and benchmarks.

The gradient estimators for discrete variables (``genjax.estimators``) are exported here,
so that ``genjax.gumbel_softmax(key, logits, temperature=0.5, hard=True)`` works in any
JAX model.
"""

from genjax.estimators import (
    bernoulli_kl,
    bernoulli_log_prob_logits,
    categorical_kl_uniform,
    categorical_log_prob,
    ema_baseline_update,
    gumbel_softmax,
    gumbel_softmax_log_prob,
    relaxed_bernoulli,
    relaxed_bernoulli_log_prob,
    sample_gumbel,
    score_function_surrogate,
    straight_through_bernoulli,
    straight_through_categorical,
    temperature_schedule,
)

__version__ = "0.1.0"

__all__ = [
    "bernoulli_kl",
    "bernoulli_log_prob_logits",
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
