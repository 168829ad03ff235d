"""Reading what the benchmarks consume: map tables, functional groups and compound targets.

A map directory (``cellmae map`` output) holds ``aligned.parquet`` (one row per well) and
``aggregated.parquet`` (one row per perturbation, or perturbation x concentration for compounds).
Functional groups come from a gene -> group table (the simulator's ``truth/genes.csv``) or a
CORUM-style cluster file (complex name, a tab, space-separated genes). Compound targets come from
a table with ``compound`` and ``target_gene`` columns (the simulator's ``truth/compounds.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae import layout
from cellmae.data.schema import (
    CONCENTRATION,
    EXPERIMENT,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    SchemaError,
    feature_columns,
)
from cellmae.utils.errors import InputError, reading
from cellmae.utils.manifest import read_manifest

ALIGNED_FILE = layout.MAP_ALIGNED_FILE
AGGREGATED_FILE = layout.MAP_AGGREGATED_FILE
COMPOUND = "COMPOUND"

_GENE_COLUMNS = ("gene", "entity", "symbol", PERTURBATION)
_GROUP_COLUMNS = ("group", "complex", "cluster", "pathway")
_TARGET_COLUMNS = ("target_gene", "target", "targets", "gene", "gene_symbol")
_ACTIVITY_COLUMNS = ("activity_nM", "nM_value", "nm")  # RxRx3-core's truth table names it nM_value
_COMPOUND_COLUMNS = ("compound", "treatment", PERTURBATION)


@dataclass(frozen=True)
class Profiles:
    """Metadata rows and their float32 feature matrix, aligned by position."""

    meta: pd.DataFrame
    features: np.ndarray

    def subset(self, mask: np.ndarray) -> Profiles:
        mask = np.asarray(mask)
        return Profiles(self.meta.loc[mask].reset_index(drop=True), self.features[mask])

    def __len__(self) -> int:
        return len(self.meta)


def profiles_from_frame(df: pd.DataFrame, *, source: str | Path = "<table>") -> Profiles:
    """Split an embedding table into metadata and a finite float32 feature matrix."""
    feats = feature_columns(df)
    if not feats:
        raise SchemaError(f"{source}: no feature_ columns; have {list(df.columns)[:10]}...")
    missing = [c for c in (PERTURBATION,) if c not in df.columns]
    if missing:
        raise SchemaError(f"{source}: missing required column(s) {missing}")
    x = df[feats].to_numpy(dtype=np.float32, copy=True)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SchemaError(f"{source}: row {row + 1} has non-finite feature values")
    meta = df[[c for c in df.columns if c not in set(feats)]].reset_index(drop=True)
    if IS_CONTROL not in meta.columns:
        meta[IS_CONTROL] = False
    meta[IS_CONTROL] = meta[IS_CONTROL].astype(bool)
    if PERTURBATION_TYPE not in meta.columns:
        meta[PERTURBATION_TYPE] = "UNKNOWN"
    meta[PERTURBATION] = meta[PERTURBATION].astype(str)
    return Profiles(meta, x)


def read_profiles(path: str | Path) -> Profiles:
    """Read a Parquet file or a partitioned Parquet directory as :class:`Profiles`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    with reading(path, "Parquet table", "rewrite it (rerun the stage that made it) or remove it"):
        df = pd.read_parquet(path)
    # Partition columns (plate=<id>) come back as categoricals; the rest of bench expects plain values.
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return profiles_from_frame(df, source=path)


def check_map_dir(map_dir: str | Path) -> dict:
    """The manifest of a complete ``cellmae map`` folder; an InputError naming what is wrong otherwise.

    The tables of a map are only meaningful together: a folder without a matching manifest may
    hold a new aligned table beside an old aggregated one. Checksums are compared too (map tables
    are small next to embeddings, and a same-sized replacement must not pass).
    """
    from cellmae.map.io import MAP_KIND

    map_dir = Path(map_dir)
    manifest = read_manifest(map_dir, MAP_KIND, rerun=f"cellmae map EMBED_BLOCK --out {map_dir}", deep=True)
    missing = [f for f in (ALIGNED_FILE, AGGREGATED_FILE) if f not in manifest.get("files", {})]
    if missing:
        raise InputError(f"{map_dir}: the manifest lists no {missing} (expected the output of `cellmae map`)")
    return manifest


def read_map_dir(map_dir: str | Path) -> tuple[Profiles, Profiles]:
    """(aligned wells, aggregated perturbations) from a complete ``cellmae map`` output directory."""
    map_dir = Path(map_dir)
    check_map_dir(map_dir)
    return read_profiles(map_dir / ALIGNED_FILE), read_profiles(map_dir / AGGREGATED_FILE)


