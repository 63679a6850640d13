"""Sample-quality metrics for GANs trained on toy 2D data (Gaussian mixtures on a ring/grid).

* :func:`mode_metrics` — "modes covered" and "high-quality samples", the metrics of the
  mixture-of-Gaussians experiments of Unrolled GANs (Metz et al. 2017,
  arXiv:1611.02163), VEEGAN (Srivastava et al. 2017, arXiv:1705.07761) and PacGAN
  (Lin et al. 2018, arXiv:1712.04086): a sample is high quality when it
  lies within ``num_std`` (3) standard deviations of the nearest mode, and a mode is
  covered when enough high-quality samples are assigned to it.
* :func:`sliced_wasserstein` — the sliced Wasserstein distance (Rabin et al. 2011,
  "Wasserstein barycenter and its application to texture mixing"; Bonneel et al. 2015,
  "Sliced and Radon Wasserstein barycenters of measures"), a sample-based distance
  between the generated and the true distribution that also penalises the shape within
  each mode.

The mode centres and their std come from :func:`genjax.data.toy2d.toy2d_modes` and
:func:`genjax.data.toy2d.toy2d_mode_std`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ModeMetrics:
    """Mode coverage and sample quality of a set of samples.

    Attributes:
      modes_covered: modes holding at least ``min_count`` high-quality samples.
      num_modes: K, the number of modes.
      high_quality_fraction: fraction of all samples within ``num_std * std`` (Euclidean
        distance) of their nearest mode.
      counts: [K] high-quality samples assigned to each mode, in the order of ``modes``.
    """

    modes_covered: int
    num_modes: int
    high_quality_fraction: float
    counts: tuple[int, ...]


def _check_positive(name: str, value: float) -> float:
    numeric = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not numeric or not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name}: expected a positive finite float, got {value!r}")
    return float(value)


def mode_metrics(
    samples: jax.Array | np.ndarray,
    modes: jax.Array | np.ndarray,
    std: float,
    *,
    num_std: float = 3.0,
    min_count: int | None = None,
) -> ModeMetrics:
    """Modes covered and the fraction of high-quality samples (Unrolled GAN, VEEGAN, PacGAN).

    Each sample is assigned to its nearest mode in Euclidean distance. It is high quality
    when that distance is at most ``num_std * std`` — the per-coordinate std of the mixture
    components, so the region is a disc (ball) of radius ``num_std * std`` around the mode;
    for an isotropic 2D Gaussian it holds ``1 - exp(-num_std**2 / 2)`` of the mass
    (about 0.989 for 3 std). A mode is covered when at least ``min_count`` high-quality
    samples are assigned to it.

    The papers fix the count for their sample size (PacGAN counts a mode of the 25-grid
    as lost with fewer than 20 high-quality samples out of 2,500); here the default
    scales with it: ``min_count = max(1, int(0.1 * N / K))``, i.e. a covered mode holds at
    least a tenth of its fair share ``N / K`` of the samples, which is invariant to the
    number of samples drawn and ignores stray samples of a collapsed generator.

    Args:
      samples: [N, 2] samples (any [N, D] with the D of ``modes`` is accepted).
      modes: [K, 2] mode centres, e.g. ``toy2d_modes("eight_gaussians")``.
      std: positive per-coordinate std of each mode, e.g. ``toy2d_mode_std(name)``.
      num_std: positive radius of the high-quality region, in units of ``std``.
      min_count: positive high-quality count for a mode to be covered; None uses
        ``max(1, int(0.1 * N / K))``.

    Returns:
      A :class:`ModeMetrics`.

    Raises:
      ValueError: on empty or mismatched shapes, non-finite modes, a non-positive
        ``std``/``num_std`` or a ``min_count`` that is not a positive int.
    """
    samples_np = np.asarray(samples, dtype=np.float64)
    modes_np = np.asarray(modes, dtype=np.float64)
    if modes_np.ndim != 2 or modes_np.shape[0] == 0 or modes_np.shape[1] == 0:
        raise ValueError(f"modes: expected a non-empty [K, 2] array, got shape {modes_np.shape}")
    if not np.all(np.isfinite(modes_np)):
        raise ValueError("modes: expected finite mode centres, got non-finite values")
    if samples_np.ndim != 2 or samples_np.shape[0] == 0 or samples_np.shape[1] != modes_np.shape[1]:
        raise ValueError(f"samples: expected a non-empty [N, {modes_np.shape[1]}] array (the dimension of modes), got shape {samples_np.shape}")
    std = _check_positive("std", std)
    num_std = _check_positive("num_std", num_std)
    n, k = samples_np.shape[0], modes_np.shape[0]
    if min_count is None:
        min_count = max(1, int(0.1 * n / k))
    elif isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count: expected a positive int or None, got {min_count!r}")

    d2 = np.sum(np.square(samples_np[:, None, :] - modes_np[None, :, :]), axis=2)  # [N, K]
    nearest = np.argmin(d2, axis=1)
    dist = np.sqrt(d2[np.arange(n), nearest])
    high_quality = dist <= num_std * std  # NaN samples compare False: never high quality
    counts = np.bincount(nearest[high_quality], minlength=k)
    chex.assert_shape(counts, (k,))
    return ModeMetrics(
        modes_covered=int(np.sum(counts >= min_count)),
        num_modes=int(k),
        high_quality_fraction=float(np.mean(high_quality)),
        counts=tuple(int(c) for c in counts),
    )


def _quantile_match(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order-statistic indices and weights of the exact 1D W_p between N and M atoms.

    The quantile function of an empirical measure with n equal atoms is the step
    function ``Q(u) = sorted[ceil(n u) - 1]``. Both steps are constant between the merged
    breakpoints ``{i / n} U {j / m}``, so ``W_p^p = sum_k w_k |Qx(u_k) - Qy(u_k)|^p``
    over those intervals exactly (width ``w_k``, ``u_k`` any point inside, here the
    midpoint). Computed in float64 numpy from the static sizes.
    """
    breaks = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    lower = np.concatenate([[0.0], breaks[:-1]])
    widths = breaks - lower
    keep = widths > 0.0
    mid, widths = 0.5 * (lower + breaks)[keep], widths[keep]
    ix = np.minimum(np.floor(mid * n).astype(np.int32), n - 1)
    iy = np.minimum(np.floor(mid * m).astype(np.int32), m - 1)
    return ix, iy, widths / widths.sum()


