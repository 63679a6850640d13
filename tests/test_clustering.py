"""Clustering metrics and the DEC/IDEC/DCN math against closed forms and brute force."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.metrics import clustering as cm
from genjax.models import dec


@pytest.mark.parametrize("k", [2, 3, 4])
def test_hungarian_accuracy_equals_brute_force_over_permutations(k):
    rng = np.random.default_rng(k)
    for _ in range(20):
        labels = rng.integers(0, k, 40)
        clusters = rng.integers(0, k, 40)
        brute = max(np.mean(np.array(perm)[clusters] == labels) for perm in itertools.permutations(range(k)))
        assert cm.cluster_accuracy(labels, clusters) == pytest.approx(brute)


def test_a_relabelled_perfect_clustering_scores_one_and_chance_scores_low():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    perm = rng.permutation(10)
    s = cm.cluster_scores(labels, perm[labels])
    assert (s.acc, s.nmi, s.ari, s.num_examples) == (1.0, pytest.approx(1.0), pytest.approx(1.0), 2000)
    chance = cm.cluster_scores(labels, rng.integers(0, 10, 2000))
    assert chance.acc < 0.2 and chance.nmi < 0.05 and abs(chance.ari) < 0.02
    assert cm.cluster_mapping(labels, perm[labels]) == {int(perm[i]): i for i in range(10)}


def test_more_clusters_than_labels_counts_the_unmatched_cluster_as_errors():
    labels = np.array([0, 0, 1, 1])
    assert cm.cluster_accuracy(labels, np.array([0, 2, 1, 1])) == 0.75


@pytest.mark.parametrize(
    ("labels", "clusters", "match"),
    [
        (np.zeros(5, int), np.zeros(4, int), "clusters: expected 5 assignments"),
        (np.zeros((2, 2), int), np.zeros((2, 2), int), "expected 1-D"),
        (np.zeros(3), np.zeros(3, int), "labels: expected non-negative integers"),
        (np.zeros(3, int), -np.ones(3, int), "clusters: expected non-negative integers"),
        (np.zeros(0, int), np.zeros(0, int), "at least one example"),
    ],
)
def test_metric_bad_input_names_the_argument(labels, clusters, match):
    with pytest.raises(ValueError, match=match):
        cm.cluster_scores(labels, clusters)


def test_confusion_matrix_figure_is_written(tmp_path):
    labels = np.repeat(np.arange(3), 5)
    path = cm.confusion_matrix_figure(labels, (labels + 1) % 3, tmp_path / "c.png")
    assert path.stat().st_size > 1000


def test_student_t_assignment_matches_the_closed_form_of_eq_1():
    rng = np.random.default_rng(1)
    z, mu = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    for alpha in (1.0, 2.5):
        kernel = np.array([[(1 + np.sum((zi - mj) ** 2) / alpha) ** (-(alpha + 1) / 2) for mj in mu] for zi in z])
        q = np.asarray(dec.student_t_assignment(jnp.asarray(z, jnp.float32), jnp.asarray(mu, jnp.float32), alpha))
        np.testing.assert_allclose(q, kernel / kernel.sum(1, keepdims=True), rtol=1e-5)


def test_target_distribution_and_kl_match_eqs_2_and_3():
    rng = np.random.default_rng(2)
    q = rng.dirichlet(np.ones(5), size=8)
    f = q.sum(0)
    p = q**2 / f
    p = p / p.sum(1, keepdims=True)
    got = np.asarray(dec.target_distribution(jnp.asarray(q, jnp.float32)))
    np.testing.assert_allclose(got, p, rtol=1e-5)
    # The target sharpens every assignment towards its most likely cluster.
    assert np.all(got.max(1) >= q.max(1) - 1e-6)
    kl = np.asarray(dec.clustering_kl(jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32)))
    np.testing.assert_allclose(kl, np.sum(p * np.log(p / q), 1), rtol=1e-4, atol=1e-7)


def test_dcn_centroid_update_is_the_sequential_running_mean_of_eq_8():
    rng = np.random.default_rng(3)
    m0, z = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(10, 2)).astype(np.float32)
    counts0 = np.array([1.0, 5.0, 100.0], np.float32)
    m, c = m0.copy(), counts0.copy()
    for zi in z:
        k = np.argmin(((m - zi) ** 2).sum(1))
        c[k] += 1
        m[k] -= (m[k] - zi) / c[k]
    got_m, got_c = dec.dcn_centroid_update(jnp.asarray(m0), jnp.asarray(counts0), jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(got_m), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got_c), c)
    np.testing.assert_allclose(np.asarray(dec.kmeans_distance(jnp.asarray(z), jnp.asarray(m0))), ((z[:, None] - m0[None]) ** 2).sum(-1).min(1), rtol=1e-5)


def test_pairwise_constraint_loss_closed_form():
    qi = jnp.array([[0.9, 0.1], [0.9, 0.1]])
    qj = jnp.array([[0.8, 0.2], [0.8, 0.2]])
    same = 0.9 * 0.8 + 0.1 * 0.2
    got = np.asarray(dec.pairwise_constraint_loss(qi, qj, jnp.array([True, False])))
    np.testing.assert_allclose(got, [-np.log(same), -np.log(1 - same)], rtol=1e-5)


def test_constraints_agree_with_labels_and_bad_pairs_are_named():
    labels = np.random.default_rng(4).integers(0, 3, 500)
    first, second, must = dec.make_constraints(labels, 0.1, seed=0)
    assert len(first) == 50 and np.all(first != second)
    np.testing.assert_array_equal(must, labels[first] == labels[second])
    dec.check_constraints(first, second, must, 500)
    with pytest.raises(ValueError, match=r"constraints: second indices must lie in \[0, 500\)"):
        dec.check_constraints(first, second + 500, must, 500)
    with pytest.raises(ValueError, match="model.constraint_fraction"):
        dec.make_constraints(labels, 1.5, seed=0)


@pytest.mark.parametrize("k", [1, 0, 11])
def test_number_of_clusters_outside_two_to_n_is_refused(k):
    with pytest.raises(ValueError, match=r"model.num_clusters: expected an int in \[2, 10\]"):
        dec.kmeans(np.zeros((10, 2), np.float32), k, seed=0)


def test_kmeans_recovers_separated_blobs_and_the_autoencoder_has_the_papers_size():
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    truth = rng.integers(0, 3, 300)
    _, assigned = dec.kmeans(centres[truth] + rng.normal(size=(300, 2)).astype(np.float32), 3, seed=0, n_init=3)
    assert cm.cluster_accuracy(truth, assigned) == 1.0
    params = jax.eval_shape(lambda: dec.StackedAutoencoder(784).init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))))
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params)) == 3_330_794


def test_reconstruction_losses_closed_form():
    x = jnp.array([[0.0, 1.0, 0.25]])
    out = jnp.array([[0.5, -1.0, 0.0]])
    np.testing.assert_allclose(dec.reconstruction_loss(x, out, "mse"), [(0.25 + 4.0 + 0.0625) / 3], rtol=1e-6)
    p = 1 / (1 + np.exp(-np.array([0.5, -1.0, 0.0])))
    bce = -(np.array([0.0, 1.0, 0.25]) * np.log(p) + np.array([1.0, 0.0, 0.75]) * np.log(1 - p)).mean()
    np.testing.assert_allclose(dec.reconstruction_loss(x, out, "bernoulli"), [bce], rtol=1e-5)
    np.testing.assert_allclose(dec.reconstruct(out, "bernoulli"), p[None], rtol=1e-6)
    with pytest.raises(ValueError, match="model.reconstruction: expected one of"):
        dec.reconstruction_loss(x, out, "l1")


def test_gradient_of_the_dec_loss_is_eqs_4_and_5():
    """dL/dz_i and dL/dmu_j of L = KL(P||Q) for fixed P, as derived in arXiv 1511.06335."""
    rng = np.random.default_rng(6)
    z, mu = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    alpha = 1.0
    q = np.asarray(dec.student_t_assignment(jnp.asarray(z), jnp.asarray(mu), alpha), np.float64)
    p = np.asarray(dec.target_distribution(jnp.asarray(q, jnp.float32)), np.float64)
    loss = lambda zz, mm: jnp.sum(dec.clustering_kl(jnp.asarray(p, jnp.float32), dec.student_t_assignment(zz, mm, alpha)))
    gz, gmu = jax.grad(loss, argnums=(0, 1))(jnp.asarray(z), jnp.asarray(mu))
    diff = z[:, None, :].astype(np.float64) - mu[None, :, :]
    kernel = 1.0 / (1.0 + np.sum(diff**2, -1) / alpha)
    weight = (alpha + 1.0) / alpha * kernel * (p - q)
    np.testing.assert_allclose(np.asarray(gz), np.sum(weight[..., None] * diff, 1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gmu), -np.sum(weight[..., None] * diff, 0), rtol=1e-4, atol=1e-6)


def test_target_distribution_with_dataset_frequencies():
    rng = np.random.default_rng(7)
    q = rng.dirichlet(np.ones(3), size=6)
    f = np.array([0.2, 0.5, 0.3])
    p = q**2 / f
    np.testing.assert_allclose(
        np.asarray(dec.target_distribution(jnp.asarray(q, jnp.float32), jnp.asarray(f, jnp.float32))), p / p.sum(1, keepdims=True), rtol=1e-5
    )
