"""A small MNIST classifier whose penultimate features give a classifier Frechet distance.

The Frechet Inception Distance (Heusel et al. 2017, arXiv:1706.08500) compares the
Gaussian fitted to Inception-v3 features of generated images with the one fitted to
real images. Inception weights cannot be downloaded here and are a poor fit for 28x28
grey digits anyway, so for MNIST genjax ships its own feature extractor: the CNN
:class:`MNISTClassifier`, trained by ``python experiments/mnist_classifier/train.py`` on
the 50,000 training images of the classic MNIST split (the command, the measured
validation and test accuracy and the wall time are in ``genjax/assets/
mnist_classifier.json`` and ``experiments/mnist_classifier/RESULTS.md``).

Pass :func:`mnist_features` of real and generated images to
``genjax.metrics.fid.feature_statistics`` and ``frechet_distance``. This is a
project-trained feature extractor: its Frechet distances are comparable only to each
other (the same shipped weights, the same number of images), never to the FID numbers
of papers, which use Inception-v3 features.

The weights are stored as float16 in msgpack (flax serialisation) to keep the file
small, and are cast back to float32 when loaded; the accuracies in the metadata were
measured with the stored (rounded) weights.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from genjax.nn.module import apply

IMAGE_SHAPE: tuple[int, int, int] = (28, 28, 1)
"""``(H, W, C)`` of one input image."""

FEATURE_DIM = 128
"""Width of the feature layer that :func:`mnist_features` returns."""

NUM_CLASSES = 10

WEIGHTS_FILE = "mnist_classifier.msgpack"
METADATA_FILE = "mnist_classifier.json"
_ASSETS_PACKAGE = "genjax.assets"

# Images outside [0, 1] by more than this are rejected, not clipped: values in
# [-1, 1] are the usual mistake (a sampler's output not mapped back to pixels).
_RANGE_TOLERANCE = 0.01


class MNISTClassifier(nn.Module):
    """A small deterministic CNN for 28x28x1 digits (no dropout, no normalisation).

    Layers: a 3x3 convolution at full resolution, then 3x3 stride-2 convolutions
    (28 -> 14 -> 7 -> 4 with ``SAME`` padding), each followed by ReLU; the map is
    flattened and goes through ``Dense(feature_dim)`` (the feature layer), ReLU and
    ``Dense(num_classes)``. With the defaults it has 192,714 parameters.

    Attributes:
      stem_features: channels of the stride-1 convolution.
      features: channels of each stride-2 convolution.
      feature_dim: width of the feature layer.
      num_classes: number of logits.
    """

    stem_features: int = 16
    features: Sequence[int] = (32, 64, 64)
    feature_dim: int = FEATURE_DIM
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Classifies a batch of images.

        Args:
          x: ``[B, 28, 28, 1]`` float images in [0, 1].

        Returns:
          ``(logits, features)``: ``logits`` ``[B, num_classes]`` and ``features``
          ``[B, feature_dim]``, the output of the feature layer ``Dense(feature_dim)``
          *before* its ReLU. The pre-activation is used because it is closer to
          Gaussian and has no units stuck at exactly zero, which suits the Gaussian
          fit of a Frechet distance better than the rectified values.
        """
        chex.assert_rank(x, 4)
        x = nn.relu(nn.Conv(self.stem_features, (3, 3), padding="SAME", name="stem")(x))
        for i, ch in enumerate(self.features):
            x = nn.relu(nn.Conv(ch, (3, 3), strides=(2, 2), padding="SAME", name=f"conv_{i}")(x))
        x = x.reshape((x.shape[0], -1))
        features = nn.Dense(self.feature_dim, name="feature")(x)
        logits = nn.Dense(self.num_classes, name="logits")(nn.relu(features))
        return logits, features


def init_mnist_classifier(key: jax.Array) -> chex.ArrayTree:
    """Fresh float32 parameters of the default :class:`MNISTClassifier`.

    Args:
      key: PRNG key.

    Returns:
      The parameter pytree ``{"params": {...}}``.
    """
    return MNISTClassifier().init(key, jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))


