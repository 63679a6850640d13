"""Deep clustering families: ``cluster_ae`` (pretraining) and ``dec`` (DEC, IDEC, DCN),
and the data, evaluation and figures every clustering family shares.

A clustering run trains on ``data.train_split`` (for MNIST ``"train+valid+test"``, all
70,000 images, as the papers do) and ``evaluate`` scores the model's hard assignments
with ACC, NMI and ARI (``genjax.metrics.clustering``) on that whole set and on the test
split alone (``test_acc``, ...). The ``dec`` family starts from a ``cluster_ae`` run named
in ``model.pretrained`` and k-means (scikit-learn, ``model.kmeans_n_init`` restarts) on
its embeddings. The math lives in ``genjax.models.dec``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import viz
from genjax.data import map_batches
from genjax.experiment.base import Experiment, check_common, image_shape, load_split, loss_update, train_batcher
from genjax.experiment.config import base_config
from genjax.metrics.clustering import cluster_scores, confusion_matrix_figure
from genjax.models import dec as dec_lib
from genjax.nn.module import apply
from genjax.train.state import TrainState
from genjax.types import Params

DEC_METHODS = ("dec", "idec", "dcn")
_ENCODE = dec_lib.StackedAutoencoder.encode
_CALL = dec_lib.StackedAutoencoder.__call__


@dataclasses.dataclass(frozen=True)
class ClusterData:
    """The examples a clustering run trains on and is scored on.

    Attributes:
      images: ``data.train_split`` (all examples), NHWC float32 in [0, 1].
      labels: their true labels (used only for scoring).
      test_images: the ``eval.split`` examples.
      test_labels: their labels.
    """

    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def cluster_base_config(family: str) -> ml_collections.ConfigDict:
    """``base_config()`` for clustering: MNIST's 70,000 images unbinarised, batch 256.

    ``model.num_clusters`` (10), ``eval.num_examples`` caps the examples scored (0: all),
    ``eval.figure_examples`` the examples plotted in the latent-space figure.
    """
    c = base_config()
    c.data.binarize = "none"
    c.data.train_split = "train+valid+test"
    c.train.batch_size = 256
    c.train.checkpoint_every = 2000
    c.eval.batch_size = 1000
    c.eval.figure_examples = 5000
    c.model = ml_collections.ConfigDict()
    c.model.family = family
    c.model.num_clusters = 10
    return c


@functools.lru_cache(maxsize=4)
def _cached_data(source: str, name: str, data_dir: str, shape: tuple[int, int, int], train_split: str, eval_split: str, seed: int) -> ClusterData:
    config = ml_collections.ConfigDict({"seed": seed, "data": {"source": source, "name": name, "data_dir": data_dir, "image_shape": shape}})
    train = load_split(config, train_split)
    test = load_split(config, eval_split)
    if train.labels is None or test.labels is None:
        raise ValueError(f"data.name: clustering is scored against labels, and {name!r} has none")
    return ClusterData(train.images.astype(np.float32), train.labels.astype(np.int32), test.images.astype(np.float32), test.labels.astype(np.int32))


def cluster_data(config: ml_collections.ConfigDict) -> ClusterData:
    """The run's ``ClusterData`` (loaded once per process and config)."""
    d = config.data
    return _cached_data(d.source, d.name, d.data_dir, image_shape(config), d.train_split, config.eval.split, int(config.seed))


def check_cluster_config(config: ml_collections.ConfigDict, num_examples: int) -> None:
    """The checks every clustering family makes: the common ones and ``model.num_clusters``."""
    check_common(config)
    dec_lib.check_num_clusters(config.model.num_clusters, num_examples)


def apply_in_batches(fn: Callable[[jax.Array], jax.Array], images: np.ndarray, batch_size: int, desc: str) -> np.ndarray:
    """``fn`` (jitted by the caller) over ``images`` in batches, concatenated as numpy."""
    return np.asarray(map_batches(fn, images, batch_size=batch_size, desc=desc))


