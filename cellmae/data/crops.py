"""Crops of one field (tiling + optional QC), and an in-memory crop dataset that needs no shards.

Both :func:`cellmae.data.shards.build_shards` and :class:`CropDataset` go through
:func:`field_crops`, so a crop is the same whether it was streamed from shards or cut on the fly.
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


class CropDataset:
    """A map-style torch dataset of crops cut from a screen in memory (no shards needed).

    Item k is crop k % n of field k // n; items are dicts like shard samples
    (``image`` uint8 (C, size, size) numpy array + metadata), so ``torch.utils.data.DataLoader``
    batches them like :func:`cellmae.data.shards.shard_dataloader` does. The last field read is
    cached (sequential access reads each field once); QC is not applied here (use shards for QC-filtered training).
    """

    def __init__(
        self, screen: Screen, *, crop_size: int, crops_per_field: int = 1, mode: str = "random", seed: int = 0
    ):
        if mode not in CROP_MODES:
            raise ValueError(f"mode must be one of {CROP_MODES}, got {mode!r}")
        self.screen, self.crop_size, self.mode, self.seed = screen, crop_size, mode, seed
        self.crops_per_field = crops_per_field
        self.channels = screen.channels
        self._last: FieldCrops | None = None

    def __len__(self) -> int:
        return len(self.screen) * self.crops_per_field

    def __getitem__(self, k: int) -> dict:
        i, j = divmod(k, self.crops_per_field)
        # Sequential access reads each field once: keep the last field's crops (one cache per worker).
        if self._last is None or self._last.field_index != i:
            self._last = field_crops(
                self.screen,
                i,
                crop_size=self.crop_size,
                crops_per_field=self.crops_per_field,
                mode=self.mode,
                seed=self.seed,
            )
        fc = self._last
        if j >= len(fc.positions):
            raise IndexError(f"field {i} has only {len(fc.positions)} grid tiles of {self.crop_size}")
        return crop_record(self.screen, fc, j)
