"""Cell Painting / JUMP layout: a CellProfiler ``load_data`` CSV pointing at one TIFF per channel.

Each row is one site: ``Metadata_Source``, ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``
(``Metadata_Batch`` when present) and, per channel X, ``FileName_OrigX`` + ``PathName_OrigX``.
Images are usually 16-bit and are percentile-scaled to uint8 per channel. Perturbations are not
in load_data files: they come from ``Metadata_Perturbation``/``Metadata_JCP2022`` columns when
present, or from a separate platemap CSV joined on plate and well (``perturbation_csv``);
otherwise they are UNKNOWN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers.base import ReadError, Screen, read_metadata_csv, read_plane, stack_planes

FILE_PREFIX, PATH_PREFIX = "FileName_Orig", "PathName_Orig"
_PERT_ALIASES = (
    S.PERTURBATION,
    "Metadata_JCP2022",
    "Metadata_broad_sample",
    "Metadata_gene",
    "Metadata_Compound",
)


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
        load_data_csv: str | Path,
        *,
        channels: list[str] | tuple[str, ...] | None = None,
        perturbation_csv: str | Path | None = None,
        image_root: str | Path | None = None,
        **scaling,
    ) -> None:
        csv = Path(load_data_csv)
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
        base = Path(image_root) if image_root else csv.parent
        files = []
        for row, r in enumerate(raw.to_dict("records"), start=1):
            paths = []
            for c in chans:
                name, folder = r[f"{FILE_PREFIX}{c}"], r[f"{PATH_PREFIX}{c}"]
                if not isinstance(name, str) or not isinstance(folder, str):
                    raise ReadError(
                        f"{csv}: row {row}, column {FILE_PREFIX}{c}/{PATH_PREFIX}{c}: empty value"
                    )
                folder_p = Path(folder)
                paths.append((folder_p if folder_p.is_absolute() else base / folder_p) / name)
            files.append(tuple(paths))
        meta = _schema_frame(raw, csv, Path(perturbation_csv) if perturbation_csv else None)
        super().__init__(meta, chans, files, source=csv, **scaling)

    def _read_raw(self, i: int) -> np.ndarray:
        paths = self.path(i)
        return stack_planes([read_plane(p) for p in paths], paths, rescale_uint8=self.rescale_uint8)


def _schema_frame(raw: pd.DataFrame, csv: Path, perturbation_csv: Path | None) -> pd.DataFrame:
    n = len(raw)
    exp = (
        raw["Metadata_Batch"]
        if "Metadata_Batch" in raw.columns
        else raw.get("Metadata_Source", pd.Series([csv.stem] * n))
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
    pert_cols = raw
    if perturbation_csv is not None:
        pert_cols = _joined_platemap(out, perturbation_csv)
    pert_col = next((c for c in _PERT_ALIASES if c in pert_cols.columns), None)
    if pert_col is None:
        out[S.PERTURBATION] = S.UNKNOWN
        out[S.PERTURBATION_TYPE] = S.UNKNOWN
        out[S.IS_CONTROL] = False
    else:
        out[S.PERTURBATION] = pert_cols[pert_col].to_numpy()
        out[S.PERTURBATION_TYPE] = (
            pert_cols[S.PERTURBATION_TYPE].str.upper().to_numpy()
            if S.PERTURBATION_TYPE in pert_cols.columns
            else "COMPOUND"
        )
        if S.IS_CONTROL in pert_cols.columns:
            out[S.IS_CONTROL] = pert_cols[S.IS_CONTROL].to_numpy()
        elif "Metadata_control_type" in pert_cols.columns:  # JUMP: negcon / poscon_* / trt
            out[S.IS_CONTROL] = pert_cols["Metadata_control_type"].fillna("").eq("negcon").to_numpy()
        else:
            out[S.IS_CONTROL] = out[S.PERTURBATION_TYPE].eq("CONTROL")
    if S.CONCENTRATION in pert_cols.columns:
        out[S.CONCENTRATION] = pert_cols[S.CONCENTRATION].to_numpy()
    return out


def _joined_platemap(meta: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Platemap rows aligned to ``meta`` on (plate, well); a site with no platemap row names both files."""
    if not path.is_file():
        raise ReadError(f"{path}: perturbation CSV not found")
    pm = read_metadata_csv(path, "perturbation CSV")
    for col in (S.PLATE, S.WELL):
        if col not in pm.columns:
            raise ReadError(f"{path}: missing column {col}; have {list(pm.columns)}")
    pm[S.WELL] = pm[S.WELL].str.strip().str.upper()
    if pm.duplicated([S.PLATE, S.WELL]).any():
        raise ReadError(f"{path}: duplicated ({S.PLATE}, {S.WELL}) rows")
    joined = meta[[S.PLATE, S.WELL]].merge(pm, on=[S.PLATE, S.WELL], how="left", indicator=True)
    miss = np.flatnonzero(joined["_merge"].eq("left_only").to_numpy())
    if len(miss):
        r = meta.iloc[miss[0]]
        raise ReadError(
            f"{path}: no row for plate {r[S.PLATE]!r}, well {r[S.WELL]!r} ({len(miss)} site(s) unmatched)"
        )
    return joined.drop(columns="_merge")
