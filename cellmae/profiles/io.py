"""Read well profiles for the map (an embed block folder or any profile table) and write map tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cellmae import layout
from cellmae.data.profiles import Profiles
from cellmae.utils.atomic import atomic_path

ALIGNED_FILE = layout.MAP_ALIGNED_FILE
AGGREGATED_FILE = layout.MAP_AGGREGATED_FILE
SUMMARY_FILE = layout.MAP_SUMMARY_FILE
MAP_KIND = "map"  # the manifest kind of a `cellmae map` output folder


def read_well_embeddings(path: str | Path, features: Sequence[str] | str | None = None) -> Profiles:
    """Well profiles from a block folder of ``cellmae embed`` (checked complete), or a user's own
    table (Parquet file or folder, CSV/TSV, h5ad, zarr), validated once against the screen schema.

    ``features``: the feature columns (list or regular expression; default ``feature_*``, else
    CellProfiler compartment columns). Wells with non-finite features are kept for the filter.
    """
    from cellmae.embed.io import read_embedding_profiles

    return read_embedding_profiles(Path(path), features=features, wells=True, finite=False)


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as Parquet atomically (a reader never sees a partial file)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return path
