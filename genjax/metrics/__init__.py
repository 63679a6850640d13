"""Evaluation metrics: likelihood bounds, Parzen windows, toy 2D sample quality."""

from genjax.metrics.likelihood import BitsPerDim, bits_per_dim, vlb_terms
from genjax.metrics.parzen import (
    DEFAULT_SIGMAS,
    ParzenResult,
    parzen_log_density,
    parzen_log_likelihood,
)
from genjax.metrics.toy2d import ModeMetrics, mode_metrics, sliced_wasserstein

__all__ = [
    "DEFAULT_SIGMAS",
    "BitsPerDim",
    "ModeMetrics",
    "ParzenResult",
    "bits_per_dim",
    "mode_metrics",
    "parzen_log_density",
    "parzen_log_likelihood",
    "sliced_wasserstein",
    "vlb_terms",
]