def cluster_evaluation(config: ml_collections.ConfigDict, data: ClusterData, assign: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """ACC, NMI and ARI of ``assign`` on the whole training set and on the test split.

    Args:
      config: the run's config (``eval.num_examples`` caps both sets; 0: all).
      data: the run's examples.
      assign: ``images -> cluster indices [N]``.
    """
    cap = config.eval.num_examples or None
    out: dict[str, float] = {}
    for prefix, images, labels in (("", data.images, data.labels), ("test_", data.test_images, data.test_labels)):
        s = cluster_scores(labels[:cap], np.asarray(assign(images[:cap])))
        out.update({f"{prefix}acc": s.acc, f"{prefix}nmi": s.nmi, f"{prefix}ari": s.ari, f"{prefix}num_examples": s.num_examples})
    return out


def project_2d(z: np.ndarray) -> np.ndarray:
    """The first two principal components of ``z [N, d]`` (centred), ``[N, 2]``."""
    z = np.asarray(z, np.float64)
    z = z - z.mean(axis=0)
    if z.shape[1] <= 2:
        return np.pad(z, ((0, 0), (0, 2 - z.shape[1])))
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    return z @ vt[:2].T


def latent_figure(path: pathlib.Path, z: np.ndarray, clusters: np.ndarray, labels: np.ndarray, title: str) -> pathlib.Path:
    """Two scatter plots of the embeddings' first two principal components, coloured by
    assigned cluster and by true label."""
    return viz.save_labelled_scatter(path, project_2d(z), {"cluster": clusters, "true label": labels}, title=title)


def cluster_figures(
    config: ml_collections.ConfigDict,
    data: ClusterData,
    workdir: pathlib.Path,
    assign: Callable[[np.ndarray], np.ndarray],
    embed: Callable[[np.ndarray], np.ndarray] | None,
) -> list[pathlib.Path]:
    """The confusion matrix on the whole set and, with ``embed``, the latent-space figure
    (``eval.figure_examples`` examples) coloured by cluster and by true label."""
    cap = config.eval.num_examples or None
    images, labels = data.images[:cap], data.labels[:cap]
    clusters = np.asarray(assign(images))
    family = config.model.get("method", config.model.family)
    paths = [confusion_matrix_figure(labels, clusters, workdir / "confusion.png", title=f"{family}: clusters against labels")]
    if embed is not None:
        n = config.eval.figure_examples
        paths.append(latent_figure(workdir / "latent.png", np.asarray(embed(images[:n])), clusters[:n], labels[:n], family))
    return paths


def load_pretrained_autoencoder(config: ml_collections.ConfigDict) -> tuple[dec_lib.StackedAutoencoder, Params]:
    """The stacked autoencoder of the ``cluster_ae`` run named in ``model.pretrained``.

    Raises:
      ValueError / FileNotFoundError: naming ``model.pretrained`` when it is empty, has
        no run or checkpoint, is not a ``cluster_ae`` run, or was trained on images of
        another shape than ``data.image_shape``.
    """
    from genjax.experiment.run import load_run, run_config

    path = config.model.pretrained
    if not isinstance(path, str) or not path:
        raise ValueError(f"model.pretrained: expected the workdir of a trained cluster_ae run, got {path!r}")
    try:
        theirs = run_config(path)
        if theirs.model.family != "cluster_ae":
            raise ValueError(f"'{path}' is a {theirs.model.family!r} run, expected a 'cluster_ae' run")
        if tuple(theirs.data.image_shape) != tuple(config.data.image_shape):
            raise ValueError(
                f"'{path}' was trained on images of shape {tuple(theirs.data.image_shape)}, but data.image_shape is {tuple(config.data.image_shape)}"
            )
        run = load_run(path)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"model.pretrained: {str(err).removeprefix('workdir: ')}") from None
    return run.experiment.model, run.params


