"""Image grids and PNG output for samples, reconstructions and manifolds."""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image


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
