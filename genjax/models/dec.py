"""Autoencoder-based deep clustering: DEC, IDEC and DCN, with pairwise constraints.

* DEC, Xie, Girshick & Farhadi, "Unsupervised Deep Embedding for Clustering Analysis",
  arXiv 1511.06335: a stacked autoencoder d-500-500-2000-10 (sec. 3.2), the Student-t
  soft assignment q (eq. 1), the target distribution p (eq. 3) and the loss KL(P||Q)
  (eq. 2), the encoder and the centroids trained together.
* IDEC, Guo, Gao, Liu & Yin, "Improved Deep Embedded Clustering with Local Structure
  Preservation", IJCAI 2017: the decoder is kept and the loss is
  ``reconstruction + gamma KL(P||Q)`` (eq. 7), gamma = 0.1.
* DCN, Yang, Fu, Sidiropoulos & Hong, "Towards K-means-friendly Spaces", arXiv
  1610.04794: the loss ``reconstruction + lambda/2 ||f(x) - M s||^2`` (eq. 5) with hard
  assignments ``s``, the network updated by gradient and the centroids ``M`` by the
  per-cluster running mean of eq. 8 (alternating optimisation).
* Pairwise must-link / cannot-link constraints as an extra loss (the semi-supervised
  DEC of Ren et al., "Semi-supervised deep embedded clustering", Neurocomputing 2019,
  as surveyed in arXiv 2210.04142): here written on the soft assignments,
  ``-log <q_i, q_j>`` for a must-link pair and ``-log(1 - <q_i, q_j>)`` for a
  cannot-link pair, which keeps the term bounded below (SDEC's embedding-distance form
  is not, for cannot-links).

The math is written for arrays of examples ``[B, d]``; images are flattened first.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.distributions import bernoulli_log_prob
from genjax.nn.mlp import MLP

DEC_DIMS = (500, 500, 2000, 10)
"""The encoder widths of Xie et al. sec. 3.2 for every dataset: d-500-500-2000-10."""


class StackedAutoencoder(nn.Module):
    """The autoencoder of DEC/IDEC/DCN: an MLP encoder ``d-dims`` and its mirror decoder.

    ReLU hidden layers, a linear embedding and a linear reconstruction (Xie et al. sec.
    3.2). Parameters: ``{"encoder": MLP, "decoder": MLP}``.

    Attributes:
      input_dim: d, the flattened size of one example.
      dims: the encoder widths, the last one the embedding dimension.
      activation: the hidden activation.
      reconstruction: ``"mse"`` (the decoder's output is the reconstruction, scored by
        squared error, as Xie et al.) or ``"bernoulli"`` (it is the logits of a Bernoulli
        per pixel, scored by cross-entropy: the likelihood VaDE's decoder uses).
    """

    input_dim: int
    dims: Sequence[int] = DEC_DIMS
    activation: str = "relu"
    reconstruction: str = "mse"

    def setup(self) -> None:
        dims = tuple(self.dims)
        self.encoder = MLP(hidden=dims[:-1], out_features=dims[-1], activation=self.activation)
        self.decoder = MLP(hidden=dims[-2::-1], out_features=self.input_dim, activation=self.activation)

    def encode(self, x: jax.Array) -> jax.Array:
        """``x [B, ...] -> z [B, dims[-1]]`` (trailing axes flattened)."""
        return self.encoder(x.reshape(x.shape[0], -1))

    def decode(self, z: jax.Array) -> jax.Array:
        """``z [B, dims[-1]] -> x_hat [B, input_dim]``."""
        return self.decoder(z)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(z, x_hat)`` with ``x_hat`` flat ``[B, input_dim]``."""
        z = self.encode(x)
        return z, self.decode(z)


RECONSTRUCTIONS = ("mse", "bernoulli")


def reconstruction_loss(x: jax.Array, out: jax.Array, kind: str = "mse") -> jax.Array:
    """Per-example reconstruction loss averaged over the d features, ``[B]``.

    ``"mse"``: ``mean_d (x - out)^2``; ``"bernoulli"``: ``-mean_d log Bernoulli(x; sigmoid(out))``
    (``out`` are logits, ``x`` in [0, 1]).
    """
    x = x.reshape(x.shape[0], -1)
    chex.assert_equal_shape((x, out))
    if kind == "mse":
        return jnp.mean(jnp.square(x - out), axis=-1)
    if kind == "bernoulli":
        return -jnp.mean(bernoulli_log_prob(x, out), axis=-1)
    raise ValueError(f"model.reconstruction: expected one of {RECONSTRUCTIONS}, got {kind!r}")


def reconstruct(out: jax.Array, kind: str) -> jax.Array:
    """The reconstructed example from the decoder's output: ``out`` itself, or ``sigmoid(out)``."""
    return jax.nn.sigmoid(out) if kind == "bernoulli" else out


def student_t_assignment(z: jax.Array, centroids: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Soft assignment ``q_ij`` of each embedding to each centroid, eq. 1 of arXiv 1511.06335.

    ``q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha+1)/2) / sum_j' (...)``.

    Args:
      z: embeddings ``[B, d]``.
      centroids: ``[K, d]``.
      alpha: degrees of freedom of the Student-t kernel (1 in the paper).

    Returns:
      ``[B, K]``, rows summing to one.
    """
    chex.assert_rank([z, centroids], 2)
    sq = jnp.sum(jnp.square(z[:, None, :] - centroids[None, :, :]), axis=-1)
    logits = -(alpha + 1.0) / 2.0 * jnp.log1p(sq / alpha)
    return jax.nn.softmax(logits, axis=-1)


def target_distribution(q: jax.Array, frequency: jax.Array | None = None) -> jax.Array:
    """DEC's auxiliary target ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')``, eq. 3.

    Args:
      q: soft assignments ``[B, K]``.
      frequency: the soft cluster frequencies ``f_j = sum_i q_ij`` ``[K]`` over the whole
        dataset (any positive multiple; only ratios matter); None: over the rows of ``q``.
    """
    chex.assert_rank(q, 2)
    f = jnp.sum(q, axis=0) if frequency is None else frequency
    chex.assert_shape(f, (q.shape[1],))
    weight = jnp.square(q) / f[None, :]
    return weight / jnp.sum(weight, axis=1, keepdims=True)


def clustering_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """Per-example ``KL(p_i || q_i) = sum_j p_ij log(p_ij / q_ij)``, eq. 2 (summed over i there), ``[B]``."""
    chex.assert_equal_shape((p, q))
    return jnp.sum(jax.scipy.special.xlogy(p, p) - jax.scipy.special.xlogy(p, q), axis=-1)


def hard_assignment(z: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index of the nearest centroid of each embedding, ``[B]`` int32."""
    sq = jnp.sum(jnp.square(z[:, None, :] - centroids[None, :, :]), axis=-1)
    return jnp.argmin(sq, axis=-1).astype(jnp.int32)


