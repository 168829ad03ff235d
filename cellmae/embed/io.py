"""Read embeddings back (one table from a block's per-plate parts) and export them to AnnData."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data.schema import SITE, WELL_KEYS, feature_columns, metadata_columns
from cellmae.embed.writer import CONFIG_FILE, EMBED_KIND, PROGRESS_DIR
from cellmae.layout import block_dirs
from cellmae.utils.atomic import atomic_path
from cellmae.utils.errors import InputError, reading
from cellmae.utils.manifest import MANIFEST_FILE, read_manifest

_PLATE_PREFIX = "plate="


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


def embed_root_of(path: str | Path) -> Path | None:
    """The ``cellmae embed`` output folder holding block folder ``path``; None for other embeddings.

    A folder is an embed output when ``embed_config.json`` or ``_progress/`` sits beside its
    blocks (``OUT/block06`` or ``OUT/sites/block06``); a user's own Parquet files have neither.
    """
    path = Path(path)
    if path.is_file():
        return None
    for root in (path, path.parent, path.parent.parent):
        if (root / CONFIG_FILE).is_file() or (root / PROGRESS_DIR).is_dir():
            return root
    return None


def check_complete_block(path: str | Path) -> dict | None:
    """Refuse a block folder of an unfinished, mixed or changed ``cellmae embed`` run.

    Returns the embed manifest (None for a user's own embeddings, which are read as they are).
    The manifest must list this block, the plates present must be the plates it lists, and every
    part must have the size it records; each refusal names the folder and the command to rerun.
    """
    path = Path(path)
    root = embed_root_of(path)
    if root is None:
        return None
    cmd = f"cellmae embed SCREEN --model MODEL --out {root}"
    rerun = f"rerun `{cmd}` with the same settings (finished plates are kept)"
    if root == path:
        blocks = [p.name for p in block_dirs(path).values()]
        raise InputError(f"{path} is a whole embed output; pass one of its block folders "
                         f"({', '.join(str(path / b) for b in blocks) or 'none finished yet'})")
    manifest = read_manifest(root, EMBED_KIND, rerun=cmd)
    rel = path.relative_to(root).as_posix()
    listed = {v if not rel.startswith("sites/") else f"sites/{v}" for v in manifest.get("blocks", {}).values()}
    if rel.startswith("sites/") and "site" not in manifest.get("levels", []):
        listed = set()
    if rel not in listed:
        raise InputError(f"{path}: {rel} is not a complete block of this embed output ({root / MANIFEST_FILE} "
                         f"lists {sorted(listed) or 'none'}); {rerun}")
    want = {str(e.get("plate")) for e in manifest.get("plates", [])}
    have = {p.name[len(_PLATE_PREFIX):] for p in path.iterdir() if p.is_dir() and p.name.startswith(_PLATE_PREFIX)}
    if want != have:
        extra, missing = sorted(have - want), sorted(want - have)
        what = "; ".join(s for s in (f"plates not in the manifest: {', '.join(extra)}" if extra else "",
                                     f"plates missing: {', '.join(missing)}" if missing else "") if s)
        raise InputError(f"{path}: the plates do not match {root / MANIFEST_FILE} ({what}); a run with another "
                         f"screen wrote here or one is still writing: {rerun}")
    files = set(manifest.get("files", {}))
    stray = [f for f in embedding_files(path) if f.relative_to(root).as_posix() not in files]
    if stray:
        raise InputError(f"{stray[0]}: not listed in {root / MANIFEST_FILE}, so not part of this embed output; "
                         f"remove it or {rerun}")
    return manifest


def read_embeddings(path: str | Path, *, check: bool = True) -> pd.DataFrame:
    """One DataFrame (metadata + float32 ``feature_`` columns) from a block folder, sorted by well.

    Reads the part files directly (no hive partition column is added), checks that every part
    has the same feature columns, and sorts by experiment, plate, well (and site) so the row
    order does not depend on how plates were split across ranks. A block of a ``cellmae embed``
    output is read only when its run is complete (``check``: see :func:`check_complete_block`).
    """
    if check:
        check_complete_block(path)
    files = embedding_files(path)
    frames = []
    for f in files:
        with reading(f, "Parquet file", "rewrite it (rerun the stage that made it) or remove it"):
            frames.append(pd.read_parquet(f))
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
