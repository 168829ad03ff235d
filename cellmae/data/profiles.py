"""One profile table: metadata rows + a float32 feature matrix, read and validated once at the file.

Every stage that reads profiles (``map``, ``bench``, ``curate``, the notebook API) goes through
:class:`Profiles`, and every stage that groups wells by perturbation uses :func:`perturbation_key`.

Files are read by :mod:`cellmae.data.tables` (formats told apart by content).

Features are any numeric columns the user names (``features=`` list or regular expression);
without a choice, cellmae's ``feature_`` columns, else CellProfiler compartment columns
(``Cells``/``Cytoplasm``/``Nuclei`` prefixes, the rule of pycytominer's ``infer_cp_features``),
else an AnnData's ``X``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellmae.data.schema import (
    CONCENTRATION,
    EXPERIMENT,
    FEATURE_PREFIX,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    PLATE,
    REQUIRED_COLUMNS,
    SITE,
    UNKNOWN,
    WELL,
    WELL_KEYS,
    SchemaError,
    as_bool,
    validate_metadata,
)
from cellmae.data.tables import read_table
from cellmae.utils.errors import InputError

KEY = "perturbation_key"  # the column name bench tables give the key
COMPOUND = "COMPOUND"
CP_COMPARTMENTS: tuple[str, ...] = ("Cells", "Cytoplasm", "Nuclei")  # pycytominer's default compartments
OUTPUT_TYPES: tuple[str, ...] = ("parquet", "anndata_h5ad")

# What to put in a required column a user's table lacks (said in the error, not guessed).
_COLUMN_HINTS = {
    EXPERIMENT: "the batch of each well (one value for a single-batch screen)",
    PLATE: "the plate id", WELL: "the well id, like B02",
    PERTURBATION: "the gene symbol or compound id",
    PERTURBATION_TYPE: "CRISPR, ORF, SIRNA, COMPOUND or CONTROL",
    IS_CONTROL: "True for the negative control wells alignment is fitted on",
}


# ---- the perturbation key ------------------------------------------------------------------
def perturbation_key(meta: pd.DataFrame) -> pd.Series:
    """One string per row naming what was done to the well: the perturbation, plus ``@<dose>``
    for compounds with a concentration (``"CPD1@0.5"``); genes and controls are their name.

    Map aggregation, well filtering, every benchmark and curation group wells by this key. The
    perturbation type is not part of it (a gene screened both as ORF and CRISPR in one table is
    kept apart only by the aggregation, which also groups by type; map such screens per type).
    """
    if PERTURBATION not in meta.columns:
        raise SchemaError(f"no {PERTURBATION} column to key perturbations by; have {list(meta.columns)[:12]}")
    key = meta[PERTURBATION].astype(str)
    if CONCENTRATION in meta.columns and PERTURBATION_TYPE in meta.columns:
        conc = pd.to_numeric(meta[CONCENTRATION], errors="coerce")
        dosed = (conc.notna() & (meta[PERTURBATION_TYPE].astype(str).str.upper() == COMPOUND)).to_numpy()
        if dosed.any():
            key = key.where(~dosed, key + "@" + conc.map(lambda v: f"{v:g}"))
    return key.rename(KEY)


def well_ids(meta: pd.DataFrame) -> pd.Index:
    """Row names for AnnData ``obs_names``: ``<experiment>_<plate>_<well>`` (RxRx's ``id_code``
    form; ``_s<site>`` added for site rows), or the perturbation key for aggregated profiles."""
    if all(k in meta.columns for k in WELL_KEYS):
        ids = meta[EXPERIMENT].astype(str) + "_" + meta[PLATE].astype(str) + "_" + meta[WELL].astype(str)
        if SITE in meta.columns and ids.duplicated().any():
            ids = ids + "_s" + meta[SITE].astype(str)
    elif PERTURBATION in meta.columns:
        ids = perturbation_key(meta)
    else:
        ids = pd.Series(np.arange(len(meta)).astype(str))
    return pd.Index(ids.to_numpy(dtype=str), name=None)


# ---- feature columns -----------------------------------------------------------------------
def infer_features(columns: Sequence[str], features: Sequence[str] | str | None = None, *,
                   source: str | os.PathLike = "<table>") -> list[str]:
    """The feature columns of a table, in table order.

    ``features``: a list of column names, or a regular expression (a string, matched with
    ``re.fullmatch``). None: ``feature_*`` columns, else CellProfiler compartment columns
    (``Cells*``, ``Cytoplasm*``, ``Nuclei*``: the same prefixes as pycytominer's infer_cp_features).
    """
    cols = [str(c) for c in columns]
    if isinstance(features, str):
        try:
            rx = re.compile(features)
        except re.error as exc:
            raise InputError(f"--features {features!r}: not a valid regular expression ({exc})") from exc
        found = [c for c in cols if rx.fullmatch(c) and not c.startswith("Metadata_")]
        if not found:
            raise InputError(f"{source}: no column matches --features {features!r}; columns are {cols[:12]}...")
        return found
    if features is not None:
        missing = [f for f in features if f not in cols]
        if missing:
            raise InputError(f"{source}: --features column(s) {missing[:5]} not in the table; columns are {cols[:12]}...")
        return list(features)
    ours = [c for c in cols if c.startswith(FEATURE_PREFIX)]
    if ours:
        return ours
    cp = [c for c in cols if c.startswith(CP_COMPARTMENTS)]
    if cp:
        return cp
    raise InputError(f"{source}: no feature columns found (looked for feature_* and CellProfiler Cells_/Cytoplasm_/"
                     f"Nuclei_ columns); name them with --features (a list or a regular expression); "
                     f"columns are {cols[:12]}...")


_REGEX_CHARS = set("*?[](){}|^$\\+")


def parse_features(text: str | None) -> list[str] | str | None:
    """``--features``: a comma-separated list of columns, or one regular expression (any of
    ``*?[](){}|^$\\+`` in it); empty: None (inferred)."""
    if text is None or not text.strip():
        return None
    if _REGEX_CHARS & set(text):
        return text.strip()
    return [c.strip() for c in text.split(",") if c.strip()]


# ---- the table -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Profiles:
    """Metadata rows and their float32 feature matrix, aligned by position.

    ``feature_names``: the table's own names of the feature columns (``feature_0000``,
    ``Cells_AreaShape_Area``, ...); ``provenance``: what made the table (model, block, pooling,
    cellmae version; an AnnData's ``uns``).
    """

    meta: pd.DataFrame
    features: np.ndarray
    feature_names: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.feature_names:
            object.__setattr__(self, "feature_names", tuple(f"{FEATURE_PREFIX}{i:04d}"
                                                            for i in range(self.features.shape[1])))

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def keys(self) -> pd.Series:
        """:func:`perturbation_key` of every row."""
        return perturbation_key(self.meta)

    def subset(self, mask: np.ndarray) -> Profiles:
        mask = np.asarray(mask)
        return Profiles(self.meta.loc[mask].reset_index(drop=True), self.features[mask], self.feature_names,
                        self.provenance)

    def to_frame(self) -> pd.DataFrame:
        """One table: metadata columns, then the feature columns under their own names."""
        feats = pd.DataFrame(self.features, columns=list(self.feature_names))
        return pd.concat([self.meta.reset_index(drop=True), feats], axis=1)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, source: str | os.PathLike = "<table>",
                   features: Sequence[str] | str | None = None, wells: bool = False, finite: bool = True,
                   provenance: dict[str, Any] | None = None) -> Profiles:
        """Split a table into validated metadata and float32 features (:func:`infer_features`).

        ``wells``: the rows are wells, validated against the screen schema (required columns,
        well ids, types, duplicates; a missing concentration column is added as NaN). Otherwise
        (aggregated profiles, a user's table) only ``Metadata_Perturbation`` is required; a missing
        control flag reads False, a missing type UNKNOWN. ``finite``: refuse NaN/inf features
        (the map stage filters such wells itself, so it passes False).
        """
        names = infer_features(df.columns, features, source=source)
        feature_set = set(names)
        meta = df[[c for c in df.columns if c not in feature_set]].reset_index(drop=True)
        x = _numeric(df, names, source)
        if finite:
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise SchemaError(f"{source}: row {row + 1} has non-finite feature values")
        if wells:
            missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
            if missing:
                hints = "; ".join(f"{c}: {_COLUMN_HINTS[c]}" for c in missing)
                raise SchemaError(f"{source}: a table of wells needs the column(s) {missing} (docs/map.md, Input): "
                                  f"{hints}; its columns are {list(meta.columns)[:12]}")
            meta = validate_metadata(meta, source=source)
            if CONCENTRATION not in meta.columns:
                meta[CONCENTRATION] = np.nan
        else:
            if PERTURBATION not in meta.columns:
                raise SchemaError(f"{source}: missing required column(s) {[PERTURBATION]}; have {list(meta.columns)[:12]}")
            # strings such as "False" must not read True (as bool("False") would)
            meta[IS_CONTROL] = as_bool(meta[IS_CONTROL], source=source) if IS_CONTROL in meta.columns else False
            if PERTURBATION_TYPE not in meta.columns:
                meta[PERTURBATION_TYPE] = UNKNOWN
            meta[PERTURBATION] = meta[PERTURBATION].astype(str)
        return cls(meta, x, tuple(names), dict(provenance or {}))

    @classmethod
    def read(cls, path: str | os.PathLike, **kwargs: Any) -> Profiles:
        """Read Parquet (file or partitioned folder), CSV/TSV or AnnData (h5ad, zarr): see
        :func:`read_table`; ``kwargs`` as :meth:`from_frame`. An AnnData's ``X`` columns are its
        features unless ``features`` says otherwise; its ``uns`` becomes the provenance."""
        frame, provenance, var_names = read_table(path)
        if var_names is not None and kwargs.get("features") is None:
            kwargs["features"] = var_names
        return cls.from_frame(frame, source=path, provenance={**provenance, **kwargs.pop("provenance", {})},
                              **kwargs)

    def write(self, path: str | os.PathLike, output_type: str = "parquet") -> Path:
        """Write as Parquet or ``.h5ad`` (obs = metadata with well ids as ``obs_names``,
        X = float32 features, var_names = feature names, uns = provenance) to ``path`` as given."""
        from cellmae.utils.atomic import atomic_path

        path = Path(path)
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"--output-type {output_type!r}: choose one of {list(OUTPUT_TYPES)}")
        with atomic_path(path) as tmp:
            if output_type == "parquet":
                self.to_frame().to_parquet(tmp, index=False)
            else:
                self.to_anndata().write_h5ad(tmp)
        return path

    def to_anndata(self) -> Any:
        import anndata as ad

        obs = self.meta.copy()
        for c in obs.columns:  # h5ad stores strings, numbers and bools; mixed objects become strings
            if obs[c].dtype == object:
                obs[c] = obs[c].astype(str)
        obs.index = well_ids(self.meta)
        adata = ad.AnnData(X=np.asarray(self.features, dtype=np.float32), obs=obs,
                           var=pd.DataFrame(index=list(self.feature_names)), uns=_plain(self.provenance))
        if not adata.obs_names.is_unique:
            adata.obs_names_make_unique()
        return adata


def _numeric(df: pd.DataFrame, names: list[str], source: str | os.PathLike) -> np.ndarray:
    try:
        return df[names].to_numpy(dtype=np.float32, copy=True)
    except (TypeError, ValueError):
        for c in names:
            bad = pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise SchemaError(f"{source}: row {row + 1}, column {c}: {df[c].iloc[row]!r} is not a number "
                                  "(choose the feature columns with --features)") from None
        raise


def _plain(value: Any) -> Any:
    """JSON-like values h5ad can store (no None: it has no null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is not None]
    return value
