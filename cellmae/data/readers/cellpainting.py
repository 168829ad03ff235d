"""Cell Painting / JUMP layout: a CellProfiler ``load_data`` CSV pointing at one TIFF per channel.

Each row is one site: ``Metadata_Source``, ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``
(``Metadata_Batch`` when present) and, per channel X, ``FileName_OrigX`` + ``PathName_OrigX``.
Images are usually 16-bit and are percentile-scaled to uint8 per channel. ``PathName`` columns and
the CSV itself may be URLs (``s3://cellpainting-gallery/...``), read through fsspec.

Illumination correction (``load_data_with_illum``): with ``FileName_IllumX`` + ``PathName_IllumX``
columns, each plane of channel X is divided by its illumination function, as CellProfiler's
CorrectIlluminationApply ("Divide") does, before the 8-bit scaling. JUMP stores the functions as
``.npy`` files (read with ``allow_pickle=False``).

Perturbations are not in load_data files: they come from ``Metadata_Perturbation`` /
``Metadata_JCP2022`` columns when present, or from platemap and JUMP tables
(``perturbation_csv``, see :mod:`cellmae.data.readers.jump`); otherwise they are UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.base import ReadError, Screen, read_metadata_csv, stack_planes
from cellmae.data.readers.jump import jump_perturbations, read_tables
from cellmae.data.readers.storage import child, is_url, with_options

FILE_PREFIX, PATH_PREFIX = "FileName_Orig", "PathName_Orig"
ILLUM_FILE_PREFIX, ILLUM_PATH_PREFIX = "FileName_Illum", "PathName_Illum"
_ILLUM_CACHE_SIZE = 32  # illumination functions are per plate and channel: a few per worker


LOAD_DATA_FILE = "load_data.csv"  # the CSV a Cell Painting screen folder holds (CellProfiler LoadData)


def is_load_data(csv: Path) -> bool:
    """Whether a CSV looks like a CellProfiler load_data file (has FileName_Orig* columns)."""
    try:
        cols = read_metadata_csv(csv, "CSV", nrows=0).columns
    except Exception:
        return False
    return any(str(c).startswith(FILE_PREFIX) for c in cols)


def load_data_channels(columns: list[str]) -> tuple[str, ...]:
    """Channels named by FileName_Orig* columns: the Cell Painting five first, then the rest."""
    found = [c[len(FILE_PREFIX) :] for c in columns if c.startswith(FILE_PREFIX)]
    ordered = [c for c in S.CELLPAINTING_CHANNELS if c in found]
    return tuple(ordered + [c for c in found if c not in ordered])


class CellPaintingScreen(Screen):
    """A screen described by a load_data CSV; see the module docstring."""

    layout = "cellpainting"

    def __init__(
        self,
        load_data_csv,
        *,
        channels: list[str] | tuple[str, ...] | None = None,
        perturbation_csv=None,
        image_root=None,
        illum: bool | None = None,
        storage_options: dict | None = None,
        **scaling,
    ) -> None:
        csv = with_options(load_data_csv, storage_options)
        if not csv.is_file():
            raise ReadError(f"{csv}: load_data CSV not found")
        raw = read_metadata_csv(csv, "load_data CSV")
        available = load_data_channels(list(raw.columns))
        if not available:
            raise ReadError(f"{csv}: no {FILE_PREFIX}<channel> columns; have {list(raw.columns)}")
        # JUMP files also list brightfield planes (Brightfield, HighZBF, LowZBF); the default is the
        # five fluorescent Cell Painting channels when all are there, the others on request.
        default = S.CELLPAINTING_CHANNELS if set(S.CELLPAINTING_CHANNELS) <= set(available) else available
        chans = tuple(channels) if channels else default
        for c in chans:
            if c not in available:
                raise ReadError(
                    f"{csv}: channel {c!r} has no {FILE_PREFIX}{c} column (available: {list(available)})"
                )
            if f"{PATH_PREFIX}{c}" not in raw.columns:
                raise ReadError(f"{csv}: column {PATH_PREFIX}{c} missing for channel {c!r}")
        for col in ("Metadata_Plate", "Metadata_Well"):
            if col not in raw.columns:
                raise ReadError(f"{csv}: missing column {col}; have {list(raw.columns)}")
        # A relative PathName is relative to the CSV's folder (or image_root), as CellProfiler does.
        base = with_options(image_root, storage_options) if image_root else csv.parent
        files = _column_paths(raw, csv, base, chans, FILE_PREFIX, PATH_PREFIX)
        self.illum = self._illum_columns(raw, csv, chans, illum)
        self._illum_files = _column_paths(raw, csv, base, chans, ILLUM_FILE_PREFIX, ILLUM_PATH_PREFIX) \
            if self.illum else None
        self._illum_cache: dict[str, np.ndarray] = {}
        tables = read_tables(_as_list(perturbation_csv), storage_options)
        meta = jump_perturbations(_site_frame(raw, csv), raw, tables)
        super().__init__(meta, chans, files, source=csv, **scaling)

    @staticmethod
    def _illum_columns(raw: pd.DataFrame, csv, chans: Sequence[str], illum: bool | None) -> bool:
        """Whether to divide by illumination functions: every channel needs its Illum columns."""
        have = [c for c in chans if f"{ILLUM_FILE_PREFIX}{c}" in raw.columns]
        if illum is False or (illum is None and not have):
            return False
        missing = [f"{p}{c}" for c in chans for p in (ILLUM_FILE_PREFIX, ILLUM_PATH_PREFIX) if f"{p}{c}" not in raw]
        if missing:
            raise ReadError(f"{csv}: illumination correction needs {missing} (have Illum columns for {have}); add "
                            "them, or pass --no-illum to read the uncorrected images")
        return True

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_illum_cache": {}}  # each worker process reads its own functions

    def _illum(self, i: int, k: int) -> np.ndarray:
        path = self._illum_files[i][k]
        key = str(path)
        if key not in self._illum_cache:
            if len(self._illum_cache) >= _ILLUM_CACHE_SIZE:
                self._illum_cache.pop(next(iter(self._illum_cache)))
            fn = self.read_plane(path).astype(np.float32)
            if fn.ndim != 2 or not np.isfinite(fn).all() or (fn <= 0).any():
                raise ReadError(f"{path}: an illumination function must be a 2-D array of positive finite values "
                                f"(shape {fn.shape}, min {np.nanmin(fn) if fn.size else 'n/a'}; {self.row_label(i)})")
            self._illum_cache[key] = fn
        return self._illum_cache[key]

    def _read_raw(self, i: int) -> np.ndarray:
        paths = self.path(i)
        planes = [self.read_plane(p) for p in paths]
        if self.illum:
            corrected = []
            for k, plane in enumerate(planes):
                fn = self._illum(i, k)
                if fn.shape != plane.shape:
                    raise ReadError(f"{self._illum_files[i][k]}: illumination function of shape {fn.shape} does not "
                                    f"match the image {paths[k]} of shape {plane.shape} ({self.row_label(i)})")
                corrected.append(plane.astype(np.float32) / fn)  # CellProfiler: CorrectIlluminationApply, Divide
            planes = corrected
        return stack_planes(planes, paths, rescale_uint8=self.rescale_uint8)


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _column_paths(raw: pd.DataFrame, csv, base, chans, file_prefix: str, path_prefix: str) -> list[tuple]:
    """Per row, the file of each channel: PathName joined with FileName (PathName may be a URL)."""
    files = []
    for row, r in enumerate(raw.to_dict("records"), start=1):
        paths = []
        for c in chans:
            name, folder = r[f"{file_prefix}{c}"], r[f"{path_prefix}{c}"]
            if not isinstance(name, str) or not isinstance(folder, str):
                raise ReadError(f"{csv}: row {row}, column {file_prefix}{c}/{path_prefix}{c}: empty value")
            if is_url(folder) or is_url(base):
                paths.append(child(base, folder.rstrip("/") + "/" + name))
            else:
                folder_p = Path(folder)
                paths.append((folder_p if folder_p.is_absolute() else base / folder_p) / name)
        files.append(tuple(paths))
    return files


def _site_frame(raw: pd.DataFrame, csv) -> pd.DataFrame:
    n = len(raw)
    stem = str(csv).rstrip("/").rsplit("/", 1)[-1].split(".")[0]
    exp = (
        raw["Metadata_Batch"]
        if "Metadata_Batch" in raw.columns
        else raw.get("Metadata_Source", pd.Series([stem] * n))
    )
    out = pd.DataFrame(
        {
            S.EXPERIMENT: exp.to_numpy(),
            S.PLATE: raw["Metadata_Plate"].to_numpy(),
            S.WELL: raw["Metadata_Well"].str.strip().str.upper().to_numpy(),
            S.SITE: raw["Metadata_Site"].to_numpy() if "Metadata_Site" in raw.columns else 1,
        }
    )
    if "Metadata_Source" in raw.columns:
        out["Metadata_Source"] = raw["Metadata_Source"].to_numpy()
    return out
