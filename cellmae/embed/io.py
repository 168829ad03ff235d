"""Read embeddings back (one table from a block's per-plate parts, after checking the run is complete)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cellmae.data.profiles import Profiles
from cellmae.data.schema import SITE, WELL_KEYS, feature_columns
from cellmae.data.tables import PARTITION_COLUMNS, parquet_parts, read_parquet_parts, read_table
from cellmae.embed.writer import CONFIG_FILE, EMBED_KIND, PROGRESS_DIR
from cellmae.utils.errors import InputError
from cellmae.utils.manifest import MANIFEST_FILE, read_manifest

_PLATE_GLOB = "/".join(f"{c}=*" for c in PARTITION_COLUMNS)  # Metadata_Experiment=*/Metadata_Plate=*


def embedding_files(path: str | Path) -> list[Path]:
    """The Parquet parts under ``path`` (a block folder or a single file), skipping temporaries."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"embeddings folder {path} does not exist")
    files = parquet_parts(path)
    if not files:
        raise FileNotFoundError(f"no Parquet files under {path} (expected <block>/{_PLATE_GLOB}/part-*.parquet)")
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
        blocks = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.startswith("block"))
        raise InputError(f"{path} is a whole embed output; pass one of its block folders "
                         f"({', '.join(str(path / b) for b in blocks) or 'none finished yet'})")
    if next(path.glob("plate=*"), None) is not None:
        raise InputError(f"{path}: embeddings in the folder layout of an older cellmae (plate=<id>); rerun "
                         f"`{cmd} --overwrite` (or map your own copy: move the block's parts out of {root})")
    manifest = read_manifest(root, EMBED_KIND, rerun=cmd)
    rel = path.relative_to(root).as_posix()
    listed = {v if not rel.startswith("sites/") else f"sites/{v}" for v in manifest.get("blocks", {}).values()}
    if rel.startswith("sites/") and "site" not in manifest.get("levels", []):
        listed = set()
    if rel not in listed:
        raise InputError(f"{path}: {rel} is not a complete block of this embed output ({root / MANIFEST_FILE} "
                         f"lists {sorted(listed) or 'none'}); {rerun}")
    want = {str(e.get("plate")) for e in manifest.get("plates", [])}
    have = {p.relative_to(path).as_posix() for p in path.glob(_PLATE_GLOB) if p.is_dir()}
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

    Reads the part files directly (the ``Metadata_Experiment`` / ``Metadata_Plate`` partition
    folders give back those columns, nothing else is added), checks that every part has the same
    feature columns, and sorts by experiment, plate, well (and site) so the row
    order does not depend on how plates were split across ranks. A block of a ``cellmae embed``
    output is read only when its run is complete (``check``: see :func:`check_complete_block`).
    """
    if check:
        check_complete_block(path)
    path = Path(path)
    files = embedding_files(path)
    frames = [read_parquet_parts(path.parent if path.is_file() else path, [f]) for f in files]
    cols = feature_columns(frames[0])
    for f, df in zip(files, frames, strict=True):
        if feature_columns(df) != cols:
            raise ValueError(f"{f}: feature columns differ from {files[0]} ({len(feature_columns(df))} vs {len(cols)})")
    df = pd.concat(frames, ignore_index=True)
    keys = [k for k in (*WELL_KEYS, SITE) if k in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def provenance(path: str | Path) -> dict:
    """What made the embeddings of a block folder: model, block, pooling, ... (``embed_config.json``),
    and the cellmae version (its manifest); empty for a user's own embeddings."""
    import json

    from cellmae import __version__
    from cellmae.layout import parse_block_name

    root = embed_root_of(path)
    if root is None:
        return {}
    config = json.loads((root / CONFIG_FILE).read_text()) if (root / CONFIG_FILE).is_file() else {}
    source = config.get("source") if isinstance(config.get("source"), dict) else {}
    # The full settings as JSON text: h5ad cannot store every nested value (lists of dicts, None).
    out = {"model": source.get("name"), "block": parse_block_name(Path(path).name), "pool": config.get("pool"),
           "embed_config": json.dumps(config, sort_keys=True), "cellmae_version": __version__}
    manifest = root / MANIFEST_FILE
    if manifest.is_file():
        out["cellmae_version"] = json.loads(manifest.read_text()).get("cellmae_version", __version__)
    return out


def read_embedding_profiles(path: str | Path, **kwargs) -> Profiles:
    """A block folder of ``cellmae embed`` (checked complete) or any profile table (Parquet, CSV,
    h5ad, zarr: see :meth:`Profiles.read`) as :class:`Profiles`; ``kwargs`` as ``Profiles.from_frame``."""
    path = Path(path)
    if embed_root_of(path) is not None and path.is_dir():
        return Profiles.from_frame(read_embeddings(path), source=path, provenance=provenance(path), **kwargs)
    frame, prov, var_names = read_table(path)
    keys = [k for k in (*WELL_KEYS, SITE) if k in frame.columns]
    if keys:  # the same row order as an embed block, whatever order the user's table has
        frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    if kwargs.get("features") is None and var_names is not None:
        kwargs["features"] = var_names
    return Profiles.from_frame(frame, source=path, provenance=prov, **kwargs)


def write_anndata(path: str | Path, out: str | Path, *, feature_names: list[str] | None = None) -> Path:
    """Write a block's embeddings as ``.h5ad`` atomically: obs = metadata with well ids as
    ``obs_names``, X = float32 features, var ``name`` = the model's feature names, uns = provenance."""
    from cellmae.utils.atomic import atomic_path

    table = read_embedding_profiles(path, finite=False)
    adata = table.to_anndata()
    if feature_names is not None and len(feature_names) == adata.n_vars:
        adata.var["name"] = feature_names
    out = Path(out)
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return out
