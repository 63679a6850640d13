"""Test configuration: 8 simulated CPU devices and strict numpy rank promotion.

The device count must be set before JAX initialises its backends, which is why this
happens at import time of the conftest rather than in a fixture.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key() -> jax.Array:
    """A fresh typed PRNG key for each test."""
    return jax.random.key(0)