def kmeans_distance(z: jax.Array, centroids: jax.Array) -> jax.Array:
    """DCN's k-means term ``||f(x_i) - M s_i||^2`` with ``s_i`` the nearest centroid, eq. 5, ``[B]``."""
    nearest = centroids[hard_assignment(z, centroids)]
    return jnp.sum(jnp.square(z - nearest), axis=-1)


def dcn_centroid_update(centroids: jax.Array, counts: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """DCN's centroid step, eq. 8 of arXiv 1610.04794, one example after another.

    For each example, with ``k`` its nearest centroid: ``c_k += 1`` and
    ``m_k -= (m_k - z_i) / c_k``: each centroid is the running mean of the embeddings
    assigned to it, with a step that shrinks as the cluster grows.

    Args:
      centroids: ``[K, d]``.
      counts: ``[K]`` float32, the number of examples each centroid has absorbed.
      z: the batch's embeddings ``[B, d]`` (no gradient flows through this update).

    Returns:
      The new ``(centroids, counts)``.
    """

    def one(carry: tuple[jax.Array, jax.Array], zi: jax.Array) -> tuple[tuple[jax.Array, jax.Array], None]:
        m, c = carry
        k = jnp.argmin(jnp.sum(jnp.square(m - zi[None, :]), axis=-1))
        c = c.at[k].add(1.0)
        m = m.at[k].add(-(m[k] - zi) / c[k])
        return (m, c), None

    (centroids, counts), _ = jax.lax.scan(one, (centroids, counts), jax.lax.stop_gradient(z))
    return centroids, counts


def pairwise_constraint_loss(q_i: jax.Array, q_j: jax.Array, must_link: jax.Array, eps: float = 1e-7) -> jax.Array:
    """The pairwise constraint term on soft assignments, per pair ``[P]``.

    ``<q_i, q_j>`` is the probability that the two examples fall in the same cluster
    when each draws its cluster from its assignment; a must-link pair pays
    ``-log <q_i, q_j>``, a cannot-link pair ``-log(1 - <q_i, q_j>)``.

    Args:
      q_i: assignments of the pairs' first examples ``[P, K]``.
      q_j: assignments of the pairs' second examples ``[P, K]``.
      must_link: ``[P]`` bool, True for must-link and False for cannot-link.
    """
    chex.assert_equal_shape((q_i, q_j))
    same = jnp.clip(jnp.sum(q_i * q_j, axis=-1), eps, 1.0 - eps)
    return jnp.where(must_link, -jnp.log(same), -jnp.log1p(-same))


def make_constraints(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random must-link / cannot-link pairs from a fraction of labelled examples.

    ``round(fraction * N)`` examples are labelled at random; every labelled example is
    paired with one other labelled example drawn at random, and the pair is must-link
    when their labels agree. This is the pairwise supervision of semi-supervised
    clustering (arXiv 2210.04142, sec. 4): the constraints, not the labels, are given.

    Args:
      labels: ``[N]`` true labels.
      fraction: in [0, 1], the fraction of examples labelled.
      seed: the numpy seed of the draw.

    Returns:
      ``(first, second, must_link)``: index arrays ``[P]`` and a bool array ``[P]``.

    Raises:
      ValueError: ``fraction`` outside [0, 1], naming ``model.constraint_fraction``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"model.constraint_fraction: expected a fraction in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    n = round(fraction * len(labels))
    if n < 2:
        empty = np.zeros((0,), np.int32)
        return empty, empty, np.zeros((0,), bool)
    chosen = rng.choice(len(labels), n, replace=False).astype(np.int32)
    partner = chosen[(np.arange(n) + rng.integers(1, n, n)) % n]
    return chosen, partner, labels[chosen] == labels[partner]


def check_constraints(first: np.ndarray, second: np.ndarray, must_link: np.ndarray, num_examples: int) -> None:
    """Raises ``ValueError`` naming ``constraints`` when a pair names an example that does not exist."""
    first, second, must_link = np.asarray(first), np.asarray(second), np.asarray(must_link)
    if not (first.shape == second.shape == must_link.shape) or first.ndim != 1:
        raise ValueError(f"constraints: expected three 1-D arrays of one length, got shapes {first.shape}, {second.shape}, {must_link.shape}")
    for name, idx in (("first", first), ("second", second)):
        if idx.size and (idx.min() < 0 or idx.max() >= num_examples):
            raise ValueError(f"constraints: {name} indices must lie in [0, {num_examples}), got range [{idx.min()}, {idx.max()}]")


def kmeans(z: np.ndarray, num_clusters: int, seed: int, n_init: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's k-means on the embeddings, the initialisation of DEC/IDEC/DCN (n_init 20).

    Returns:
      ``(centroids [K, d] float32, assignments [N] int32)``.

    Raises:
      ValueError: ``num_clusters`` below 2 or above the number of examples.
    """
    from sklearn.cluster import KMeans

    check_num_clusters(num_clusters, len(z))
    km = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed).fit(np.asarray(z, np.float64))
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int32)


def check_num_clusters(num_clusters: int, num_examples: int) -> None:
    """Raises ``ValueError`` naming ``model.num_clusters`` unless ``2 <= K <= num_examples``."""
    if not isinstance(num_clusters, int | np.integer) or not 2 <= num_clusters <= num_examples:
        raise ValueError(f"model.num_clusters: expected an int in [2, {num_examples}] (the number of examples), got {num_clusters!r}")