@functools.partial(jax.jit, static_argnames=("num_projections", "p"))
def _sliced_core(key: jax.Array, x: jax.Array, y: jax.Array, num_projections: int, p: int) -> jax.Array:
    dims = x.shape[1]
    dirs = jax.random.normal(key, (num_projections, dims), jnp.float32)
    dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)  # uniform on the sphere
    px = jnp.sort(jnp.matmul(x, dirs.T, precision=jax.lax.Precision.HIGHEST), axis=0)  # [N, P]
    py = jnp.sort(jnp.matmul(y, dirs.T, precision=jax.lax.Precision.HIGHEST), axis=0)  # [M, P]
    if x.shape[0] == y.shape[0]:
        cost = jnp.mean(jnp.abs(px - py) ** p, axis=0)  # [P]
    else:
        ix, iy, w = _quantile_match(x.shape[0], y.shape[0])
        diff = jnp.abs(px[ix] - py[iy]) ** p  # [L, P]
        cost = jnp.sum(diff * jnp.asarray(w, jnp.float32)[:, None], axis=0)
    chex.assert_shape(cost, (num_projections,))
    return jnp.mean(cost) ** (1.0 / p)


def sliced_wasserstein(
    key: jax.Array,
    x: jax.Array | np.ndarray,
    y: jax.Array | np.ndarray,
    *,
    num_projections: int = 256,
    p: int = 2,
) -> jax.Array:
    """Sliced p-Wasserstein distance between two sample sets (Rabin et al. 2011).

    ``SW_p(x, y) = (E_theta[W_p^p(theta.x, theta.y)])^(1/p)`` with ``theta`` uniform on
    the unit sphere, estimated with ``num_projections`` directions drawn from ``key``.
    Each 1D ``W_p^p`` is exact for the two empirical measures: for N == M it matches
    sorted projections, ``mean_i |x_(i) - y_(i)|^p``; for N != M it integrates the
    difference of the two step quantile functions over the merged grid of their N + M
    breakpoints ``{i / N} U {j / M}`` (no interpolation), so that repeating every point
    of a set the same number of times leaves the distance unchanged.

    Jittable with ``num_projections`` and ``p`` static; for a pure translation ``y = x + v``
    in 2D it tends to ``|v| / sqrt(2)`` (``E[cos^2] = 1/2``) as projections increase.

    Args:
      key: PRNG key for the directions.
      x: [N, D] samples.
      y: [M, D] samples, same D.
      num_projections: positive number of random directions.
      p: positive int order of the distance.

    Returns:
      A float32 scalar array.

    Raises:
      ValueError: on empty or mismatched shapes, or non-positive ``num_projections``/``p``.
    """
    x_shape, y_shape = np.shape(x), np.shape(y)
    if len(x_shape) != 2 or x_shape[0] == 0 or x_shape[1] == 0:
        raise ValueError(f"x: expected a non-empty [N, D] array, got shape {x_shape}")
    if len(y_shape) != 2 or y_shape[0] == 0 or y_shape[1] != x_shape[1]:
        raise ValueError(f"y: expected a non-empty [M, {x_shape[1]}] array (the D of x), got shape {y_shape}")
    for name, value in (("num_projections", num_projections), ("p", p)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return _sliced_core(key, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), int(num_projections), int(p))
