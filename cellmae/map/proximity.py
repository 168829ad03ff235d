"""Proximity-bias correction by chromosome arm (Lazar et al., Nat. Genet. 2024; applied before
whole-genome evaluation in the RxRx3 / ViTally pipelines).

CRISPR-Cas9 cuts cause chromosome-arm-scale truncations, so knockouts of genes on the same arm look
alike whatever their function. The correction centres gene profiles per arm: from each gene's
aggregated profile subtract the mean profile of the map's genes on the same chromosome arm. Arms
with fewer than ``min_genes`` genes in the map are left unchanged (their own mean would be mostly the
gene itself), and so are genes the arm table does not name.

The gene -> arm table is a CSV/TSV (optionally gzipped) with a gene column (``gene`` or ``symbol``)
and either an arm column (``chromosome_arm`` / ``arm``, e.g. ``17q``) or a cytogenetic ``location``
column (``17q21.31``), as in the HGNC complete set (genenames.org, CC0); or ``builtin``: the table
shipped in cellmae/map/resources (NCBI Gene map locations; sources and licence in ATTRIBUTION.txt
there, rebuilt by cellmae/map/build_arm_table.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

BUILTIN = "builtin"  # --arm-correction builtin: the bundled table
ARM_TABLE_RESOURCE = "gene_arms.tsv.gz"  # in cellmae/map/resources (build_arm_table.py writes it)
_GENE_COLUMNS = ("gene", "symbol", "gene_symbol")
_ARM_COLUMNS = ("chromosome_arm", "arm")
_LOCATION_COLUMNS = ("location", "cytoband", "map_location")
_LOCATION_RE = re.compile(r"^\s*(?:chr)?(\d{1,2}|X|Y)\s*([pq])", re.IGNORECASE)
_RANGE_END_RE = re.compile(r"-\s*(?:\d{1,2}|X|Y)?\s*([pq])", re.IGNORECASE)  # the far end of 12p13.2-q24.1


def arm_of_location(location: str) -> str | None:
    """``'17q21.31'`` -> ``'17q'``; None when the location names no arm (``'mitochondria'``, ``'reserved'``)
    or a range across the centromere (``'12p13.2-q24.1'``)."""
    m = _LOCATION_RE.match(str(location))
    if m is None:
        return None
    other = _RANGE_END_RE.search(str(location), m.end())
    if other is not None and other.group(1).lower() != m.group(2).lower():
        return None
    chrom = m.group(1).upper().lstrip("0") or "0"
    return f"{chrom}{m.group(2).lower()}"


def read_arm_table(path: str | Path) -> pd.Series:
    """Gene symbol -> chromosome arm from a CSV/TSV (see the module docstring); genes without an arm are dropped."""
    if str(path) == BUILTIN:
        path = builtin_arm_table()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--arm-correction {path}: no such file; give a gene -> chromosome arm table (CSV/TSV) "
                         f"or '{BUILTIN}'")
    suffixes = [s.lower() for s in path.suffixes]
    sep = "\t" if {".tsv", ".txt"} & set(suffixes[-2:]) else ","
    df = pd.read_csv(path, sep=sep, dtype=str)  # pandas infers gzip from the .gz suffix
    lowered = {c.lower(): c for c in df.columns}

    def pick(names: Sequence[str]) -> str | None:
        return next((lowered[n] for n in names if n in lowered), None)

    gcol, acol, lcol = pick(_GENE_COLUMNS), pick(_ARM_COLUMNS), pick(_LOCATION_COLUMNS)
    if gcol is None or (acol is None and lcol is None):
        raise ValueError(f"--arm-correction {path}: needs a gene column ({' / '.join(_GENE_COLUMNS)}) and a "
                         f"{' / '.join(_ARM_COLUMNS)} or {' / '.join(_LOCATION_COLUMNS)} column; has {list(df.columns)}")
    source = df[acol] if acol is not None else df[lcol]
    arms = source.map(lambda v: arm_of_location(v) if isinstance(v, str) else None)
    out = pd.Series(arms.to_numpy(), index=df[gcol].astype(str).str.strip()).dropna()
    out = out[~out.index.duplicated(keep="first")]
    if out.empty:
        raise ValueError(f"--arm-correction {path}: no gene has a readable chromosome arm (expected e.g. 17q or 17q21.31)")
    return out


def builtin_arm_table() -> Path:
    """Path of the bundled gene -> arm table (gene, arm; NCBI Gene map locations, see resources/ATTRIBUTION.txt)."""
    from importlib import resources

    return Path(str(resources.files("cellmae.map") / "resources" / ARM_TABLE_RESOURCE))


def arm_center(features: np.ndarray, genes: Sequence[str], arm_of: pd.Series, *,
               min_genes: int = 2) -> tuple[np.ndarray, dict]:
    """Subtract from each gene row the mean of the rows on the same arm; returns (features, report).

    ``features``: one row per gene profile (float); ``genes``: their symbols. Rows whose gene has no
    arm, or whose arm has fewer than ``min_genes`` rows, are returned unchanged.
    """
    x = np.asarray(features, dtype=np.float64)
    names = np.asarray([str(g) for g in genes])
    if x.ndim != 2 or len(x) != len(names):
        raise ValueError(f"arm correction: {len(names)} gene names for features of shape {x.shape}")
    arms = pd.Series(names).map(arm_of).to_numpy(dtype=object)
    out = x.copy()
    corrected, small = 0, 0
    for arm in pd.unique(arms[pd.notna(arms)]):
        rows = np.flatnonzero(arms == arm)
        if len(rows) < min_genes:
            small += 1
            continue
        out[rows] -= x[rows].mean(axis=0)
        corrected += len(rows)
    report = {"genes": int(len(names)), "genes_corrected": corrected,
              "genes_without_arm": int(pd.isna(arms).sum()), "arms": int(len(pd.unique(arms[pd.notna(arms)]))),
              "arms_too_small": small, "min_genes": min_genes}
    return out.astype(np.float32), report
