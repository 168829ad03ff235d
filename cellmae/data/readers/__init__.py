"""Readers: map on-disk screen layouts onto (metadata, channel-named uint8 image stacks).

``open_screen(path, layout="auto")`` reads local paths and fsspec URLs (``s3://``, ``gs://``,
``https://``; :mod:`cellmae.data.readers.storage`) and picks the layout from what is on disk:

* a folder with ``metadata.csv`` (or ``metadata/metadata.csv``), or such a CSV -> ``rxrx``
* a folder of Parquet shards with ``__key__`` + ``jp2`` columns (RxRx3-core) -> ``rxrx3-core``
* a CSV with ``FileName_Orig*`` columns, or a folder holding ``load_data.csv`` -> ``cellpainting``
* a folder of TIFF / OME-TIFF / OME-Zarr fields or ``<field>_<channel>`` files -> ``generic``
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from cellmae.data.readers.base import ReadError, Screen
from cellmae.data.readers.cellpainting import LOAD_DATA_FILE, CellPaintingScreen, is_load_data
from cellmae.data.readers.generic import GenericScreen
from cellmae.data.readers.rxrx import RxRxScreen, find_metadata_csv
from cellmae.data.readers.rxrx3core import RxRx3CoreScreen, is_rxrx3_core
from cellmae.data.readers.storage import denied, locate, unreachable
from cellmae.data.spec import ScreenSpec

LAYOUTS = ("auto", "rxrx", "rxrx3-core", "cellpainting", "generic")

__all__ = [
    "LAYOUTS",
    "CellPaintingScreen",
    "GenericScreen",
    "ReadError",
    "RxRx3CoreScreen",
    "RxRxScreen",
    "Screen",
    "ScreenSpec",
    "detect_layout",
    "open_screen",
]


def detect_layout(path, storage_options: dict | None = None) -> str:
    """The layout of ``path`` (a local path or URL); ReadError naming it when none fits."""
    path = locate(path, storage_options)
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(4)
        if head == b"PAR1":  # Parquet, told by its magic bytes
            if is_rxrx3_core(path):
                return "rxrx3-core"
            raise ReadError(f"{path}: unknown layout: a Parquet file without RxRx3-core's __key__ and jp2 columns")
        if is_load_data(path):
            return "cellpainting"
        if not str(path).lower().endswith((".csv", ".csv.gz")):
            raise ReadError(f"{path}: unknown layout: expected a folder, a metadata/load_data CSV or an RxRx3-core shard")
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
    if is_rxrx3_core(path):
        return "rxrx3-core"
    return "generic"


_SPEC_FIELDS = frozenset(f.name for f in fields(ScreenSpec)) - {"layout"}


def open_screen(path, layout: str = "auto", *, spec: ScreenSpec | None = None, cache_dir=None, **options) -> Screen:
    """Open a screen in any supported layout; ``options`` go to the layout's reader.

    Options shared by all readers: ``low_pct``, ``high_pct`` (per-channel percentile stretch of
    non-uint8 images), ``rescale_uint8``, ``channels``, ``storage_options`` (fsspec options for URLs;
    ``s3://`` is anonymous unless credentials are given) and ``cache_dir`` (a local copy of remote
    files). ``spec`` (a :class:`ScreenSpec`, e.g. recorded by a shard build) gives them all at once;
    ``options`` override it. The screen's ``spec`` records what it was opened with.
    """
    named = {k: options.pop(k) for k in list(options) if k in _SPEC_FIELDS}
    spec = (spec or ScreenSpec()).updated(layout=None if layout == "auto" else layout, **named)
    if spec.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {spec.layout!r}")
    where = locate(path, spec.storage_options)
    try:
        screen = _open(where, spec, options, cache_dir)
    except PermissionError as e:  # a bucket refusing anonymous (or these) credentials: say how to give them
        raise ReadError(denied(getattr(e, "filename", None) or where)) from e
    except TypeError as e:  # fsspec passes storage options on as keyword arguments: a wrong one lands here
        if spec.storage_options and "unexpected keyword argument" in str(e):
            raise ReadError(f"--storage-option: {where} does not take it ({e}); see the options of its fsspec "
                            "file system (s3fs.S3FileSystem, gcsfs.GCSFileSystem, ...)") from e
        raise
    except Exception as e:
        message = unreachable(where, e)
        if message is None:
            raise
        raise ReadError(message) from e
    return screen


def _open(where, spec: ScreenSpec, options: dict, cache_dir) -> Screen:
    layout = detect_layout(where, spec.storage_options) if spec.layout == "auto" else spec.layout
    opts = {**spec.reader_options(layout), **options}
    if cache_dir is not None:
        opts["cache_dir"] = cache_dir
    if layout == "rxrx":
        if where.is_file():
            opts.setdefault("metadata_csv", where)
            where = where.parent
        screen = RxRxScreen(where, **opts)
    elif layout == "rxrx3-core":
        screen = RxRx3CoreScreen(where, **opts)
    elif layout == "cellpainting":
        screen = CellPaintingScreen(where / LOAD_DATA_FILE if where.is_dir() else where, **opts)
    else:
        if isinstance(where, Path) and not where.is_dir():
            raise ReadError(f"{where}: not a folder of images")
        screen = GenericScreen(where, **opts)
    # Record what was decided on opening (the layout; for load_data, whether illumination was corrected).
    screen.spec = replace(spec, layout=layout, illum=getattr(screen, "illum", spec.illum))
    return screen
