"""Read embeddings back (one table from a block's per-plate parts) and export them to AnnData."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data.schema import SITE, WELL_KEYS, feature_columns, metadata_columns
from cellmae.utils.atomic import atomic_path


def embedding_files(path: str | Path) -> list[Path]:
    """The Parquet parts under ``path`` (a block folder or a single file), skipping temporaries."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"embeddings folder {path} does not exist")
    files = sorted(
        p for p in path.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise FileNotFoundError(f"no Parquet files under {path} (expected <block>/plate=<id>/part-*.parquet)")
    return files


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """One DataFrame (metadata + float32 ``feature_`` columns) from a block folder, sorted by well.

    Reads the part files directly (no hive partition column is added), checks that every part
    has the same feature columns, and sorts by experiment, plate, well (and site) so the row
    order does not depend on how plates were split across ranks.
    """
    files = embedding_files(path)
    frames = [pd.read_parquet(f) for f in files]
    cols = feature_columns(frames[0])
    for f, df in zip(files, frames, strict=True):
        if feature_columns(df) != cols:
            raise ValueError(f"{f}: feature columns differ from {files[0]} ({len(feature_columns(df))} vs {len(cols)})")
    df = pd.concat(frames, ignore_index=True)
    keys = [k for k in (*WELL_KEYS, SITE) if k in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def write_anndata(path: str | Path, out: str | Path, *, feature_names: list[str] | None = None) -> Path:
    """Write a block's embeddings as ``.h5ad`` (obs = metadata, X = float32 features), atomically."""
    import anndata as ad

    df = read_embeddings(path)
    feats = feature_columns(df)
    obs = df[metadata_columns(df)].copy()
    for c in obs.columns:  # h5ad stores strings and numbers; keep bools as bools
        if obs[c].dtype == object:
            obs[c] = obs[c].astype(str)
    obs.index = [f"{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=feats)
    if feature_names is not None and len(feature_names) == len(feats):
        var["name"] = feature_names
    adata = ad.AnnData(X=df[feats].to_numpy(dtype=np.float32), obs=obs, var=var)
    out = Path(out)
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return out
