"""Known-relationship recall of a map (EFAAR_benchmarking's ``multivariate_benchmark``, exact null).

For each relationship database: the cosine similarity of every known pair (normalised: sorted,
no self pairs, de-duplicated, both members in the map) is ranked against the null of ALL
distinct pairs of perturbations in the map. As in the reference's ``compute_recall``, a pair is
recalled at thresholds ``(lo, hi)`` when

    searchsorted(null, q, side="right") / len(null) <= lo   or
    searchsorted(null, q, side="left")  / len(null) >= hi

i.e. its similarity is at or below the ``lo`` quantile or at or above the ``hi`` quantile of the
null (two-tailed). Both tests reduce to one exact order statistic of the null each
(:mod:`cellmae.bench.null_quantiles`), computed once for all databases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cellmae.bench.null_quantiles import null_order_statistics, null_size, unit_rows

DEFAULT_THRESHOLDS: tuple[tuple[float, float], ...] = ((0.05, 0.95), (0.1, 0.9))


# recall.csv columns (EFAAR_benchmarking's ``compute_recall`` layout); readers import these names.
NULL_SIZE = "null_distribution_size"
QUERY_SIZE = "query_distribution_size"
SOURCE = "source"
RECALL_PREFIX = "recall_"


def recall_column(lo: float, hi: float) -> str:
    """Column name of recall at thresholds (lo, hi), as the reference writes it."""
    return f"{RECALL_PREFIX}{float(lo)}_{float(hi)}"


def recall_columns(thresholds: Sequence[tuple[float, float]] = DEFAULT_THRESHOLDS) -> list[str]:
    """The columns of a recall table at these threshold pairs, in order."""
    return [NULL_SIZE, QUERY_SIZE, *[recall_column(lo, hi) for lo, hi in thresholds], SOURCE]


def recall_value_columns(columns) -> list[str]:
    """The recall columns (``recall_<lo>_<hi>``) of a recall table, in the table's order (strictest first)."""
    return [c for c in columns if str(c).startswith(RECALL_PREFIX)]


def _largest_rank_at_or_below(fraction: float, n: int) -> int:
    """Largest k in [-1, n] with k / n <= fraction (float64 division, as the reference's ranks)."""
    k = min(max(int(np.floor(fraction * n)), -1), n)
    while k + 1 <= n and (k + 1) / n <= fraction:
        k += 1
    while k >= 0 and k / n > fraction:
        k -= 1
    return k


def _smallest_rank_at_or_above(fraction: float, n: int) -> int:
    """Smallest k in [0, n + 1] with k / n >= fraction (n + 1 means none)."""
    k = min(max(int(np.ceil(fraction * n)), 0), n + 1)
    while k - 1 >= 0 and (k - 1) / n >= fraction:
        k -= 1
    while k <= n and k / n < fraction:
        k += 1
    return k


def _normalized_pair_indices(df: pd.DataFrame, index: pd.Index, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the normalised known pairs (as :func:`normalize_pairs`), via integer codes.

    With unique labels, "sorted, no self pairs, de-duplicated, both in the map" on strings is the
    same set as on (min, max) of row indices, and hashing integers is much cheaper than strings.
    """
    missing = [c for c in ("entity1", "entity2") if c not in df.columns]
    if missing:
        raise ValueError(f"relationships {source!r} lack column(s) {missing}; have {list(df.columns)}")
    a = index.get_indexer(df["entity1"].astype(str))
    b = index.get_indexer(df["entity2"].astype(str))
    keep = (a >= 0) & (b >= 0) & (a != b)
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    code = np.unique(lo.astype(np.int64) * len(index) + hi)
    return code // len(index), code % len(index)


def known_relationship_recall(
    features: np.ndarray,
    labels: Sequence[str],
    relationships: Mapping[str, pd.DataFrame],
    thresholds: Sequence[tuple[float, float]] = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """Recall of known relationships per source.

    ``features``: (N, D) aggregated embeddings, one row per perturbation; ``labels``: the N
    perturbation names (unique); ``relationships``: ``{source: DataFrame(entity1, entity2)}``
    (raw; normalised here). Returns one row per source with columns ``null_distribution_size,
    query_distribution_size, recall_<lo>_<hi> ..., source`` (the layout of EFAAR_benchmarking's
    ``compute_recall``). A source with no known pair in the map gets NaN recalls.
    """
    labels = [str(x) for x in labels]
    feats = np.asarray(features)
    if feats.ndim != 2 or feats.shape[0] != len(labels):
        raise ValueError(f"features of shape {feats.shape} do not match {len(labels)} labels")
    if len(labels) < 2:
        raise ValueError(f"need at least 2 perturbations for a null distribution, got {len(labels)}")
    if len(set(labels)) != len(labels):
        dup = pd.Series(labels)[pd.Series(labels).duplicated()].iloc[0]
        raise ValueError(f"duplicated perturbation label {dup!r}: aggregate to one row per perturbation first")
    pairs_thr = []
    for pair in thresholds:
        lo, hi = float(np.min(pair)), float(np.max(pair))
        if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
            raise ValueError(f"recall thresholds must lie in [0, 1], got {pair}")
        pairs_thr.append((lo, hi))

    unit = unit_rows(feats)
    n = null_size(len(labels))
    # Per threshold: q is low-recalled iff q < null[k_lo]; high-recalled iff q > null[k_hi - 1].
    plan = [(lo, hi, _largest_rank_at_or_below(lo, n), _smallest_rank_at_or_above(hi, n)) for lo, hi in pairs_thr]
    wanted = {k_lo for _, _, k_lo, _ in plan if 0 <= k_lo < n} | {k_hi - 1 for *_, k_hi in plan if 1 <= k_hi <= n}
    order_stats = null_order_statistics(unit, sorted(wanted))

    index = pd.Index(labels)
    rows = []
    for source, df in relationships.items():
        i1, i2 = _normalized_pair_indices(df, index, source)
        query = np.einsum("ij,ij->i", unit[i1], unit[i2])
        row: dict[str, object] = {NULL_SIZE: n, QUERY_SIZE: len(query)}
        for lo, hi, k_lo, k_hi in plan:
            if k_lo < 0:
                low = np.zeros(len(query), bool)
            elif k_lo >= n:
                low = np.ones(len(query), bool)
            else:
                low = query < order_stats[k_lo]
            if k_hi == 0:
                high = np.ones(len(query), bool)
            elif k_hi > n:
                high = np.zeros(len(query), bool)
            else:
                high = query > order_stats[k_hi - 1]
            hits = int(np.count_nonzero(low | high))
            row[recall_column(lo, hi)] = hits / len(query) if len(query) else float("nan")
        row[SOURCE] = source
        rows.append(row)
    return pd.DataFrame(rows, columns=recall_columns(pairs_thr))
