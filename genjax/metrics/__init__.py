"""Evaluation metrics: likelihood bounds, Parzen windows, FID/KID/IS, toy 2D sample quality, MNIST classifier features, clustering ACC/NMI/ARI."""

from genjax.metrics.clustering import (
    ClusterScores,
    cluster_accuracy,
    cluster_mapping,
    cluster_scores,
    confusion_matrix_figure,
    contingency,
)
from genjax.metrics.fid import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kernel_inception_distance,
)
from genjax.metrics.likelihood import BitsPerDim, bits_per_dim, vlb_terms
from genjax.metrics.mnist_classifier import (
    MNISTClassifier,
    load_mnist_classifier,
    mnist_accuracy,
    mnist_classifier_metadata,
    mnist_features,
)
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
    "ClusterScores",
    "MNISTClassifier",
    "ModeMetrics",
    "ParzenResult",
    "bits_per_dim",
    "cluster_accuracy",
    "cluster_mapping",
    "cluster_scores",
    "confusion_matrix_figure",
    "contingency",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "kernel_inception_distance",
    "load_mnist_classifier",
    "mnist_accuracy",
    "mnist_classifier_metadata",
    "mnist_features",
    "mode_metrics",
    "parzen_log_density",
    "parzen_log_likelihood",
    "sliced_wasserstein",
    "vlb_terms",
]