def perturbation_keys(meta: pd.DataFrame) -> pd.Series:
    """One string key per row: the perturbation, plus ``@concentration`` for compounds with a dose."""
    key = meta[PERTURBATION].astype(str)
    if CONCENTRATION in meta.columns:
        conc = pd.to_numeric(meta[CONCENTRATION], errors="coerce")
        has = conc.notna().to_numpy()
        if has.any():
            key = key.where(~has, key + "@" + conc.map(lambda v: f"{v:g}"))
    return key.rename("perturbation_key")


def is_compound(meta: pd.DataFrame) -> np.ndarray:
    return (meta[PERTURBATION_TYPE].astype(str).str.upper() == COMPOUND).to_numpy()


def batch_labels(meta: pd.DataFrame, column: str = EXPERIMENT) -> pd.Series:
    if column not in meta.columns:
        raise SchemaError(f"batch column {column!r} not in metadata columns {list(meta.columns)}")
    return meta[column].astype(str)


def _pick(columns: list[str], candidates: tuple[str, ...], *, what: str, source: Path) -> str:
    lowered = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    raise SchemaError(f"{source}: no {what} column (looked for {list(candidates)}); have {columns}")


def read_groups(path: str | Path) -> pd.DataFrame:
    """Gene -> functional group table (columns ``gene``, ``group``), one row per membership.

    Accepts a CSV/TSV with a gene column (gene/entity/symbol/Metadata_Perturbation) and a group
    column (group/complex/cluster/pathway), or a CORUM-style headerless cluster file:
    ``complex name<TAB>GENE1 GENE2 ...`` per line. Genes may belong to several groups; rows with an
    empty group are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: group file not found")
    first = path.read_text().splitlines()[:1]
    if first and first[0].count("\t") == 1 and " " in first[0].split("\t")[1].strip():
        rows = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, members = line.partition("\t")
            if not sep:
                raise SchemaError(f"{path}: line {lineno} has no tab between complex name and genes")
            rows.extend((g, name.strip()) for g in members.split())
        out = pd.DataFrame(rows, columns=["gene", "group"])
    else:
        df = pd.read_csv(path, sep=None, engine="python")
        gcol = _pick(list(df.columns), _GENE_COLUMNS, what="gene", source=path)
        kcol = _pick(list(df.columns), _GROUP_COLUMNS, what="group", source=path)
        out = df[[gcol, kcol]].rename(columns={gcol: "gene", kcol: "group"})
    out = out.dropna()
    out["gene"] = out["gene"].astype(str)
    out["group"] = out["group"].astype(str)
    out = out[(out["group"].str.strip() != "") & (out["group"].str.lower() != "none")]
    return out.drop_duplicates().reset_index(drop=True)


def find_group_file(source: str | Path | None) -> Path | None:
    """A functional-group file next to relationship files: ``genes.csv`` with a group column, or ``*_clusters.tsv``."""
    if source is None:
        return None
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    genes = folder / layout.TRUTH_GENES_FILE
    if genes.is_file() and "group" in pd.read_csv(genes, nrows=0).columns:
        return genes
    clusters = sorted(folder.glob("*_clusters.tsv"))
    return clusters[0] if clusters else None


def read_compound_targets(path: str | Path) -> pd.DataFrame:
    """Compound -> target gene table (columns ``compound``, ``target_gene``, and ``activity_nM`` when the
    file has an activity column such as RxRx3-core's ``nM_value``), one row per pair.

    Several targets in one cell may be separated by ``|``, ``;`` or ``,``. Concentration columns
    are ignored (a compound's targets do not depend on dose).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: compound target file not found")
    df = pd.read_csv(path)
    ccol = _pick(list(df.columns), _COMPOUND_COLUMNS, what="compound", source=path)
    tcol = _pick([c for c in df.columns if c != ccol], _TARGET_COLUMNS, what="target gene", source=path)
    lowered = {c.lower(): c for c in df.columns}
    acol = next((lowered[a.lower()] for a in _ACTIVITY_COLUMNS if a.lower() in lowered), None)
    cols = [ccol, tcol] + ([acol] if acol else [])
    out = df[cols].dropna(subset=[ccol, tcol]).rename(columns={ccol: "compound", tcol: "target_gene", acol: "activity_nM"})
    if acol:
        out["activity_nM"] = pd.to_numeric(out["activity_nM"], errors="coerce")
        if out["activity_nM"].isna().any():
            raise ValueError(f"{path}: column {acol!r} has non-numeric or empty activity values; give nM numbers "
                             "or remove the column")
    out["target_gene"] = out["target_gene"].astype(str).str.split(r"[|;,]")
    out = out.explode("target_gene")
    out["compound"] = out["compound"].astype(str)
    out["target_gene"] = out["target_gene"].str.strip()
    out = out[out["target_gene"] != ""]
    return out.drop_duplicates().reset_index(drop=True)
