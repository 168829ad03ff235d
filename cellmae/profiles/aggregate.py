"""Aggregate aligned wells into one profile per perturbation (EFAAR "aggregate").

One row per perturbation; compounds get one row per perturbation x concentration. Control wells
are excluded (they define the alignment, not the map). Mean uses a sparse indicator matrix
product (one pass, no copy of the wells); median gathers groups of equal size into one array so
``np.median`` runs once per distinct replicate count instead of once per perturbation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from cellmae.data.profiles import COMPOUND, KEY, perturbation_key
from cellmae.data.schema import CONCENTRATION, IS_CONTROL, PERTURBATION, PERTURBATION_TYPE

AGG_METHODS: tuple[str, ...] = ("mean", "median")
NUM_WELLS = "Metadata_NumWells"


def group_table(meta: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row of keys per group, group code per well) for non-control wells.

    A group is a perturbation type and a :func:`~cellmae.data.profiles.perturbation_key` (the
    perturbation, x concentration for compounds). Columns: type, perturbation and concentration
    (compounds; NaN otherwise). Control wells get code -1. Groups are sorted by type,
    perturbation, concentration (NaN last).
    """
    missing = [c for c in (PERTURBATION, PERTURBATION_TYPE, IS_CONTROL) if c not in meta.columns]
    if missing:
        raise ValueError(f"metadata lacks column(s) {missing} needed to aggregate")
    ptype = meta[PERTURBATION_TYPE].astype(str).to_numpy()
    keys = pd.DataFrame({PERTURBATION_TYPE: ptype, PERTURBATION: meta[PERTURBATION].astype(str).to_numpy()})
    if CONCENTRATION in meta.columns:
        conc = pd.to_numeric(meta[CONCENTRATION], errors="coerce").to_numpy(dtype=np.float64)
        keys[CONCENTRATION] = np.where(np.char.upper(ptype.astype(str)) == COMPOUND, conc, np.nan)
    group_cols = [PERTURBATION_TYPE, KEY]
    keys[KEY] = perturbation_key(meta).to_numpy()
    control = meta[IS_CONTROL].to_numpy(dtype=bool)
    treated = keys[~control]
    # One row per group (its first well), in the sorted order the map has always had.
    order = [c for c in (PERTURBATION_TYPE, PERTURBATION, CONCENTRATION) if c in keys.columns]
    first = treated.drop_duplicates(group_cols).sort_values(order, kind="stable", na_position="last")
    table = first.reset_index(drop=True)
    codes = np.full(len(meta), -1, dtype=np.int64)
    codes[~control] = pd.MultiIndex.from_frame(table[group_cols]).get_indexer(
        pd.MultiIndex.from_frame(treated[group_cols]))
    return table.drop(columns=KEY), codes


def _mean_by_code(features: np.ndarray, codes: np.ndarray, n_groups: int, counts: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(codes >= 0)
    ind = sparse.csr_matrix(
        (np.ones(len(rows), dtype=features.dtype), (codes[rows], rows)), shape=(n_groups, len(features))
    )
    sums = ind @ features
    return (sums / counts[:, None]).astype(np.float32)


def _median_by_code(features: np.ndarray, codes: np.ndarray, n_groups: int, counts: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(codes >= 0)
    order = rows[np.argsort(codes[rows], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.empty((n_groups, features.shape[1]), dtype=np.float32)
    for size in np.unique(counts):
        groups = np.flatnonzero(counts == size)
        take = order[(starts[groups][:, None] + np.arange(size)[None, :]).ravel()]
        block = features[take].reshape(len(groups), size, features.shape[1])
        out[groups] = np.median(block, axis=1)
    return out


def aggregate(features: np.ndarray, meta: pd.DataFrame, method: str = "mean") -> tuple[pd.DataFrame, np.ndarray]:
    """(group metadata, float32 profiles): one row per perturbation (x concentration for compounds).

    The metadata has the key columns, ``Metadata_IsControl`` (False) and ``Metadata_NumWells``.
    """
    if method not in AGG_METHODS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {list(AGG_METHODS)}")
    x = np.asarray(features)
    if x.ndim != 2 or len(x) != len(meta):
        raise ValueError(f"features of shape {x.shape} do not match {len(meta)} metadata rows")
    table, codes = group_table(meta)
    if table.empty:
        raise ValueError("no non-control wells to aggregate (every well has Metadata_IsControl = True)")
    counts = np.bincount(codes[codes >= 0], minlength=len(table))
    reduce = _mean_by_code if method == "mean" else _median_by_code
    profiles = reduce(x, codes, len(table), counts)
    table[IS_CONTROL] = False
    table[NUM_WELLS] = counts.astype(np.int64)
    return table, profiles
