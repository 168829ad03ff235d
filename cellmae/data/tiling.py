"""Crops from fields: random crops for training, a regular grid of tiles for inference."""

from __future__ import annotations

import numpy as np


def _check(image: np.ndarray, size: int) -> tuple[int, int]:
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {image.shape}")
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    h, w = image.shape[1:]
    if h < size or w < size:
        raise ValueError(f"image of size {h}x{w} is smaller than the crop size {size}")
    return h, w


def grid_positions(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the non-overlapping tiles that fit, row-major.

    The grid is centred: the few pixels that do not fill a whole tile are split between the two
    borders, where illumination falls off and cells are cut.
    """
    ny, nx = height // tile, width // tile
    oy, ox = (height - ny * tile) // 2, (width - nx * tile) // 2
    return [(oy + i * tile, ox + j * tile) for i in range(ny) for j in range(nx)]


def grid_tiles(image: np.ndarray, tile: int) -> np.ndarray:
    """All non-overlapping ``tile`` x ``tile`` tiles of a (C, H, W) image: (N, C, tile, tile).

    A 512 x 512 field gives 4 tiles of 256; a 1006 x 1000 field gives 9 (3 x 3, centred).
    """
    h, w = _check(image, tile)
    return crops_at(image, grid_positions(h, w, tile), tile)


def random_crop_positions(
    height: int, width: int, size: int, n: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """``n`` uniformly random top-left corners (y, x) of ``size`` crops inside a field.

    Corners are distinct while the field has enough of them (no duplicate training crops);
    beyond that they are drawn with replacement.
    """
    ny, nx = height - size + 1, width - size + 1
    flat = rng.choice(ny * nx, size=n, replace=n > ny * nx)
    return [(int(k // nx), int(k % nx)) for k in flat]


def crops_at(image: np.ndarray, positions: list[tuple[int, int]], size: int) -> np.ndarray:
    """Crops of ``size`` at the given top-left corners, stacked: (len(positions), C, size, size)."""
    out = np.empty((len(positions), image.shape[0], size, size), dtype=image.dtype)
    for k, (y, x) in enumerate(positions):
        out[k] = image[:, y : y + size, x : x + size]
    return out
