"""Mean aggregation of features: tiles -> sites -> wells (the contract's well-level embeddings)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellmae.data.schema import (
    CONCENTRATION,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    SITE,
    WELL_KEYS,
    SchemaError,
    metadata_columns,
)

# Columns that must agree between the sites of one well: a well holds one perturbation.
_WELL_CONSTANT = (PERTURBATION, PERTURBATION_TYPE, IS_CONTROL, CONCENTRATION)


def mean_of_runs(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Means of consecutive runs of ``rows``: run k has ``counts[k]`` rows (e.g. a field's tiles)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != len(rows) or (counts <= 0).any():
        raise ValueError(f"run lengths {counts.tolist()} do not partition {len(rows)} rows")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.add.reduceat(rows.astype(np.float64, copy=False), starts, axis=0)
    return (sums / counts[:, None]).astype(np.float32)


def site_metadata(meta: pd.DataFrame) -> pd.DataFrame:
    """The ``Metadata_`` columns of a per-site table, index reset."""
    return meta[metadata_columns(meta)].reset_index(drop=True)


def wells_from_sites(meta: pd.DataFrame, features: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Average site features to wells; return (well metadata sorted by well keys, (n_wells, D) float32).

    Well metadata are the sites' ``Metadata_`` columns without ``Metadata_Site``; a well whose
    sites disagree on the perturbation is a metadata error and raises naming the well.
    """
    if len(meta) != len(features):
        raise ValueError(f"{len(meta)} metadata rows but {len(features)} feature rows")
    meta = site_metadata(meta)
    keys = list(WELL_KEYS)
    codes, uniques = pd.MultiIndex.from_frame(meta[keys]).factorize(sort=True)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(uniques))
    well_feats = mean_of_runs(np.asarray(features)[order], counts)

    cols = [c for c in meta.columns if c != SITE]
    first = meta.iloc[order].groupby(codes[order], sort=True)[cols].first()
    for col in (c for c in _WELL_CONSTANT if c in meta.columns):
        n_distinct = meta.groupby(codes)[col].nunique(dropna=False)
        bad = n_distinct[n_distinct > 1]
        if len(bad):
            well = tuple(uniques[int(bad.index[0])])
            raise SchemaError(f"well {well}: its sites disagree on {col} ({sorted(meta.loc[codes == bad.index[0], col].astype(str).unique())})")
    return first.reset_index(drop=True), well_feats