def autoencoder_from_config(config: ml_collections.ConfigDict) -> dec_lib.StackedAutoencoder:
    """The ``StackedAutoencoder`` of ``model.dims`` for ``data.image_shape``."""
    dims = tuple(config.model.dims)
    if not dims or min(dims) <= 0:
        raise ValueError(f"model.dims: expected positive encoder widths ending in the embedding size, got {dims}")
    if config.model.reconstruction not in dec_lib.RECONSTRUCTIONS:
        raise ValueError(f"model.reconstruction: expected one of {dec_lib.RECONSTRUCTIONS}, got {config.model.reconstruction!r}")
    return dec_lib.StackedAutoencoder(
        input_dim=int(np.prod(image_shape(config))), dims=dims, activation=config.model.activation, reconstruction=config.model.reconstruction
    )


def cluster_ae_config() -> ml_collections.ConfigDict:
    """The ``cluster_ae`` family: end-to-end pretraining of the d-500-500-2000-10 autoencoder.

    As in IDEC's pretraining (Guo et al. 2017, sec. 4.1): Adam, batch 256, mean squared
    reconstruction error (``model.reconstruction = "bernoulli"``: cross-entropy of a
    Bernoulli decoder, the pretraining that matches VaDE's likelihood), no corruption by default (``model.corruption`` is the dropout
    rate of the input for the denoising pretraining of Xie et al., 0.2 there).
    ``evaluate(full=True)`` scores k-means on the embeddings (the "AE + k-means" row).
    """
    c = cluster_base_config("cluster_ae")
    c.model.dims = dec_lib.DEC_DIMS
    c.model.activation = "relu"
    c.model.reconstruction = "mse"
    c.model.corruption = 0.0
    c.model.kmeans_n_init = 20
    c.train.num_steps = 20_000
    return c


def build_cluster_ae(config: ml_collections.ConfigDict) -> Experiment:
    """The ``cluster_ae`` family; ``Experiment.model`` is the ``StackedAutoencoder``."""
    m = config.model
    data = cluster_data(config)
    check_cluster_config(config, len(data.images))
    if not 0.0 <= m.corruption < 1.0:
        raise ValueError(f"model.corruption: expected a dropout rate in [0, 1), got {m.corruption}")
    model = autoencoder_from_config(config)
    batcher = train_batcher(config)

    def loss(params: Params, batch: dict[str, jax.Array], keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = batch["image"].reshape(batch["image"].shape[0], -1)
        keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - m.corruption, x.shape[1:]))(keys)
        noisy = jnp.where(keep, x / (1.0 - m.corruption), 0.0) if m.corruption else x
        recon = dec_lib.reconstruction_loss(x, apply(model, params, _CALL, noisy)[1], model.reconstruction)
        return jnp.mean(recon), {"reconstruction": jnp.mean(recon)}

    embed_fn = jax.jit(lambda p, x: apply(model, p, _ENCODE, x))
    out_fn = jax.jit(lambda p, x: apply(model, p, _CALL, x)[1])
    recon_fn = jax.jit(lambda p, x: dec_lib.reconstruct(apply(model, p, _CALL, x)[1], model.reconstruction))

    def embed_all(params: Params, images: np.ndarray) -> np.ndarray:
        return apply_in_batches(functools.partial(embed_fn, params), images, config.eval.batch_size, "embed")

    def assign(params: Params, images: np.ndarray) -> np.ndarray:
        centroids, _ = dec_lib.kmeans(embed_all(params, data.images), m.num_clusters, config.seed, m.kmeans_n_init)
        return np.asarray(dec_lib.hard_assignment(jnp.asarray(embed_all(params, images)), jnp.asarray(centroids)))

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        test = data.test_images[: config.eval.num_examples or None]
        out_test = apply_in_batches(functools.partial(out_fn, params), test, config.eval.batch_size, "reconstruct")
        out = {"test_reconstruction": float(np.mean(dec_lib.reconstruction_loss(jnp.asarray(test), jnp.asarray(out_test), model.reconstruction)))}
        if full:
            out.update(cluster_evaluation(config, data, functools.partial(assign, params)))
        return out

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        images = data.test_images[:num]
        return apply_in_batches(functools.partial(recon_fn, params), images, config.eval.batch_size, "reconstruct").reshape(images.shape)

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        return cluster_figures(config, data, workdir, functools.partial(assign, params), functools.partial(embed_all, params))

    shape = image_shape(config)
    return Experiment(
        config=config,
        model=model,
        init=lambda key: model.init(key, jnp.zeros((1,) + shape, jnp.float32)),
        update=loss_update(config, loss, steps_per_epoch=batcher.steps_per_epoch),
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
    )


