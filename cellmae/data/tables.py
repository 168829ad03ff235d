"""Profile tables on disk, read by content: Parquet (file or partitioned folder), CSV/TSV, AnnData.

Formats are told apart by content, never by the file name alone: Parquet starts with ``PAR1``,
HDF5 (``.h5ad``) with ``\\x89HDF\\r\\n\\x1a\\n``, a zarr store is a folder with ``.zgroup`` /
``zarr.json``, a folder of Parquet parts is a dataset (``cellmae embed`` output, or a user's
partitioned table), anything else is CSV/TSV (gzip allowed, delimiter sniffed from the header).
:class:`cellmae.data.profiles.Profiles` turns what is read here into the one profile table.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellmae.data.schema import EXPERIMENT, PLATE
from cellmae.utils.errors import InputError, reading

# The embed stage partitions its parts by these columns (hive style, values URI-quoted), so reading
# a block folder with pandas/pyarrow gives back exactly these columns and nothing else.
PARTITION_COLUMNS: tuple[str, ...] = (EXPERIMENT, PLATE)

_PARQUET_MAGIC = b"PAR1"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"


def table_format(path: str | os.PathLike) -> str:
    """``parquet``, ``parquet_dir``, ``h5ad``, ``zarr`` or ``csv``, from the content of ``path``."""
    path = Path(path)
    if path.is_dir():
        if (path / ".zgroup").is_file() or (path / "zarr.json").is_file():
            return "zarr"
        if parquet_parts(path):
            return "parquet_dir"
        raise InputError(f"{path}: a folder with neither Parquet parts nor a zarr store (.zgroup / zarr.json)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] == _PARQUET_MAGIC:
        return "parquet"
    if head == _HDF5_MAGIC:
        return "h5ad"
    return "csv"


def table_format_or_none(path: str | os.PathLike) -> str | None:
    """:func:`table_format`, or None where ``path`` holds no profile table."""
    try:
        return table_format(path)
    except (InputError, FileNotFoundError):
        return None


def parquet_parts(folder: Path) -> list[Path]:
    """The Parquet files under ``folder``, skipping hidden and ``_``-prefixed entries (temporaries,
    progress markers), as pyarrow's dataset discovery does."""
    return sorted(p for p in folder.rglob("*.parquet")
                  if not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))


def partition_dir(values: Sequence[str]) -> str:
    """The hive partition path of a part: ``Metadata_Experiment=<exp>/Metadata_Plate=<plate>``.

    Values are URI-quoted, which pyarrow's hive partitioning decodes on reading."""
    return "/".join(f"{c}={urllib.parse.quote(str(v), safe='')}" for c, v in zip(PARTITION_COLUMNS, values,
                                                                                 strict=True))


def read_parquet_parts(folder: Path, files: Sequence[Path] | None = None) -> pd.DataFrame:
    """One table from a folder of Parquet parts, in file order.

    Columns named by ``Metadata_*=<value>`` folders are added back as strings where a part lacks
    them (the embed stage's hive layout); other folder names (``plate=3``) add nothing.
    """
    frames = []
    for f in files if files is not None else parquet_parts(folder):
        with reading(f, "Parquet file", "rewrite it (rerun the stage that made it) or remove it"):
            df = pd.read_parquet(f)
        added = 0
        for part in f.relative_to(folder).parts[:-1]:
            name, sep, value = part.partition("=")
            if sep and name.startswith("Metadata_") and name not in df.columns:
                df.insert(added, name, urllib.parse.unquote(value))
                added += 1
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no Parquet files under {folder}")
    return pd.concat(frames, ignore_index=True)


def read_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any], list[str] | None]:
    """(table, provenance, AnnData var_names or None) from any supported format (by content)."""
    path = Path(path)
    kind = table_format(path)
    hint = "check the file (Parquet, CSV/TSV, h5ad or zarr)"
    with reading(path, {"parquet_dir": "Parquet folder"}.get(kind, f"{kind} file"), hint):
        if kind == "parquet":
            df = pd.read_parquet(path)
        elif kind == "parquet_dir":
            df = read_parquet_parts(path)
        elif kind == "csv":
            df = _read_csv(path)
        else:
            import anndata as ad

            return anndata_frame(ad.read_h5ad(path) if kind == "h5ad" else ad.read_zarr(path))
    for c in df.columns:  # partition columns read by pandas come back as categoricals
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df, {}, None


def anndata_frame(adata: Any) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """(obs + X as one table with var_names as feature columns, uns, var_names) of an AnnData."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    var = [str(v) for v in adata.var_names]
    feats = pd.DataFrame(x.astype(np.float32, copy=False), columns=var)
    return pd.concat([adata.obs.reset_index(drop=True), feats], axis=1), dict(adata.uns), var


def _read_csv(path: Path) -> pd.DataFrame:
    import csv
    import gzip

    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    with (gzip.open(path, "rt", newline="") if gz else open(path, newline="")) as fh:
        header = fh.readline()
    if not header.strip():
        raise InputError(f"{path}: empty file (expected a Parquet, CSV/TSV, h5ad or zarr profile table)")
    try:
        sep = csv.Sniffer().sniff(header, delimiters=",\t;").delimiter
    except csv.Error:
        sep = ","
    return pd.read_csv(path, sep=sep, compression="gzip" if gz else None)
