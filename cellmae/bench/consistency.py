"""Replicate consistency: do a perturbation's replicate wells point the same way?

Per perturbation (x concentration for compounds), the mean pairwise cosine similarity among its
well-level replicates, with an empirical p-value against random sets of the same size drawn from
the wells of the screen or from control wells, or (EFAAR_benchmarking's
``pert_signal_consistency_benchmark``) against the scores of negative-control perturbations such as
unexpressed genes. Hand-written because no library computes it; vectorised through the identity
``mean_{i<j} cos(x_i, x_j) = (||sum_i u_i||^2 - k) / (k (k - 1))`` for unit vectors ``u_i``, so a
set's score costs one sum of k rows, and a null of thousands of sets is one gather + one sum.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from cellmae.data.profiles import Profiles, perturbation_key
from cellmae.data.schema import CONCENTRATION, IS_CONTROL, PERTURBATION, PERTURBATION_TYPE

NULL_FROM = ("other", "controls", "negative-controls")
# consistency.csv columns that readers (the report) use
MEAN_COSINE = "mean_cosine"
NULL_MEAN = "null_mean"
P_VALUE = "p_value"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float64 for stable sums."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def mean_pairwise_cosine(x: np.ndarray) -> float:
    """Mean cosine similarity over the distinct pairs of rows of ``x`` (at least 2 rows)."""
    u = unit_rows(x)
    k = len(u)
    if k < 2:
        raise ValueError(f"need at least 2 replicates for a pairwise cosine, got {k}")
    s = u.sum(axis=0)
    return float((s @ s - (u * u).sum()) / (k * (k - 1)))


def _set_scores(u: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine of each row-set ``u[idx[r]]`` (idx: (n_sets, k))."""
    k = idx.shape[1]
    s = u[idx].sum(axis=1)
    self_terms = (u * u).sum(axis=1)[idx].sum(axis=1)  # k for unit rows, fewer when a row is zero
    return (np.einsum("ij,ij->i", s, s) - self_terms) / (k * (k - 1))


