"""The binary "heartbeat" sequences of Sohl-Dickstein et al., arXiv:1503.03585, section 3.1.

Sequences of ``length`` bins with a 1 every ``period``-th bin and a uniformly random offset:
``period`` equally likely sequences (20 bins and period 5 in the paper's Table 1), so the
data's log-likelihood is ``-log(period)``.
"""

from __future__ import annotations

import numpy as np


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def heartbeat_sequences(length: int = 20, period: int = 5) -> np.ndarray:
    """The ``period`` binary "heartbeat" sequences: a 1 every ``period``-th bin (section 3.1).

    Row ``o`` has ones at bins ``o, o + period, ...``; the data distribution is uniform
    over the rows, so its log-likelihood is ``-log(period)`` (``-log2 5 = -2.32`` bits).

    Args:
      length: bins per sequence.
      period: bins between two ones.

    Returns:
      float32 ``[period, length]`` 0/1 rows.
    """
    _check_positive_int("length", length)
    _check_positive_int("period", period)
    bins = np.arange(length)
    return (bins[None, :] % period == np.arange(period)[:, None]).astype(np.float32)


def sample_heartbeat(rng: np.random.Generator, num: int, length: int = 20, period: int = 5) -> np.ndarray:
    """``num`` heartbeat sequences with uniformly random offsets, float32 ``[num, length]``."""
    return heartbeat_sequences(length, period)[rng.integers(0, period, size=num)]
