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


def save_trajectories(path: str | pathlib.Path, forward: dict[int, np.ndarray], reverse: np.ndarray, *, title: str = "") -> pathlib.Path:
    """Fig. 1 of Sohl-Dickstein et al. (arXiv 1503.03585): 2D points of the forward
    diffusion at t = 0, T/2, T (top row) and of the reverse at t = T, T/2, 0 (bottom row).

    Args:
      path: the PNG to write.
      forward: ``{t: [N, 2]}`` for t in 0, T // 2 and T.
      reverse: the reverse path ``[T + 1, M, 2]``, index t holding x_t.
      title: the figure title.
    """
    reverse = np.asarray(reverse)
    if reverse.ndim != 3 or reverse.shape[-1] != 2:
        raise ValueError(f"reverse: expected a path [T + 1, M, 2], got shape {reverse.shape}")
    T = reverse.shape[0] - 1
    if set(forward) != {0, T // 2, T}:
        raise ValueError(f"forward: expected the times {{0, {T // 2}, {T}}}, got {sorted(forward)}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure((10, 6.8))
    axes = fig.subplots(2, 3)
    for col, t in enumerate((0, T // 2, T)):
        axes[0, col].scatter(forward[t][:, 0], forward[t][:, 1], s=1.5, alpha=0.5, color="C0")
        axes[0, col].set_title(f"forward q, t = {t}")
    for col, t in enumerate((T, T // 2, 0)):
        axes[1, col].scatter(reverse[t, :, 0], reverse[t, :, 1], s=1.5, alpha=0.5, color="C3")
        axes[1, col].set_title(f"reverse p, t = {t}")
    for ax in axes.ravel():
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def save_binary_sequences(path: str | pathlib.Path, data: np.ndarray, samples: np.ndarray, *, title: str = "") -> pathlib.Path:
    """Binary sequences as images: the data set (left) beside model samples (right).

    Args:
      path: the PNG to write.
      data: ``[N, L]`` sequences of 0 and 1.
      samples: ``[M, L]`` sampled sequences.
      title: the title of the samples panel.
    """
    data, samples = np.asarray(data), np.asarray(samples)
    if data.ndim != 2 or samples.ndim != 2 or data.shape[1] != samples.shape[1]:
        raise ValueError(f"data, samples: expected [N, L] and [M, L] sequences, got shapes {data.shape} and {samples.shape}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure((9, 4.2))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3]})
    axes[0].imshow(data, cmap="gray_r", aspect="auto", interpolation="nearest")
    axes[0].set_title(f"data (all {data.shape[0]} sequences)")
    axes[1].imshow(samples, cmap="gray_r", aspect="auto", interpolation="nearest")
    axes[1].set_title(title)
    for ax in axes:
        ax.set_xlabel("bin")
        ax.set_xticks(range(0, data.shape[1], 5))
    axes[0].set_ylabel("sequence")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def save_count_matrix(path: str | pathlib.Path, counts: np.ndarray, *, row_labels: list[str], xlabel: str, ylabel: str, title: str = "") -> pathlib.Path:
    """A matrix of counts ``[R, C]`` as a heat map with each count written in its cell, as PNG."""
    counts = np.asarray(counts)
    if counts.ndim != 2 or len(row_labels) != counts.shape[0]:
        raise ValueError(f"counts: expected [rows, columns] with {len(row_labels)} rows (one per row label), got shape {counts.shape}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure((0.5 * counts.shape[1] + 2, 0.45 * counts.shape[0] + 1.5))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="black" if v < counts.max() / 2 else "white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]), row_labels)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def save_labelled_scatter(path: str | pathlib.Path, points: np.ndarray, colourings: dict[str, np.ndarray], *, title: str = "") -> pathlib.Path:
    """One scatter panel of 2D points ``[N, 2]`` per named integer colouring (e.g. cluster
    and true label), side by side, as PNG."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[-1] != 2:
        raise ValueError(f"points: expected 2D points [N, 2], got shape {points.shape}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = figure((5 * len(colourings), 4.8))
    axes = fig.subplots(1, len(colourings), squeeze=False)[0]
    for ax, (name, colour) in zip(axes, colourings.items(), strict=True):
        shown = ax.scatter(points[:, 0], points[:, 1], c=colour, cmap="tab10", s=2, alpha=0.6, rasterized=True)
        ax.set_title(f"{title}: coloured by {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, ticks=range(int(np.max(colour)) + 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