@functools.cache
def _param_template() -> chex.ArrayTree:
    """Shapes and dtypes of the default classifier's parameters, without computing them."""
    return jax.eval_shape(init_mnist_classifier, jax.random.key(0))


def weights_sha256(data: bytes) -> str:
    """Hex SHA-256 of serialised weights (what the metadata's ``sha256`` records)."""
    return hashlib.sha256(data).hexdigest()


def serialize_params(params: chex.ArrayTree) -> bytes:
    """Serialises parameters as the shipped file stores them: float16 msgpack.

    Args:
      params: parameters of the default :class:`MNISTClassifier`.

    Returns:
      The msgpack bytes (``flax.serialization.to_bytes`` of the float16 pytree).
    """
    _check_param_shapes(params, "params")
    return float16_bytes(params)


def float16_bytes(params: chex.ArrayTree) -> bytes:
    """Any parameter pytree as float16 msgpack (``flax.serialization.to_bytes``).

    The generic half of :func:`serialize_params`: it halves the size of float32
    weights (a few hundred kB for a small classifier) at a rounding error of about
    ``1e-3`` relative, for weights committed beside an experiment. Read back with
    :func:`from_float16_bytes` and a template of the same structure.

    Args:
      params: a pytree of float arrays.

    Returns:
      The msgpack bytes of the pytree cast to float16.
    """
    half = jax.tree.map(lambda p: np.asarray(p, np.float16), jax.device_get(params))
    return serialization.to_bytes(half)


def from_float16_bytes(data: bytes, template: chex.ArrayTree, *, source: str = "data") -> chex.ArrayTree:
    """Reads :func:`float16_bytes` back as float32 numpy arrays shaped like ``template``.

    Args:
      data: the msgpack bytes.
      template: a pytree (arrays or ``jax.ShapeDtypeStruct``) with the expected
        structure and shapes, e.g. ``jax.eval_shape(module.init, key, x)``.
      source: what the bytes came from, for error messages.

    Returns:
      The float32 pytree.

    Raises:
      ValueError: naming ``source`` when the bytes do not hold that structure and shapes.
    """
    zeros = jax.tree.map(lambda s: np.zeros(np.shape(s), np.float16), template)
    try:
        restored = serialization.from_bytes(zeros, data)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{source}: not float16 weights of the expected structure: {err}") from err
    expected = jax.tree.map(lambda s: tuple(np.shape(s)), template)
    got = jax.tree.map(lambda p: tuple(np.shape(p)), restored)
    if jax.tree.structure(got) != jax.tree.structure(expected) or got != expected:  # type: ignore[operator]
        raise ValueError(f"{source}: expected parameters with shapes {expected}, got {got}")
    return jax.tree.map(lambda p: np.asarray(p, np.float32), restored)


def deserialize_params(data: bytes, *, source: str = "data") -> chex.ArrayTree:
    """Reads parameters written by :func:`serialize_params`, as float32 numpy arrays.

    Args:
      data: the msgpack bytes.
      source: what the bytes came from, for error messages.

    Returns:
      The float32 parameter pytree of the default :class:`MNISTClassifier`.

    Raises:
      ValueError: if the bytes do not hold parameters of that architecture.
    """
    template = jax.tree.map(lambda s: np.zeros(s.shape, np.float16), _param_template())
    try:
        restored = serialization.from_bytes(template, data)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{source}: not the weights of the default MNISTClassifier: {err}") from err
    _check_param_shapes(restored, source)
    return jax.tree.map(lambda p: np.asarray(p, np.float32), restored)


