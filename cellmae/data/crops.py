"""Crops of one field (tiling + optional QC), as :func:`cellmae.data.shards.build_shards` cuts them.

The random generator of field i is seeded by (seed, i): crops do not depend on worker count or order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellmae.data.qc import QCConfig, qc_crops
from cellmae.data.readers.base import ReadError, Screen
from cellmae.data.tiling import crops_at, grid_positions, random_crop_positions

CROP_MODES = ("random", "grid")


@dataclass
class FieldCrops:
    """Crops kept from one field, their top-left corners, and what QC dropped."""

    field_index: int
    crops: np.ndarray  # (n, C, size, size) uint8
    positions: list[tuple[int, int]]
    n_candidates: int
    n_empty: int = 0
    n_out_of_focus: int = 0


def field_crops(
    screen: Screen,
    i: int,
    *,
    crop_size: int,
    crops_per_field: int | None,
    mode: str = "random",
    seed: int = 0,
    qc: QCConfig | None = None,
) -> FieldCrops:
    """Crops of field ``i``: ``crops_per_field`` random ones (mode ``random``) or the grid (``grid``;
    ``crops_per_field`` then caps the count, None = all tiles). QC-rejected crops are dropped and counted."""
    if mode not in CROP_MODES:
        raise ValueError(f"mode must be one of {CROP_MODES}, got {mode!r}")
    image = screen.read_field(i)
    h, w = image.shape[1:]
    if h < crop_size or w < crop_size:
        where = ", ".join(map(str, screen.path(i)))
        raise ReadError(f"{where}: field of size {h}x{w} is smaller than the crop size {crop_size}")
    if mode == "random":
        rng = np.random.default_rng([seed, i])
        positions = random_crop_positions(h, w, crop_size, crops_per_field or 1, rng)
    else:
        positions = grid_positions(h, w, crop_size)[: crops_per_field or None]
    crops = crops_at(image, positions, crop_size)
    out = FieldCrops(i, crops, positions, len(positions))
    if qc is not None:
        keep, empty = qc_crops(image, crops, screen.channels, qc)
        out.n_empty = int(empty.sum())
        out.n_out_of_focus = int((~keep & ~empty).sum())
        out.crops = crops[keep]
        out.positions = [p for p, k in zip(positions, keep, strict=True) if k]
    return out


def crop_record(screen: Screen, fc: FieldCrops, k: int) -> dict:
    """One sample as stored in shards: image + the field's metadata + where the crop came from."""
    row = screen.metadata.iloc[fc.field_index]
    rec = {"image": fc.crops[k]}
    for col, val in row.items():
        rec[col] = _plain(val)
    rec["field_index"] = int(fc.field_index)
    rec["crop_y"], rec["crop_x"] = (int(v) for v in fc.positions[k])
    return rec


def _plain(v):
    """Python scalars for the shard writer (numpy scalars and missing strings are normalised)."""
    if isinstance(v, np.generic):
        v = v.item()
    return "" if v is None else v
