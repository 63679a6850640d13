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

``SwissRoll`` is the swiss roll standardised to zero mean and unit per-coordinate variance,
the convention of the toy experiments of Sohl-Dickstein et al. (arXiv:1503.03585, section
3.1), with its moments and its exact density by quadrature along the roll.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax.distributions import normal_log_prob

TOY_2D = ("eight_gaussians", "twentyfive_gaussians", "swiss_roll", "checkerboard")

_EIGHT_SCALE = 2.0
_EIGHT_STD = 0.02
_EIGHT_DIVISOR = 1.414
_TWENTYFIVE_STD = 0.05
_TWENTYFIVE_DIVISOR = 2.828
SWISS_NOISE = 0.25
SWISS_DIVISOR = 7.5


def _check_name(name: str) -> None:
    if name not in TOY_2D:
        raise ValueError(f"name: unknown toy 2D distribution {name!r}; expected one of {list(TOY_2D)}")


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
        raise ValueError(f"name: modes are defined only for the mixtures {list(_MIXTURES)}, got {name!r}")


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


def _roll(u: Any, xp: Any) -> Any:
    """scikit-learn's roll ``(t cos t, t sin t)``, ``t = 1.5 pi (1 + 2u)``, with ``xp`` numpy or jax.numpy."""
    t = 1.5 * xp.pi * (1.0 + 2.0 * u)
    return xp.stack([t * xp.cos(t), t * xp.sin(t)], axis=-1)


def _sample_swiss_roll(key: jax.Array, num: int) -> jax.Array:
    """scikit-learn ``make_swiss_roll`` restricted to its (x, z) plane."""
    k_t, k_noise = jax.random.split(key)
    roll = _roll(jax.random.uniform(k_t, (num,), dtype=jnp.float32), jnp)
    noise = jax.random.normal(k_noise, (num, 2), dtype=jnp.float32)
    return (roll + SWISS_NOISE * noise) / SWISS_DIVISOR


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


def swiss_roll_curve(u: np.ndarray) -> np.ndarray:
    """The noise-free roll of ``sample_toy2d(.., "swiss_roll", ..)`` at parameter ``u`` in [0, 1] (float64)."""
    return _roll(np.asarray(u, np.float64), np) / SWISS_DIVISOR


@dataclasses.dataclass(frozen=True)
class SwissRoll:
    """The standardised swiss roll: ``y = (x - mean) / scale``, x on the roll of ``sample_toy2d``.

    ``x = curve(u) + noise * eps`` with ``u ~ U(0, 1)``, ``eps ~ N(0, I)``; with the default
    ``noise = 0.25 / 7.5`` this is exactly the distribution of ``sample_toy2d(key,
    "swiss_roll", n)``. ``mean`` and ``scale`` (the root mean per-coordinate variance) are
    exact, by midpoint quadrature over u with ``grid`` points; so is the density.

    Attributes:
      noise: standard deviation of the noise in the coordinates of ``sample_toy2d``.
      grid: quadrature points along the roll.
    """

    noise: float = SWISS_NOISE / SWISS_DIVISOR
    grid: int = 20000

    @functools.cached_property
    def nodes(self) -> np.ndarray:
        """The quadrature nodes on the noise-free roll, float64 ``[grid, 2]``."""
        return swiss_roll_curve((np.arange(self.grid) + 0.5) / self.grid)

    @functools.cached_property
    def mean(self) -> np.ndarray:
        """The mean of x, float64 ``[2]``."""
        return self.nodes.mean(0)

    @functools.cached_property
    def scale(self) -> float:
        """The root mean per-coordinate variance of x."""
        centred = self.nodes - self.mean
        return float(math.sqrt(np.mean(np.sum(centred**2, axis=1)) / 2.0 + self.noise**2))

    def sample(self, key: jax.Array, num: int) -> np.ndarray:
        """``num`` standardised samples, float32 [num, 2]."""
        k_u, k_eps = jax.random.split(key)
        u = np.asarray(jax.random.uniform(k_u, (num,)), np.float64)
        x = swiss_roll_curve(u) + self.noise * np.asarray(jax.random.normal(k_eps, (num, 2)), np.float64)
        return ((x - self.mean) / self.scale).astype(np.float32)

    def _map_chunks(self, fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array], y: np.ndarray, chunk: int) -> np.ndarray:
        centres = jnp.asarray((self.nodes - self.mean) / self.scale, jnp.float32)
        sigma = jnp.float32(self.noise / self.scale)
        y = np.asarray(y, np.float32)
        return np.concatenate([np.asarray(fn(jnp.asarray(y[i : i + chunk]), centres, sigma)) for i in range(0, y.shape[0], chunk)]).astype(np.float64)

    def distance_to_roll(self, y: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Distance of standardised points ``y`` [n, 2] to the noise-free roll, in units of the noise std."""
        return self._map_chunks(_distance_to_nodes, y, chunk)

    def log_density(self, y: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Exact log-density (nats) of the standardised data at ``y`` [n, 2] (quadrature over u)."""
        return self._map_chunks(_tube_log_density, y, chunk)


@jax.jit
def _distance_to_nodes(points: jax.Array, centres: jax.Array, sigma: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.min(jnp.sum((points[:, None, :] - centres[None, :, :]) ** 2, axis=-1), axis=1)) / sigma


@jax.jit
def _tube_log_density(points: jax.Array, centres: jax.Array, sigma: jax.Array) -> jax.Array:
    """``log mean_j N(points; centres_j, sigma^2 I)``."""
    log_probs = jnp.sum(normal_log_prob(points[:, None, :], centres[None, :, :], 2.0 * jnp.log(sigma)), axis=-1)
    return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(jnp.float32(centres.shape[0]))