def _check_param_shapes(params: chex.ArrayTree, name: str) -> None:
    expected = jax.tree.map(lambda s: tuple(s.shape), _param_template())
    try:
        got = jax.tree.map(lambda p: tuple(np.shape(p)), params)
        # jax annotates tree.structure with an alias of PyTreeDef that mypy cannot resolve.
        same = jax.tree.structure(got) == jax.tree.structure(expected) and got == expected  # type: ignore[operator]
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(
            f"{name}: expected parameters of the default MNISTClassifier with shapes {expected}, got {jax.tree.map(lambda p: tuple(np.shape(p)), params)}"
        )


def _read_asset(name: str) -> bytes:
    resource = importlib.resources.files(_ASSETS_PACKAGE) / name
    if not resource.is_file():
        raise FileNotFoundError(
            f"the shipped MNIST classifier file {name!r} is missing from the {_ASSETS_PACKAGE} package "
            f"({resource}); reinstall genjax, or recreate it with `python experiments/mnist_classifier/train.py`"
        )
    return resource.read_bytes()


def mnist_classifier_metadata(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The metadata recorded with the weights (accuracies, command, versions, sha256).

    Args:
      path: a metadata JSON file; None reads the one shipped in ``genjax/assets``.

    Returns:
      The decoded JSON object.

    Raises:
      FileNotFoundError: if the file is missing.
    """
    if path is None:
        return json.loads(_read_asset(METADATA_FILE))
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: MNIST classifier metadata file {path} not found")
    return json.loads(path.read_text())


def load_mnist_classifier(path: str | os.PathLike[str] | None = None) -> chex.ArrayTree:
    """Loads the classifier's weights, checked against the metadata's SHA-256.

    Args:
      path: a weights file written by the training script; None loads the weights
        shipped in ``genjax/assets``. When a metadata JSON with the same stem sits
        next to the file (always, for the shipped weights) its ``sha256`` is checked.

    Returns:
      float32 parameters of the default :class:`MNISTClassifier`, for
      :func:`mnist_features` and :func:`mnist_accuracy`.

    Raises:
      FileNotFoundError: if the weights file (or, for the shipped weights, the
        metadata file) is missing.
      ValueError: if the file fails its checksum or holds other parameters.
    """
    if path is None:
        data = _read_asset(WEIGHTS_FILE)
        metadata: dict[str, Any] | None = mnist_classifier_metadata()
        source = f"{_ASSETS_PACKAGE}/{WEIGHTS_FILE}"
    else:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"path: MNIST classifier weights file {path} not found; write it with `python experiments/mnist_classifier/train.py --out DIR`"
            )
        data = path.read_bytes()
        sidecar = path.with_suffix(".json")
        metadata = mnist_classifier_metadata(sidecar) if sidecar.is_file() else None
        source = str(path)
    if metadata is not None and "sha256" in metadata:
        digest = weights_sha256(data)
        if digest != metadata["sha256"]:
            raise ValueError(
                f"{source}: SHA-256 {digest} differs from the {metadata['sha256']} recorded in its metadata; "
                "the weights and metadata files do not belong together"
            )
    return deserialize_params(data, source=source)


@jax.jit
def _forward(params: chex.ArrayTree, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return apply(MNISTClassifier(), params, MNISTClassifier.__call__, images)


def _check_images(images: Any, name: str = "images") -> np.ndarray:
    """Returns float32 ``[N, 28, 28, 1]`` images, raising ValueError on bad shape or range."""
    array = np.asarray(jax.device_get(images))
    if array.ndim == 3 and array.shape[1:] == IMAGE_SHAPE[:2]:
        array = array[..., None]
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{name}: expected shape [N, 28, 28, 1] or [N, 28, 28], got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"{name}: expected a real-valued array, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite pixel values, got NaN or Inf")
    low, high = float(array.min()), float(array.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(
            f"{name}: expected pixel values in [0, 1], got range [{low:.4g}, {high:.4g}]; "
            "map samples in [-1, 1] to [0, 1] with (x + 1) / 2 first (uint8 pixels: divide by 255)"
        )
    return array


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    return int(batch_size)


def _run(params: chex.ArrayTree, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of checked images, in batches of one fixed size."""
    num = images.shape[0]
    # One shape per call: every batch, the zero-padded last one included, has `size`
    # rows, so the jitted forward compiles once per (size) and is reused.
    size = min(batch_size, num)
    logits, features = [], []
    for start in range(0, num, size):
        block = images[start : start + size]
        rows = block.shape[0]
        if rows < size:
            block = np.concatenate([block, np.zeros((size - rows, *IMAGE_SHAPE), np.float32)])
        out_logits, out_features = jax.device_get(_forward(params, block))
        logits.append(out_logits[:rows])
        features.append(out_features[:rows])
    return np.concatenate(logits), np.concatenate(features)


def mnist_features(params: chex.ArrayTree, images: jax.Array | np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """Feature-layer activations of MNIST images, for a classifier Frechet distance.

    Images are fed ``min(batch_size, N)`` at a time to one jitted forward pass; the
    last batch is zero-padded to that size (and the padding dropped), so a call
    compiles at most once per batch size.

    Args:
      params: from :func:`load_mnist_classifier`.
      images: ``[N, 28, 28, 1]`` or ``[N, 28, 28]`` (a channel axis is added) pixel
        intensities in [0, 1], numpy or jax, N >= 1. Values are not clipped: anything
        outside [-0.01, 1.01] is rejected.
      batch_size: images per forward pass; does not change the result beyond float
        round-off.

    Returns:
      float32 ``[N, 128]``: the feature layer ``Dense(128)`` before its ReLU (see
      :class:`MNISTClassifier`).

    Raises:
      ValueError: on a wrong shape, non-finite values, values outside [0, 1] (e.g.
        samples still in [-1, 1]), a bad ``batch_size`` or parameters of another
        architecture.
    """
    batch_size = _check_batch_size(batch_size)
    _check_param_shapes(params, "params")
    array = _check_images(images)
    _, features = _run(params, array, batch_size)
    chex.assert_shape(features, (array.shape[0], FEATURE_DIM))
    return features


def mnist_accuracy(
    params: chex.ArrayTree,
    images: jax.Array | np.ndarray,
    labels: jax.Array | np.ndarray,
    *,
    batch_size: int = 1000,
) -> float:
    """Fraction of images whose arg-max logit is their label.

    Args:
      params: from :func:`load_mnist_classifier` (or a training state's params).
      images: ``[N, 28, 28, 1]`` or ``[N, 28, 28]`` intensities in [0, 1].
      labels: ``[N]`` integer labels in [0, 10).
      batch_size: images per forward pass.

    Returns:
      The accuracy in [0, 1].

    Raises:
      ValueError: on bad images (as :func:`mnist_features`) or labels of the wrong
        shape, dtype or range.
    """
    batch_size = _check_batch_size(batch_size)
    _check_param_shapes(params, "params")
    array = _check_images(images)
    label_array = np.asarray(jax.device_get(labels))
    if label_array.shape != (array.shape[0],):
        raise ValueError(f"labels: expected shape [{array.shape[0]}] (one per image), got {label_array.shape}")
    if not np.issubdtype(label_array.dtype, np.integer):
        raise ValueError(f"labels: expected an integer array, got dtype {label_array.dtype}")
    if label_array.min() < 0 or label_array.max() >= NUM_CLASSES:
        raise ValueError(f"labels: expected values in [0, {NUM_CLASSES}), got range [{label_array.min()}, {label_array.max()}]")
    logits, _ = _run(params, array, batch_size)
    chex.assert_shape(logits, (array.shape[0], NUM_CLASSES))
    return float(np.mean(np.argmax(logits, axis=-1) == label_array))


__all__ = [
    "FEATURE_DIM",
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "MNISTClassifier",
    "deserialize_params",
    "float16_bytes",
    "from_float16_bytes",
    "init_mnist_classifier",
    "load_mnist_classifier",
    "mnist_accuracy",
    "mnist_classifier_metadata",
    "mnist_features",
    "serialize_params",
    "weights_sha256",
]
