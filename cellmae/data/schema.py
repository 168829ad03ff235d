"""The screen metadata schema and the embedding table contract (DESIGN.md, "Data contracts").

Column names follow the Cell Painting ecosystem's ``Metadata_`` prefix so that pycytominer
and copairs read cellmae outputs unchanged. Every stage imports its column names from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

EXPERIMENT = "Metadata_Experiment"  # the batch
PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
SITE = "Metadata_Site"
PERTURBATION = "Metadata_Perturbation"  # gene symbol or compound id
PERTURBATION_TYPE = "Metadata_PerturbationType"
CONCENTRATION = "Metadata_Concentration"
IS_CONTROL = "Metadata_IsControl"

WELL_KEYS: tuple[str, ...] = (EXPERIMENT, PLATE, WELL)
SITE_KEYS: tuple[str, ...] = (*WELL_KEYS, SITE)
REQUIRED_COLUMNS: tuple[str, ...] = (EXPERIMENT, PLATE, WELL, PERTURBATION, PERTURBATION_TYPE, IS_CONTROL)
OPTIONAL_COLUMNS: tuple[str, ...] = (SITE, CONCENTRATION)

# UNKNOWN: fields read from a layout that carries no perturbation metadata (generic image folders).
PERTURBATION_TYPES: frozenset[str] = frozenset({"CRISPR", "SIRNA", "ORF", "COMPOUND", "CONTROL", "EMPTY", "UNKNOWN"})
UNKNOWN = "UNKNOWN"

# Canonical channel names. RxRx's six stains and the five Cell Painting channels overlap on
# DNA/ER/RNA/AGP(actin, Golgi, plasma membrane)/Mito; RxRx splits AGP into Actin and GolgiPM.
RXRX_CHANNELS: tuple[str, ...] = ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM")
CELLPAINTING_CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")
KNOWN_CHANNELS: frozenset[str] = frozenset(
    {*RXRX_CHANNELS, *CELLPAINTING_CHANNELS, "Brightfield", "FITC", "Rhodamine", "Tubulin", "Other"}
)

FEATURE_PREFIX = "feature_"
_WELL_RE = re.compile(r"^[A-Z]{1,2}\d{1,2}$")


class SchemaError(ValueError):
    """Metadata does not follow the schema; the message names the file, row and column."""


def feature_column(i: int) -> str:
    """Name of the i-th embedding feature column (``feature_0000`` ...)."""
    return f"{FEATURE_PREFIX}{i:04d}"


def feature_columns(df: pd.DataFrame | Sequence[str]) -> list[str]:
    """The feature columns of an embedding table, in order."""
    cols = df.columns if isinstance(df, pd.DataFrame) else df
    return [c for c in cols if str(c).startswith(FEATURE_PREFIX)]


def metadata_columns(df: pd.DataFrame) -> list[str]:
    """The ``Metadata_`` columns of a table, in order."""
    return [c for c in df.columns if str(c).startswith("Metadata_")]


def embeddings_frame(meta: pd.DataFrame, features: np.ndarray) -> pd.DataFrame:
    """Join metadata rows and a float32 feature matrix into one embedding table."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(meta):
        raise ValueError(f"features of shape {features.shape} do not match {len(meta)} metadata rows")
    feats = pd.DataFrame(features, columns=[feature_column(i) for i in range(features.shape[1])], index=meta.index)
    return pd.concat([meta.reset_index(drop=True), feats.reset_index(drop=True)], axis=1)


def validate_channels(channels: Iterable[str], *, source: str = "<channels>") -> tuple[str, ...]:
    """Check channel names are non-empty, unique strings; return them as a tuple."""
    channels = tuple(channels)
    if not channels:
        raise SchemaError(f"{source}: no channels given")
    for c in channels:
        if not isinstance(c, str) or not c.strip():
            raise SchemaError(f"{source}: channel name {c!r} is not a non-empty string")
    dup = sorted({c for c in channels if channels.count(c) > 1})
    if dup:
        raise SchemaError(f"{source}: duplicated channel names {dup}")
    return channels


def validate_metadata(df: pd.DataFrame, *, source: str | Path = "<metadata>") -> pd.DataFrame:
    """Validate and normalise a screen metadata table; return a cleaned copy.

    Raises :class:`SchemaError` naming ``source``, the (1-based data) row and the column of
    the first problem found. Normalises dtypes: strings for ids, bool for the control flag,
    float for concentration, int for site.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing required column(s) {missing}; have {list(df.columns)}")
    out = df.copy()
    for col in (EXPERIMENT, PLATE, WELL, PERTURBATION, PERTURBATION_TYPE):
        nulls = out[col].isna()
        if nulls.any():
            row = int(np.flatnonzero(nulls.to_numpy())[0])
            raise SchemaError(f"{source}: row {row + 1}, column {col}: empty value")
        out[col] = out[col].astype(str)
    bad_type = ~out[PERTURBATION_TYPE].isin(PERTURBATION_TYPES)
    if bad_type.any():
        row = int(np.flatnonzero(bad_type.to_numpy())[0])
        raise SchemaError(
            f"{source}: row {row + 1}, column {PERTURBATION_TYPE}: {out[PERTURBATION_TYPE].iloc[row]!r} "
            f"is not one of {sorted(PERTURBATION_TYPES)}"
        )
    bad_well = ~out[WELL].str.match(_WELL_RE)
    if bad_well.any():
        row = int(np.flatnonzero(bad_well.to_numpy())[0])
        raise SchemaError(f"{source}: row {row + 1}, column {WELL}: {out[WELL].iloc[row]!r} is not a well id like 'B02'")
    out[IS_CONTROL] = as_bool(out[IS_CONTROL], source=source)
    if SITE in out.columns:
        site = pd.to_numeric(out[SITE], errors="coerce")
        if site.isna().any():
            row = int(np.flatnonzero(site.isna().to_numpy())[0])
            raise SchemaError(f"{source}: row {row + 1}, column {SITE}: {out[SITE].iloc[row]!r} is not an integer")
        out[SITE] = site.astype(int)
    if CONCENTRATION in out.columns:
        conc = pd.to_numeric(out[CONCENTRATION], errors="coerce")
        bad = conc.isna() & out[CONCENTRATION].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(f"{source}: row {row + 1}, column {CONCENTRATION}: {out[CONCENTRATION].iloc[row]!r} is not a number")
        out[CONCENTRATION] = conc.astype(float)
    keys = [k for k in SITE_KEYS if k in out.columns]
    dup = out.duplicated(keys, keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise SchemaError(f"{source}: row {row + 1}: duplicated {keys} = {tuple(out.iloc[row][keys])}")
    return out


def as_bool(col: pd.Series, *, source: str | Path) -> pd.Series:
    """A control-flag column as bools: bool, or true/false, 1/0, yes/no in any case; a row that is
    none of these raises :class:`SchemaError` naming it."""
    if col.dtype == bool:
        return col
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    lowered = col.astype(str).str.strip().str.lower()
    bad = ~lowered.isin(mapping)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{source}: row {row + 1}, column {IS_CONTROL}: {col.iloc[row]!r} is not a boolean")
    return lowered.map(mapping).astype(bool)
