"""Readers: map on-disk screen layouts onto (metadata, channel-named uint8 image stacks).

``open_screen(path, layout="auto")`` picks the layout from what is on disk:

* a folder with ``metadata.csv`` (or ``metadata/metadata.csv``), or such a CSV -> ``rxrx``
* a CSV with ``FileName_Orig*`` columns, or a folder holding ``load_data.csv`` -> ``cellpainting``
* a folder of TIFF / OME-TIFF / OME-Zarr fields or ``<field>_<channel>`` files -> ``generic``
"""

from __future__ import annotations

from pathlib import Path

from cellmae.data.readers.base import ReadError, Screen
from cellmae.data.readers.cellpainting import LOAD_DATA_FILE, CellPaintingScreen, is_load_data
from cellmae.data.readers.generic import GenericScreen
from cellmae.data.readers.rxrx import RxRxScreen, find_metadata_csv

LAYOUTS = ("auto", "rxrx", "cellpainting", "generic")

__all__ = [
    "LAYOUTS",
    "CellPaintingScreen",
    "GenericScreen",
    "ReadError",
    "RxRxScreen",
    "Screen",
    "detect_layout",
    "open_screen",
]


def detect_layout(path: str | Path) -> str:
    """The layout of ``path`` (rxrx, cellpainting or generic); ReadError naming it when none fits."""
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ReadError(f"{path}: unknown layout: expected a folder or a metadata/load_data CSV")
        if is_load_data(path):
            return "cellpainting"
        from cellmae.data.readers.base import read_metadata_csv

        cols = set(read_metadata_csv(path, "CSV", nrows=0).columns)
        if {"plate", "site"} <= cols or "well_id" in cols:
            return "rxrx"
        raise ReadError(
            f"{path}: unknown layout: CSV has neither FileName_Orig* (load_data) nor RxRx columns (well_id, plate, ...)"
        )
    if find_metadata_csv(path) is not None:
        return "rxrx"
    if (path / LOAD_DATA_FILE).is_file():
        return "cellpainting"
    return "generic"


def open_screen(path: str | Path, layout: str = "auto", **options) -> Screen:
    """Open a screen in any supported layout; ``options`` go to the layout's reader.

    Scaling options shared by all readers: ``low_pct``, ``high_pct`` (per-channel percentile
    stretch of non-uint8 images) and ``rescale_uint8``.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "auto":
        layout = detect_layout(path)
    if layout == "rxrx":
        if path.is_file():
            options.setdefault("metadata_csv", path)
            path = path.parent
        return RxRxScreen(path, **options)
    if layout == "cellpainting":
        return CellPaintingScreen(path / LOAD_DATA_FILE if path.is_dir() else path, **options)
    return GenericScreen(path, **options)
