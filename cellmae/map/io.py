"""Read well embeddings (``plate=<id>/part-*.parquet`` datasets) and write map tables atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cellmae import layout
from cellmae.data.schema import (
    CONCENTRATION,
    SchemaError,
    feature_columns,
    validate_metadata,
)
from cellmae.utils.atomic import atomic_path

ALIGNED_FILE = layout.MAP_ALIGNED_FILE
AGGREGATED_FILE = layout.MAP_AGGREGATED_FILE
SUMMARY_FILE = layout.MAP_SUMMARY_FILE
MAP_KIND = "map"  # the manifest kind of a `cellmae map` output folder


def read_well_embeddings(path: str | Path) -> pd.DataFrame:
    """Well embeddings (metadata + float32 ``feature_`` columns) from a block folder or one file.

    Uses :func:`cellmae.embed.io.read_embeddings` (every part, same feature columns, sorted by
    experiment/plate/well) and validates the metadata against the schema, so a bad file fails
    here with its name rather than deep inside alignment.
    """
    from cellmae.embed.io import read_embeddings

    path = Path(path)
    table = read_embeddings(path)
    feats = feature_columns(table)
    if not feats:
        raise SchemaError(f"{path}: no feature_ columns (expected feature_0000 ...)")
    meta_cols = [c for c in table.columns if c not in set(feats)]
    meta = validate_metadata(table[meta_cols], source=path)
    out = pd.concat([meta.reset_index(drop=True), table[feats].astype("float32").reset_index(drop=True)], axis=1)
    if CONCENTRATION not in out.columns:
        out.insert(len(meta_cols), CONCENTRATION, float("nan"))
    return out


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as Parquet atomically (a reader never sees a partial file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return path

