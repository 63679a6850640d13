"""Clustering metrics: unsupervised accuracy with the Hungarian matching, NMI and ARI.

The deep clustering papers (Xie et al. 2016, arXiv 1511.06335, eq. 10; Guo et al. 2017;
Yang et al. 2017; Jiang et al. 2017, arXiv 1611.05148; Mukherjee et al. 2019, arXiv
1809.03627) all score a clustering by the accuracy of the best one-to-one map from
clusters to labels, ``max_m mean(1[y_i = m(c_i)])``, found with the Hungarian algorithm,
and by normalised mutual information and the adjusted Rand index. NMI and ARI are
scikit-learn's; the matching is ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import scipy.optimize
import sklearn.metrics

from genjax import viz


@dataclasses.dataclass(frozen=True)
class ClusterScores:
    """The three standard scores of a clustering against true labels.

    Attributes:
      acc: unsupervised accuracy in [0, 1] under the best cluster-to-label map.
      nmi: normalised mutual information (arithmetic normalisation) in [0, 1].
      ari: adjusted Rand index in [-1, 1] (0 for chance).
      num_examples: how many examples were scored.
    """

    acc: float
    nmi: float
    ari: float
    num_examples: int


def _check_labels(labels: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    clusters = np.asarray(clusters)
    if labels.ndim != 1 or clusters.ndim != 1:
        raise ValueError(f"labels, clusters: expected 1-D arrays, got shapes {labels.shape} and {clusters.shape}")
    if labels.shape != clusters.shape:
        raise ValueError(f"clusters: expected {labels.shape[0]} assignments (one per label), got {clusters.shape[0]}")
    if labels.size == 0:
        raise ValueError("labels: expected at least one example, got none")
    for name, a in (("labels", labels), ("clusters", clusters)):
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0:
            raise ValueError(f"{name}: expected non-negative integers, got dtype {a.dtype} with minimum {a.min()}")
    return labels.astype(np.int64), clusters.astype(np.int64)


def contingency(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """The count matrix ``C[c, y]`` of examples in cluster ``c`` with label ``y``."""
    labels, clusters = _check_labels(labels, clusters)
    counts = np.zeros((clusters.max() + 1, labels.max() + 1), np.int64)
    np.add.at(counts, (clusters, labels), 1)
    return counts


def cluster_mapping(labels: np.ndarray, clusters: np.ndarray) -> dict[int, int]:
    """The one-to-one map cluster -> label maximising matches (Hungarian algorithm).

    With more clusters than labels, the clusters left unmatched map to no label (and count
    as errors in ``cluster_accuracy``).
    """
    counts = contingency(labels, clusters)
    rows, cols = scipy.optimize.linear_sum_assignment(counts, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True)}


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Unsupervised clustering accuracy, eq. 10 of arXiv 1511.06335.

    ``max over one-to-one maps m of mean_i 1[labels_i = m(clusters_i)]``.

    Raises:
      ValueError: arrays of different lengths, not 1-D, empty or not non-negative ints.
    """
    counts = contingency(labels, clusters)
    rows, cols = scipy.optimize.linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def cluster_scores(labels: np.ndarray, clusters: np.ndarray) -> ClusterScores:
    """ACC, NMI and ARI of ``clusters`` against ``labels`` (see ``ClusterScores``)."""
    labels, clusters = _check_labels(labels, clusters)
    return ClusterScores(
        acc=cluster_accuracy(labels, clusters),
        nmi=float(sklearn.metrics.normalized_mutual_info_score(labels, clusters)),
        ari=float(sklearn.metrics.adjusted_rand_score(labels, clusters)),
        num_examples=int(labels.size),
    )


def confusion_matrix_figure(labels: np.ndarray, clusters: np.ndarray, path: str | pathlib.Path, *, title: str = "") -> pathlib.Path:
    """Writes the cluster-by-label count matrix as a PNG, clusters ordered by their matched label.

    Returns:
      The path written.
    """
    counts = contingency(labels, clusters)
    mapping = cluster_mapping(labels, clusters)
    order = sorted(range(counts.shape[0]), key=lambda c: (mapping.get(c, counts.shape[1]), c))
    title = title or f"ACC {cluster_accuracy(labels, clusters):.3f}"
    return viz.save_count_matrix(
        path, counts[order], row_labels=[str(c) for c in order], xlabel="true label", ylabel="cluster (ordered by matched label)", title=title
    )