def dec_config() -> ml_collections.ConfigDict:
    """The ``dec`` family: DEC, IDEC or DCN (``model.method``) from a pretrained autoencoder.

    ``model.pretrained``: the ``cluster_ae`` workdir; ``model.alpha``: the Student-t
    degrees of freedom (1); ``model.update_interval``: steps between target
    distribution refreshes (T = 140 in IDEC for MNIST; ``train.log_every`` must be a
    multiple); ``model.tol``: training stops once fewer than this fraction of the tracked
    examples change cluster between two refreshes (0.001, as DEC and IDEC);
    ``model.track_examples``: how many examples that fraction, and the soft cluster
    frequencies ``f_j`` of eq. 3, are measured on at each refresh (the papers use every
    example; a minibatch's own ``f_j`` would be noisy and would depend on the device count); ``model.gamma``: IDEC's weight of the clustering term
    (0.1); ``model.dcn_lambda`` and ``model.dcn_count_init``: DCN's weight of the
    k-means term and the initial count of each centroid; ``model.constraint_fraction``,
    ``model.constraint_weight`` and ``model.constraint_batch``: the semi-supervised
    pairwise term (0: off); ``model.constraints``: an ``.npz`` file of your own pairs
    (``first``, ``second``: indices into ``data.train_split``; ``must_link``: bool),
    used instead of pairs drawn from a fraction of the labels.
    """
    c = cluster_base_config("dec")
    c.model.method = "idec"
    c.model.pretrained = ""
    c.model.alpha = 1.0
    c.model.update_interval = 140
    c.model.tol = 0.001
    c.model.track_examples = 10_000
    c.model.gamma = 0.1
    c.model.dcn_lambda = 0.5
    c.model.dcn_count_init = 100.0
    c.model.kmeans_n_init = 20
    c.model.constraint_fraction = 0.0
    c.model.constraint_weight = 1.0
    c.model.constraint_batch = 256
    c.model.constraints = ""
    c.train.num_steps = 20_000
    c.train.log_every = 140
    return c