def null_scores(u: np.ndarray, pool: np.ndarray, k: int, n_sets: int, rng: np.random.Generator,
                *, chunk: int = 4096) -> np.ndarray:
    """Scores of ``n_sets`` random sets of ``k`` distinct wells drawn from ``pool`` (indices into u)."""
    if len(pool) < k:
        raise ValueError(f"null pool has {len(pool)} wells, fewer than the replicate set size {k}")
    out = np.empty(n_sets)
    for start in range(0, n_sets, chunk):
        m = min(chunk, n_sets - start)
        # Sampling with replacement then redrawing the (rare) sets that repeat a well is exact
        # sampling without replacement and avoids an (m x pool) permutation per chunk.
        idx = rng.integers(0, len(pool), size=(m, k))
        while True:
            srt = np.sort(idx, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
            if not dup.any():
                break
            idx[dup] = rng.integers(0, len(pool), size=(int(dup.sum()), k))
        out[start:start + m] = _set_scores(u, pool[idx])
    return out


def replicate_consistency(
    profiles: Profiles,
    *,
    n_null: int = 2000,
    null_from: str = "other",
    max_replicates: int | None = None,
    negative_controls: Collection[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-perturbation replicate consistency with empirical p-values.

    ``profiles`` are well-level (aligned) rows. Controls are never scored. ``null_from="other"``
    draws null sets from all non-control wells (a random set of wells is almost surely from
    different perturbations); ``"controls"`` draws from control wells. Perturbations with more
    than ``max_replicates`` wells are scored on all their wells, but their null uses sets of
    ``max_replicates`` (and their own score on a seeded subset of that size) to bound cost.
    p = (1 + #null >= score) / (1 + n_null).

    ``"negative-controls"`` is EFAAR's ``pert_signal_consistency_benchmark``: the null is the score of
    each perturbation named in ``negative_controls`` (e.g. unexpressed genes) with >= 2 wells, the
    other perturbations are scored on all their wells, p = 1 - #(null < score) / #null, and the
    negative controls themselves are not reported.

    Returns one row per perturbation key: perturbation, type, concentration, n_replicates,
    mean_cosine, null_mean, null_std, p_value, significant (p <= 0.05).
    """
    if null_from not in NULL_FROM:
        raise ValueError(f"null_from must be one of {NULL_FROM}, got {null_from!r}")
    if n_null < 1:
        raise ValueError(f"n_null must be >= 1, got {n_null}")
    if null_from == "negative-controls" and not negative_controls:
        raise ValueError("the negative-controls consistency null needs the negative-control perturbations "
                         "(--negative-controls FILE, e.g. unexpressed genes)")
    meta = profiles.meta
    u = unit_rows(profiles.features)
    control = meta[IS_CONTROL].to_numpy(bool)
    pool = np.flatnonzero(control if null_from == "controls" else ~control)
    treat = np.flatnonzero(~control)
    keys = perturbation_key(meta).to_numpy()[treat]
    # Wells sorted by key: every perturbation's replicates are one contiguous run, so set sums are
    # one np.add.reduceat over all perturbations at once.
    order = np.argsort(keys, kind="stable")
    wells, keys = treat[order], keys[order]
    uniq, starts, counts = np.unique(keys, return_index=True, return_counts=True)
    sums = np.add.reduceat(u[wells], starts, axis=0)
    self_terms = np.add.reduceat((u[wells] ** 2).sum(axis=1), starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (np.einsum("ij,ij->i", sums, sums) - self_terms) / (counts * (counts - 1.0))
    rng = np.random.default_rng(seed)
    if null_from == "negative-controls":
        names = meta[PERTURBATION].astype(str).to_numpy()[wells[starts]]
        negative = np.isin(names, np.asarray(sorted(map(str, negative_controls))))
        null = np.sort(score[negative & (counts >= 2)])
        if len(null) == 0:
            raise ValueError(f"none of the {len(negative_controls)} negative-control perturbations has >= 2 "
                             "non-control wells in the map; check the names against the map's perturbations")
        keep = (counts >= 2) & ~negative
        k = np.full(len(uniq), len(null))
        p_value = np.full(len(uniq), np.nan)
        p_value[keep] = 1.0 - np.searchsorted(null, score[keep], side="left") / len(null)
        null_mean, null_std = np.full(len(uniq), null.mean()), np.full(len(uniq), null.std())
        return _consistency_table(meta, wells, starts, uniq, counts, score, k, null_mean, null_std, p_value, keep,
                                  null_from)
    k = counts if max_replicates is None else np.minimum(counts, max_replicates)
    # Perturbations with more than max_replicates wells are tested on a seeded subset of that size.
    scored = score.copy()
    for i in np.flatnonzero(k < counts):
        sub = rng.choice(wells[starts[i]:starts[i] + counts[i]], k[i], replace=False)
        scored[i] = _set_scores(u, sub[None, :])[0]
    keep = (counts >= 2) & (k <= len(pool))
    p_value = np.full(len(uniq), np.nan)
    null_mean = np.full(len(uniq), np.nan)
    null_std = np.full(len(uniq), np.nan)
    for size in np.unique(k[keep]):
        null = np.sort(null_scores(u, pool, int(size), n_null, rng))
        sel = keep & (k == size)
        n_ge = len(null) - np.searchsorted(null, scored[sel], side="left")
        p_value[sel] = (1.0 + n_ge) / (1.0 + len(null))
        null_mean[sel], null_std[sel] = null.mean(), null.std()
    return _consistency_table(meta, wells, starts, uniq, counts, score, k, null_mean, null_std, p_value, keep, null_from)


def _consistency_table(meta, wells, starts, uniq, counts, score, k, null_mean, null_std, p_value, keep,
                       null_from: str) -> pd.DataFrame:
    """consistency.csv: one row per kept perturbation key."""
    first = wells[starts]
    out = pd.DataFrame({
        "perturbation_key": uniq,
        PERTURBATION: meta[PERTURBATION].to_numpy()[first],
        PERTURBATION_TYPE: meta[PERTURBATION_TYPE].to_numpy()[first],
        CONCENTRATION: meta[CONCENTRATION].to_numpy()[first] if CONCENTRATION in meta.columns else np.nan,
        "n_replicates": counts,
        MEAN_COSINE: score,
        "null_set_size": k,
        NULL_MEAN: null_mean,
        "null_std": null_std,
        P_VALUE: p_value,
    })[keep].reset_index(drop=True)
    out["significant"] = out[P_VALUE] <= 0.05
    out["null_from"] = null_from
    return out


def consistency_summary(table: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Headline numbers: how many perturbations were scored and the share with p <= alpha."""
    n = len(table)
    return {
        "n_perturbations": n,
        "fraction_p_le_0.05": float((table[P_VALUE] <= alpha).mean()) if n else None,
        "median_mean_cosine": float(table[MEAN_COSINE].median()) if n else None,
    }


# ------------------------------------------------------- distribution of cross-batch replicate similarities

REPLICATE_NULLS = ("random-pairs", "negative-controls")


def _pair_cosines(u: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", u[i], u[j])


def _cross_batch_pairs(groups: np.ndarray, batches: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, of ``rows`` with the same group and different batches."""
    order = rows[np.argsort(groups[rows], kind="stable")]
    g = groups[order]
    bounds = np.flatnonzero(g[1:] != g[:-1]) + 1
    left, right = [], []
    for run in np.split(order, bounds):
        if len(run) < 2:
            continue
        a, b = np.triu_indices(len(run), k=1)
        cross = batches[run[a]] != batches[run[b]]
        left.append(run[a][cross])
        right.append(run[b][cross])
    if not left:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(left), np.concatenate(right)


def _random_cross_batch_pairs(groups: np.ndarray, batches: np.ndarray, rows: np.ndarray, n: int,
                              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random pairs of ``rows`` from different groups and different batches (rejection sampling)."""
    left, right, have = [], [], 0
    for _ in range(1000):  # each round keeps most draws unless nearly all wells share a group or batch
        i = rows[rng.integers(0, len(rows), size=2 * (n - have))]
        j = rows[rng.integers(0, len(rows), size=len(i))]
        ok = (groups[i] != groups[j]) & (batches[i] != batches[j])
        left.append(i[ok])
        right.append(j[ok])
        have += int(ok.sum())
        if have >= n:
            return np.concatenate(left)[:n], np.concatenate(right)[:n]
    raise ValueError("could not draw null pairs of wells from different perturbations and batches")


def replicate_similarity_test(
    profiles: Profiles,
    *,
    batch_column: str,
    null: str = "random-pairs",
    n_null: int = 10000,
    negative_controls: Collection[str] | None = None,
    seed: int = 0,
) -> dict:
    """KS and Cramér–von Mises tests of cross-batch replicate similarities against a null.

    Query: the cosine of every pair of wells of one perturbation (x concentration) that lie in
    different batches, pooled over the non-control perturbations (ViTally Consistent's replicate
    consistency). Null: ``"random-pairs"`` draws ``n_null`` pairs of non-control wells from different
    perturbations and different batches; ``"negative-controls"`` uses the cross-batch pairs of
    control wells of the same control perturbation, or, when ``negative_controls`` names
    perturbations (EFAAR's negative-control perturbations, e.g. unexpressed genes), the cross-batch
    replicate pairs of those perturbations, which then leave the query (a seeded sample of
    ``n_null`` when there are more). Statistics are scipy's ``ks_2samp`` and
    ``cramervonmises_2samp`` (two-sided); ``mean_difference`` > 0 means replicates agree more than
    the null.
    """
    from scipy.stats import cramervonmises_2samp, ks_2samp

    if null not in REPLICATE_NULLS:
        raise ValueError(f"replicate null must be one of {REPLICATE_NULLS}, got {null!r}")
    if n_null < 2:
        raise ValueError(f"n_null must be >= 2, got {n_null}")
    meta = profiles.meta
    if batch_column not in meta.columns:
        raise ValueError(f"no {batch_column} column in the aligned table (the batch of each well)")
    u = unit_rows(profiles.features)
    batches = meta[batch_column].astype(str).to_numpy()
    keys = perturbation_key(meta).to_numpy()
    control = meta[IS_CONTROL].to_numpy(bool)
    negative = np.zeros(len(meta), bool)
    if null == "negative-controls" and negative_controls:
        negative = ~control & meta[PERTURBATION].astype(str).isin({str(n) for n in negative_controls}).to_numpy()
        if not negative.any():
            raise ValueError(f"none of the {len(negative_controls)} negative-control perturbations is in the map; "
                             "check the names against the map's perturbations")
    treated = np.flatnonzero(~control & ~negative)
    qi, qj = _cross_batch_pairs(keys, batches, treated)
    if len(qi) < 2:
        raise ValueError(f"fewer than 2 replicate pairs across batches ({batch_column}); the test needs "
                         "perturbations with wells in at least two batches")
    query = _pair_cosines(u, qi, qj)
    rng = np.random.default_rng(seed)
    if null == "random-pairs":
        ni, nj = _random_cross_batch_pairs(keys, batches, treated, n_null, rng)
    else:
        ni, nj = _cross_batch_pairs(keys, batches, np.flatnonzero(negative if negative.any() else control))
        if len(ni) < 2:
            which = "negative-control perturbation wells" if negative_controls else "control wells"
            raise ValueError(f"fewer than 2 pairs of {which} across batches ({batch_column}) for the "
                             "negative-control null; use the random-pairs null")
        if len(ni) > n_null:
            pick = np.sort(rng.choice(len(ni), n_null, replace=False))
            ni, nj = ni[pick], nj[pick]
    null_sims = _pair_cosines(u, ni, nj)
    ks = ks_2samp(query, null_sims)
    cvm = cramervonmises_2samp(query, null_sims)
    return {
        "null": null,
        "negative_controls": int(len(set(keys[negative]))),
        "batch_column": batch_column,
        "query_size": int(len(query)),
        "null_size": int(len(null_sims)),
        "query_mean": float(query.mean()),
        "null_mean": float(null_sims.mean()),
        "mean_difference": float(query.mean() - null_sims.mean()),
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(ks.pvalue),
        "cvm_statistic": float(cvm.statistic),
        "cvm_p_value": float(cvm.pvalue),
    }
