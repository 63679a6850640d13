"""Test configuration: 8 simulated CPU devices, strict numpy rank promotion, fast compiles.

The device count must be set before JAX initialises its backends, which is why this
happens at import time of the conftest rather than in a fixture.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests run tiny models, so their cost is almost all XLA compilation; without the
# backend's optimisation passes the UNet compiles 4-10x faster on CPU (measured: the
# tiny UNet's gradient 31 s -> 7 s) and runs slower, which tiny models do not notice.
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]).strip()

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
    """A fresh typed PRNG key for each test."""
    return jax.random.key(0)


@pytest.fixture
def mock_cifar10(tmp_path):
    """``mock_cifar10(num)``: a context in which tfds serves ``num`` random CIFAR-10 records.

    It goes through tfds's own mock (``tfds.testing.mock_data``) so the real loader code
    runs; the records come from a plain list because tfds 4.9's mock data source lacks
    ``__getitems__``.
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    import numpy as np

    def make(num: int):
        rng = np.random.default_rng(0)
        records = [{"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "label": i % 10} for i in range(num)]

        def fake_source(builder, split=None, **kwargs):
            del builder, split, kwargs
            return list(records)

        return tfds.testing.mock_data(num_examples=num, as_data_source_fn=fake_source, data_dir=str(tmp_path / "tfds"))

    return make
