"""The JSON summary of one benchmarked map: the headline numbers ``cellmae report`` reads.

Layout (every number a float/int, absent results ``null``, with the reason under ``skipped``)::

    {"schema": 1, "map_dir": ..., "n_wells": ..., "n_perturbations": ...,
     "inputs": {"relationships": [...], "truth_compounds", "embed_dir", "seed"},
     "recall": {"<source>": {"recall_0.05_0.95": r, "recall_0.1_0.9": r, "n_pairs": q}, ...},
     "consistency": {"n_perturbations", "fraction_p_le_0.05", "median_mean_cosine"},
     "map": {"activity": {"n", "fraction_significant", "mean_map"}, "consistency": {...}},
     "compound_gene": {"n_compounds", "mean_ap", "mean_auc", "random_mean_ap", "random_mean_auc"},
     "batch": {"before": {"accuracy", "balanced_accuracy", "chance", "n_batches"}, "after": {...}},
     "skipped": {"<benchmark>": "<why>"}}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cellmae import layout
from cellmae.utils.atomic import write_text_atomic

SUMMARY_FILE = layout.BENCH_SUMMARY_FILE
BENCH_KIND = "bench"  # the manifest kind of a `cellmae bench` output folder
SCHEMA_VERSION = 1


def recall_summary(table: pd.DataFrame) -> dict:
    """``{source: {recall_<lo>_<hi>: value, ..., n_pairs: q}}`` from the recall table."""
    from cellmae.bench.recall import QUERY_SIZE, SOURCE, recall_value_columns

    cols = recall_value_columns(table.columns)
    out = {}
    for _, r in table.iterrows():
        out[str(r[SOURCE])] = {**{c: r[c] for c in cols}, "n_pairs": int(r[QUERY_SIZE])}
    return out


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(summary: dict, out_dir: str | Path) -> Path:
    """Write ``summary.json`` atomically (strict JSON: no NaN)."""
    text = json.dumps(_clean(summary), indent=2, sort_keys=False, allow_nan=False)
    return write_text_atomic(Path(out_dir) / SUMMARY_FILE, text + "\n")


def read_summary(path: str | Path) -> dict:
    """Read a ``summary.json`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    return json.loads(path.read_text())
