"""Image grids and PNG output for samples, reconstructions, manifolds and 2D plots.

Plots are drawn on ``matplotlib.figure.Figure`` objects, which render to a file without
pyplot, so the library never chooses or changes the user's matplotlib backend.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def figure(size: tuple[float, float]) -> Figure:
    """A matplotlib ``Figure`` of ``size`` inches that is not registered with pyplot."""
    return Figure(figsize=size)


def image_grid(images: np.ndarray, *, ncols: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tiles images [N, H, W, C] with values in [0, 1] into one uint8 image.

    Args:
      images: the images, NHWC, floats in [0, 1] (values outside are clipped).
      ncols: images per row (default: the ceiling of sqrt(N)).
      padding: pixels between tiles.
      pad_value: value of the padding, in [0, 1].

    Returns:
      A uint8 array [rows * (H + padding) + padding, cols * (W + padding) + padding, C].
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images: expected a non-empty array [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c), pad_value, np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, ncols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = img
    return (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | pathlib.Path, grid: np.ndarray) -> pathlib.Path:
    """Writes a uint8 image [H, W, 1 or 3] as PNG, creating the parent folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = grid[..., 0] if grid.shape[-1] == 1 else grid
    Image.fromarray(arr).save(path)
    return path


def save_image_grid(path: str | pathlib.Path, images: np.ndarray, *, ncols: int | None = None) -> pathlib.Path:
    """``image_grid`` then ``save_png``."""
    return save_png(path, image_grid(images, ncols=ncols))


def save_scatter(path: str | pathlib.Path, points: np.ndarray, *, reference: np.ndarray | None = None, title: str = "") -> pathlib.Path:
    """Scatter plot of 2D samples ``[N, 2]``, over optional reference points, as PNG."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[-1] != 2:
        raise ValueError(f"points: expected 2D samples [N, 2], got shape {points.shape}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure((4, 4))
    ax = fig.subplots()
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="tab:orange", alpha=0.5, label="data")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:blue", alpha=0.5, label="samples")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def save_samples(path: str | pathlib.Path, samples: np.ndarray) -> pathlib.Path:
    """Writes samples as a PNG: an image grid for ``[N, H, W, C]``, a scatter for ``[N, 2]``."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[-1] == 2:
        return save_scatter(path, samples)
    return save_image_grid(path, samples)


def save_critic_surface(
    path: str | pathlib.Path,
    surface: tuple[np.ndarray, np.ndarray, np.ndarray],
    real: np.ndarray,
    fake: np.ndarray,
    *,
    title: str = "",
) -> pathlib.Path:
    """Critic value contours with real (orange) and generated (green) points, in the
    style of Fig. 1 of Gulrajani et al. (arXiv 1704.00028).

    Args:
      path: the PNG to write.
      surface: ``(xx, yy, values)`` grids, as ``genjax.experiment.gan.critic_surface`` returns.
      real: ``[N, 2]`` data points.
      fake: ``[M, 2]`` generated points.
      title: the plot title.
    """
    xx, yy, values = surface
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure((4.2, 4))
    ax = fig.subplots()
    contour = ax.contourf(xx, yy, values, levels=30, cmap="viridis")
    fig.colorbar(contour, ax=ax, fraction=0.046, pad=0.04)
    ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:orange", alpha=0.6)
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c="lime", alpha=0.6)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
