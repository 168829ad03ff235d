"""Reading what the benchmarks consume: map tables, functional groups and compound targets.

A map directory (``cellmae map`` output) holds ``aligned.parquet`` (one row per well) and
``aggregated.parquet`` (one row per perturbation, or perturbation x concentration for compounds).
Functional groups come from a gene -> group table (the simulator's ``truth/genes.csv``) or a
CORUM-style cluster file (complex name, a tab, space-separated genes). Compound targets come from
a table with ``compound`` and ``target_gene`` columns (the simulator's ``truth/compounds.csv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae import layout
from cellmae.data.profiles import COMPOUND, Profiles
from cellmae.data.schema import EXPERIMENT, PERTURBATION, PERTURBATION_TYPE, SchemaError
from cellmae.utils.errors import InputError
from cellmae.utils.manifest import read_manifest

ALIGNED_FILE = layout.MAP_ALIGNED_FILE
AGGREGATED_FILE = layout.MAP_AGGREGATED_FILE

_GENE_COLUMNS = ("gene", "entity", "symbol", PERTURBATION)
_GROUP_COLUMNS = ("group", "complex", "cluster", "pathway")
_TARGET_COLUMNS = ("target_gene", "target", "targets", "gene", "gene_symbol")
_ACTIVITY_COLUMNS = ("activity_nM", "nM_value", "nm")  # RxRx3-core's truth table names it nM_value
_COMPOUND_COLUMNS = ("compound", "treatment", PERTURBATION)


def profiles_from_frame(df: pd.DataFrame, *, source: str | Path = "<table>",
                        features: Sequence[str] | str | None = None) -> Profiles:
    """A table as bench reads it: :meth:`Profiles.from_frame` with finite features required."""
    return Profiles.from_frame(df, source=source, features=features)


def read_profiles(path: str | Path, features: Sequence[str] | str | None = None) -> Profiles:
    """Any profile table (Parquet file or folder, CSV/TSV, h5ad, zarr; by content) as :class:`Profiles`."""
    return Profiles.read(path, features=features)


def check_map_dir(map_dir: str | Path) -> dict:
    """The manifest of a complete ``cellmae map`` folder; an InputError naming what is wrong otherwise.

    The tables of a map are only meaningful together: a folder without a matching manifest may
    hold a new aligned table beside an old aggregated one. Checksums are compared too (map tables
    are small next to embeddings, and a same-sized replacement must not pass).
    """
    from cellmae.map.io import MAP_KIND

    map_dir = Path(map_dir)
    manifest = read_manifest(map_dir, MAP_KIND, rerun=f"cellmae map EMBED_BLOCK --out {map_dir}", deep=True)
    listed = set(manifest.get("files", {}))
    if not any(set(pair) <= listed for pair in layout.MAP_TABLE_FILES.values()):
        raise InputError(f"{map_dir}: the manifest lists no {list(layout.MAP_TABLE_FILES['parquet'])} (expected the "
                         "output of `cellmae map`)")
    return manifest


def read_map_dir(map_dir: str | Path, features: Sequence[str] | str | None = None) -> tuple[Profiles, Profiles]:
    """(aligned wells, aggregated perturbations) from a complete ``cellmae map`` output directory."""
    map_dir = Path(map_dir)
    check_map_dir(map_dir)
    aligned, aggregated = layout.map_table_files(map_dir)
    return read_profiles(aligned, features), read_profiles(aggregated, features)


def is_map_dir(path: str | Path) -> bool:
    """Whether ``path`` holds one map's tables (rather than block folders or a user's own table)."""
    return Path(path).is_dir() and layout.map_table_files(path) is not None


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


def read_perturbation_list(path: str | Path) -> list[str]:
    """Perturbation names, one per line (blank lines and ``#`` comments skipped), e.g. the unexpressed
    genes that EFAAR uses as negative-control perturbations."""
    path = Path(path)
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise InputError(f"{path}: no perturbation names (expected one name per line)")
    return names
