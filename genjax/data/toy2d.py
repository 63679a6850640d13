"""Toy 2D distributions for GAN, flow and diffusion experiments.

The two Gaussian mixtures and the swiss roll follow the toy data of WGAN-GP
(Gulrajani et al. 2017, arXiv:1704.00028, ``gan_toy.py``), including its rescaling:

* ``eight_gaussians``: centres ``2 * (±1, 0), 2 * (0, ±1), 2 * (±1/√2, ±1/√2)``,
  std 0.02, all divided by 1.414. Modes lie on a circle of radius ``2 / 1.414``
  (about 1.414) with std ``0.02 / 1.414``.
* ``twentyfive_gaussians``: centres on the grid ``{-4, -2, 0, 2, 4}^2``, std 0.05, all
  divided by 2.828 (modes within about ±1.414, std ``0.05 / 2.828``).
* ``swiss_roll``: the ``(x, z)`` coordinates of scikit-learn's ``make_swiss_roll``
  with noise 0.25, i.e. ``t = 1.5π (1 + 2u)``, ``(t cos t, t sin t) + 0.25 ε``, divided
  by 7.5.
* ``checkerboard``: the 4x4 checkerboard on ``[-4, 4]^2`` of FFJORD
  (Grathwohl et al. 2019, arXiv:1810.01367): uniform on the 8 squares of side 2 whose
  integer coordinates ``floor(x / 2) + floor(y / 2)`` are even.

All samplers are pure functions of the key and are jittable with ``name`` and ``num``
static, e.g. ``jax.jit(sample_toy2d, static_argnames=("name", "num"))``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

TOY_2D = ("eight_gaussians", "twentyfive_gaussians", "swiss_roll", "checkerboard")

_EIGHT_SCALE = 2.0
_EIGHT_STD = 0.02
_EIGHT_DIVISOR = 1.414
_TWENTYFIVE_STD = 0.05
_TWENTYFIVE_DIVISOR = 2.828
_SWISS_NOISE = 0.25
_SWISS_DIVISOR = 7.5


def _check_name(name: str) -> None:
    if name not in TOY_2D:
        raise ValueError(
            f"name: unknown toy 2D distribution {name!r}; expected one of {list(TOY_2D)}"
        )


def _eight_centres() -> np.ndarray:
    s = 1.0 / math.sqrt(2.0)
    unit = np.array(
        [(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)],
        dtype=np.float64,
    )
    return (_EIGHT_SCALE * unit / _EIGHT_DIVISOR).astype(np.float32)


def _twentyfive_centres() -> np.ndarray:
    grid = np.arange(-4.0, 5.0, 2.0)
    xs, ys = np.meshgrid(grid, grid, indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    return (centres / _TWENTYFIVE_DIVISOR).astype(np.float32)


_MIXTURES: dict[str, tuple[Callable[[], np.ndarray], float]] = {
    "eight_gaussians": (_eight_centres, _EIGHT_STD / _EIGHT_DIVISOR),
    "twentyfive_gaussians": (_twentyfive_centres, _TWENTYFIVE_STD / _TWENTYFIVE_DIVISOR),
}


def _check_mixture(name: str) -> None:
    _check_name(name)
    if name not in _MIXTURES:
        raise ValueError(
            f"name: modes are defined only for the mixtures {list(_MIXTURES)}, got {name!r}"
        )


def toy2d_modes(name: str) -> np.ndarray:
    """Returns the mode centres of a toy Gaussian mixture, after its rescaling.

    Args:
        name: ``"eight_gaussians"`` or ``"twentyfive_gaussians"``.

    Returns:
        float32 ``[K, 2]`` centres (K = 8 or 25), in the coordinates
        :func:`sample_toy2d` returns.

    Raises:
        ValueError: If ``name`` is not one of the two mixtures.
    """
    _check_mixture(name)
    return _MIXTURES[name][0]()


def toy2d_mode_std(name: str) -> float:
    """Returns the per-coordinate std of every component of a toy Gaussian mixture.

    Args:
        name: ``"eight_gaussians"`` or ``"twentyfive_gaussians"``.

    Returns:
        ``0.02 / 1.414`` or ``0.05 / 2.828``, in the coordinates :func:`sample_toy2d`
        returns (useful for "within 3 std of a mode" sample-quality metrics).

    Raises:
        ValueError: If ``name`` is not one of the two mixtures.
    """
    _check_mixture(name)
    return _MIXTURES[name][1]


def _sample_mixture(key: jax.Array, centres: np.ndarray, std: float, num: int) -> jax.Array:
    """Equal-weight isotropic Gaussian mixture."""
    k_mode, k_noise = jax.random.split(key)
    modes = jax.random.randint(k_mode, (num,), 0, centres.shape[0])
    noise = jax.random.normal(k_noise, (num, 2), dtype=jnp.float32)
    return jnp.asarray(centres)[modes] + std * noise


def _sample_swiss_roll(key: jax.Array, num: int) -> jax.Array:
    """scikit-learn ``make_swiss_roll`` restricted to its (x, z) plane."""
    k_t, k_noise = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_t, (num,), dtype=jnp.float32))
    roll = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
    noise = jax.random.normal(k_noise, (num, 2), dtype=jnp.float32)
    return (roll + _SWISS_NOISE * noise) / _SWISS_DIVISOR


def _sample_checkerboard(key: jax.Array, num: int) -> jax.Array:
    """FFJORD's checkerboard: x uniform, y uniform on the squares of matching parity."""
    k_x, k_y, k_row = jax.random.split(key, 3)
    x = jax.random.uniform(k_x, (num,), dtype=jnp.float32, minval=-2.0, maxval=2.0)
    row = 2.0 * jax.random.bernoulli(k_row, 0.5, (num,)).astype(jnp.float32)
    y = jax.random.uniform(k_y, (num,), dtype=jnp.float32) - row + jnp.mod(jnp.floor(x), 2.0)
    return 2.0 * jnp.stack([x, y], axis=-1)


def sample_toy2d(key: jax.Array, name: str, num: int) -> jax.Array:
    """Draws ``num`` points from a toy 2D distribution.

    Args:
        key: A JAX PRNG key.
        name: One of :data:`TOY_2D` (see the module docstring for each definition).
        num: Number of points, a positive int (static under ``jit``).

    Returns:
        float32 ``[num, 2]`` samples.

    Raises:
        ValueError: If ``name`` is unknown or ``num`` is not a positive int.
    """
    _check_name(name)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num <= 0:
        raise ValueError(f"num: expected a positive int, got {num!r}")
    return _sample_jit(key, name, int(num))


@functools.partial(jax.jit, static_argnames=("name", "num"))
def _sample_jit(key: jax.Array, name: str, num: int) -> jax.Array:
    """Compiled once per (name, num); inlined when called under an outer ``jit``."""
    if name in _MIXTURES:
        centres, std = _MIXTURES[name][0](), _MIXTURES[name][1]
        return _sample_mixture(key, centres, std, num)
    if name == "swiss_roll":
        return _sample_swiss_roll(key, num)
    return _sample_checkerboard(key, num)