def load_constraints(path: str, num_examples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise constraints from an ``.npz`` file with arrays ``first``, ``second`` and ``must_link``.

    Raises:
      FileNotFoundError: naming ``model.constraints`` when the file is missing.
      ValueError: naming ``model.constraints`` when an array is missing or a pair names an
        example outside ``[0, num_examples)``.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model.constraints: no file at '{path}'; expected an .npz with first, second and must_link")
    with np.load(file) as arrays:
        missing = sorted({"first", "second", "must_link"} - set(arrays.files))
        if missing:
            raise ValueError(f"model.constraints: '{path}' lacks {missing}; expected arrays first, second and must_link")
        first, second, must_link = (np.asarray(arrays[k]) for k in ("first", "second", "must_link"))
    try:
        dec_lib.check_constraints(first, second, must_link, num_examples)
    except ValueError as err:
        raise ValueError(f"model.{err}") from None
    return first.astype(np.int32), second.astype(np.int32), must_link.astype(bool)


def _check_dec_config(config: ml_collections.ConfigDict) -> None:
    m = config.model
    if m.method not in DEC_METHODS:
        raise ValueError(f"model.method: expected one of {DEC_METHODS}, got {m.method!r}")
    for name in ("alpha", "gamma", "dcn_lambda", "dcn_count_init", "constraint_weight"):
        if not getattr(m, name) > 0:
            raise ValueError(f"model.{name}: expected a positive float, got {getattr(m, name)}")
    for name in ("update_interval", "track_examples", "kmeans_n_init", "constraint_batch"):
        if getattr(m, name) < 1:
            raise ValueError(f"model.{name}: expected a positive int, got {getattr(m, name)}")
    if not 0.0 <= m.tol < 1.0:
        raise ValueError(f"model.tol: expected a fraction in [0, 1), got {m.tol}")
    if config.train.ema_decay:
        raise ValueError(f"train.ema_decay: the dec family evaluates the trained parameters themselves; expected 0, got {config.train.ema_decay}")
    if m.method == "dcn" and config.parallel == "pmap":
        raise ValueError("parallel: DCN's sequential centroid update (eq. 8) runs over the whole batch, which 'pmap' splits; expected 'jit'")
    if config.train.log_every % m.update_interval:
        raise ValueError(
            f"train.log_every: the convergence check runs every train.log_every steps and must follow a refresh; expected a multiple of model.update_interval={m.update_interval}, got {config.train.log_every}"
        )


def build_dec(config: ml_collections.ConfigDict) -> Experiment:
    """The ``dec`` family. ``Experiment.model`` is the pretrained ``StackedAutoencoder``.

    Parameters: ``{"ae": autoencoder, "centroids": [K, d]}`` (DEC/IDEC train both by
    gradient; DCN keeps its centroids in ``model_state`` and updates them by eq. 8).
    """
    m = config.model
    _check_dec_config(config)
    data = cluster_data(config)
    check_cluster_config(config, len(data.images))
    model, ae_params = load_pretrained_autoencoder(config)
    ae_params = jax.device_get(ae_params)
    embed_fn = jax.jit(lambda p, x: apply(model, p, _ENCODE, x))
    z0 = apply_in_batches(functools.partial(embed_fn, ae_params), data.images, config.eval.batch_size, "embed")
    centroids0, assign0 = dec_lib.kmeans(z0, m.num_clusters, config.seed, m.kmeans_n_init)
    track = np.random.default_rng(config.seed).permutation(len(data.images))[: m.track_examples]
    track_x = jnp.asarray(data.images[track])
    constraints = (
        load_constraints(m.constraints, len(data.images)) if m.constraints else dec_lib.make_constraints(data.labels, m.constraint_fraction, config.seed)
    )
    pair_x = (jnp.asarray(data.images[constraints[0]]), jnp.asarray(data.images[constraints[1]]), jnp.asarray(constraints[2]))
    batcher = train_batcher(config)
    dcn = m.method == "dcn"

    def q_of(params: Params, x: jax.Array, centroids: jax.Array) -> jax.Array:
        return dec_lib.student_t_assignment(apply(model, params["ae"], _ENCODE, x), centroids, m.alpha)

    def constraint_term(params: Params, centroids: jax.Array, key: jax.Array) -> jax.Array:
        if not len(constraints[0]):
            return jnp.float32(0.0)
        idx = jax.random.randint(key, (m.constraint_batch,), 0, len(constraints[0]))
        qi, qj = q_of(params, pair_x[0][idx], centroids), q_of(params, pair_x[1][idx], centroids)
        return jnp.mean(dec_lib.pairwise_constraint_loss(qi, qj, pair_x[2][idx]))

    def loss(
        params: Params, batch: dict[str, jax.Array], keys: jax.Array, *, step: jax.Array, model_state: dict[str, Any]
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
        x = batch["image"]
        fixed = jax.lax.stop_gradient(params)
        centroids = model_state["centroids"] if dcn else params["centroids"]
        fixed_centroids = model_state["centroids"] if dcn else fixed["centroids"]

        def refresh(_: None) -> tuple[Params, jax.Array, jax.Array, jax.Array]:
            q_track = dec_lib.student_t_assignment(apply(model, fixed["ae"], _ENCODE, track_x), fixed_centroids, m.alpha)
            tracked = jnp.argmax(q_track, axis=-1).astype(jnp.int32)
            change = jnp.mean((tracked != model_state["tracked"]).astype(jnp.float32))
            return fixed, tracked, change, jnp.mean(q_track, axis=0)

        # The last step of every period refreshes, so the loop's check (every
        # train.log_every = update_interval steps) sees a convergence at once.
        due = (step + 1) % m.update_interval == 0
        keep = (model_state["snapshot"], model_state["tracked"], model_state["change"], model_state["frequency"])
        snapshot, tracked, change, frequency = jax.lax.cond(due, refresh, lambda _: keep, None)
        converged = model_state["converged"] | (due & (change < m.tol))
        z, x_hat = apply(model, params["ae"], _CALL, x)
        recon = jnp.mean(dec_lib.reconstruction_loss(x, x_hat, model.reconstruction))
        metrics: dict[str, jax.Array] = {"reconstruction": recon, "assignment_change": change, "converged": converged.astype(jnp.float32)}
        new_state = {**model_state, "snapshot": snapshot, "tracked": tracked, "change": change, "frequency": frequency, "converged": converged}
        if dcn:
            kmeans_term = jnp.mean(dec_lib.kmeans_distance(z, centroids))
            total = recon + m.dcn_lambda / 2.0 * kmeans_term
            new_state["centroids"], new_state["counts"] = dec_lib.dcn_centroid_update(model_state["centroids"], model_state["counts"], z)
            metrics["kmeans"] = kmeans_term
        else:
            q = dec_lib.student_t_assignment(z, centroids, m.alpha)
            snap_centroids = snapshot["centroids"]
            p = dec_lib.target_distribution(dec_lib.student_t_assignment(apply(model, snapshot["ae"], _ENCODE, x), snap_centroids, m.alpha), frequency)
            kl = jnp.mean(dec_lib.clustering_kl(jax.lax.stop_gradient(p), q))
            total = kl if m.method == "dec" else recon + m.gamma * kl
            metrics["kl"] = kl
        if len(constraints[0]):
            pairs = constraint_term(params, centroids, keys[0])
            total = total + m.constraint_weight * pairs
            metrics["constraints"] = pairs
        return total, (metrics, new_state)

    params0 = {"ae": ae_params} if dcn else {"ae": ae_params, "centroids": jnp.asarray(centroids0)}
    q_track0 = jax.jit(lambda c: dec_lib.student_t_assignment(embed_fn(ae_params, track_x), c, m.alpha))(jnp.asarray(centroids0))
    init_state: dict[str, Any] = {
        "snapshot": params0,
        "tracked": jnp.asarray(assign0[track]),
        "change": jnp.float32(1.0),
        "frequency": jnp.mean(q_track0, axis=0),
        "converged": jnp.bool_(False),
    }
    if dcn:
        init_state["centroids"] = jnp.asarray(centroids0)
        init_state["counts"] = jnp.full((m.num_clusters,), m.dcn_count_init, jnp.float32)

    def eval_params(state: TrainState) -> Params:
        if dcn:
            return {"ae": state.params["ae"], "centroids": state.model_state["centroids"]}
        return state.params

    assign_fn = jax.jit(lambda p, x: dec_lib.hard_assignment(apply(model, p["ae"], _ENCODE, x), p["centroids"]))

    def assign(params: Params, images: np.ndarray) -> np.ndarray:
        return apply_in_batches(functools.partial(assign_fn, params), images, config.eval.batch_size, "assign")

    def evaluate(params: Params, key: jax.Array, full: bool) -> dict[str, float]:
        return cluster_evaluation(config, data, functools.partial(assign, params))

    recon_fn = jax.jit(lambda p, x: dec_lib.reconstruct(apply(model, p["ae"], _CALL, x)[1], model.reconstruction))

    def sample(params: Params, key: jax.Array, num: int) -> np.ndarray:
        images = data.test_images[:num]
        return apply_in_batches(functools.partial(recon_fn, params), images, config.eval.batch_size, "reconstruct").reshape(images.shape)

    def figures(params: Params, key: jax.Array, workdir: pathlib.Path) -> list[pathlib.Path]:
        embed = functools.partial(apply_in_batches, functools.partial(embed_fn, params["ae"]), batch_size=config.eval.batch_size, desc="embed")
        return cluster_figures(config, data, workdir, functools.partial(assign, params), embed)

    return Experiment(
        config=config,
        model=model,
        init=lambda key: params0,
        update=loss_update(config, loss, steps_per_epoch=batcher.steps_per_epoch, stateful=True),
        batches=batcher.batch,
        evaluate=evaluate,
        sample=sample,
        figures=figures,
        init_model_state=init_state,
        eval_params=eval_params,
        stop=lambda state: bool(state.model_state["converged"]),
    )
