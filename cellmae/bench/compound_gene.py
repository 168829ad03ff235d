"""Compound–gene activity, the RxRx3-core benchmark: does a compound's profile find its known targets?

The protocol of the RxRx3-core benchmark (EFAAR_benchmarking ``compound_gene_benchmark``):

- Score: |cosine| between each compound x concentration profile and each gene profile (a knockout
  and an inhibitor may move cells the same way or, for activators, the opposite way).
- Per compound, positives are its targets with an activity at or below ``active_nM`` (1 µM);
  targets between ``active_nM`` and ``inactive_nM`` (10 µM) are a grey zone and left out; the
  negatives are ``max(2 x positives, min_negatives)`` genes drawn from the remaining pool.
  Without activity values (e.g. the simulator's truth) every listed pair is a positive.
- Results per concentration and for the maximum score over concentrations (``dose == "max"``);
  AP and ROC-AUC per compound, averaged over compounds (macro).
- Random baseline: the same candidate lists ranked by uniform random scores, ``n_random`` seeded
  draws; the z-score of a mean AP (or AUC) is its distance from the mean of the draws' macro means
  in units of their standard deviation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellmae.bench.consistency import unit_rows
from cellmae.bench.inputs import Profiles, is_compound
from cellmae.data.schema import CONCENTRATION, IS_CONTROL, PERTURBATION

REDUCE = ("max", "mean")
ACTIVE_NM = 1000.0
INACTIVE_NM = 10000.0
MIN_NEGATIVES = 20
N_RANDOM = 100
COLUMNS = ["compound", "dose", "concentration", "n_targets", "n_negatives", "average_precision", "roc_auc",
           "random_average_precision", "random_roc_auc"]


def _gene_matrix(genes: Profiles) -> tuple[np.ndarray, np.ndarray]:
    """(unique gene names, their unit profiles); duplicated names are averaged first."""
    names = genes.meta[PERTURBATION].astype(str).to_numpy()
    uniq, inv = np.unique(names, return_inverse=True)
    x = np.asarray(genes.features, dtype=np.float64)
    if len(uniq) != len(names):
        summed = np.zeros((len(uniq), x.shape[1]))
        np.add.at(summed, inv, x)
        x = summed / np.bincount(inv)[:, None]
    return uniq, unit_rows(x).astype(np.float32)


def compound_gene_scores(compounds: Profiles, genes: Profiles, *, reduce: str = "max") -> pd.DataFrame:
    """|cosine| between each compound (reduced over its concentrations) and each gene: compounds x genes."""
    if reduce not in REDUCE:
        raise ValueError(f"reduce must be one of {REDUCE}, got {reduce!r}")
    gene_names, ug = _gene_matrix(genes)
    uc = unit_rows(compounds.features).astype(np.float32)
    names = compounds.meta[PERTURBATION].astype(str).to_numpy()
    uniq = np.unique(names)
    out = np.empty((len(uniq), len(gene_names)), dtype=np.float32)
    for i, name in enumerate(uniq):
        sims = np.abs(uc[names == name] @ ug.T)
        out[i] = sims.max(axis=0) if reduce == "max" else sims.mean(axis=0)
    return pd.DataFrame(out, index=uniq, columns=gene_names)


def random_ranking_draws(y: np.ndarray, n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """AP and ROC-AUC of each of ``n_draws`` uniformly random rankings of labels ``y`` (1 = target).

    Vectorised over draws; without ties this is exactly sklearn's AP and AUC (tested).
    """
    y = np.asarray(y, dtype=np.float64)
    n_pos, n = y.sum(), len(y)
    order = np.argsort(rng.random((n_draws, n)), axis=1)
    rel = y[order]  # relevance in ranked order, best first
    hits = np.cumsum(rel, axis=1)
    ap = ((hits / np.arange(1, n + 1)) * rel).sum(axis=1) / n_pos
    neg_below = (n - n_pos) - (np.arange(1, n + 1) - hits)  # negatives ranked after each position
    auc = (neg_below * rel).sum(axis=1) / (n_pos * (n - n_pos))
    return ap, auc


def random_ranking_baseline(y: np.ndarray, n_draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """Mean AP and ROC-AUC of ``n_draws`` uniformly random rankings of labels ``y``."""
    ap, auc = random_ranking_draws(y, n_draws, rng)
    return float(ap.mean()), float(auc.mean())


def _row_draws(n_targets: int, n_negatives: int, n_random: int, seed: int, row: int) -> tuple[np.ndarray, np.ndarray]:
    # Seeded by (seed, row) so that the summary regenerates exactly the draws behind the table.
    y = np.r_[np.ones(n_targets), np.zeros(n_negatives)]
    return random_ranking_draws(y, n_random, np.random.default_rng([seed, row]))


def _dose_label(conc: float) -> str:
    return "na" if pd.isna(conc) else f"{float(conc):g}"


def _truth_sets(targets: pd.DataFrame, active_nM: float, inactive_nM: float) -> tuple[pd.Series, pd.Series, bool]:
    """(actives per compound, grey-zone genes per compound, whether activity values were given)."""
    if "activity_nM" not in targets.columns or targets["activity_nM"].isna().all():
        return targets.groupby("compound")["target_gene"].agg(set), pd.Series(dtype=object), False
    act = targets["activity_nM"].astype(float)
    actives = targets[act <= active_nM].groupby("compound")["target_gene"].agg(set)
    grey = targets[(act > active_nM) & (act <= inactive_nM)].groupby("compound")["target_gene"].agg(set)
    return actives, grey, True


def compound_gene_benchmark(
    aggregated: Profiles,
    targets: pd.DataFrame,
    *,
    min_negatives: int = MIN_NEGATIVES,
    active_nM: float = ACTIVE_NM,
    inactive_nM: float = INACTIVE_NM,
    n_random: int = N_RANDOM,
    seed: int = 0,
) -> pd.DataFrame:
    """Per compound and dose (each concentration, and ``"max"`` over them): AP and ROC-AUC of its active
    targets against ``max(2 x targets, min_negatives)`` sampled negatives, with the random baseline.

    ``targets``: columns ``compound``, ``target_gene`` and optionally ``activity_nM`` (see
    :func:`cellmae.bench.inputs.read_compound_targets`). With activity values the negative pool is
    the truth table's genes in the map (as RxRx3-core); without, every gene in the map. Compounds
    with no active target in the map, or too few eligible negatives, are skipped.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if min_negatives < 1:
        raise ValueError(f"min_negatives must be >= 1, got {min_negatives}")
    if not 0 < active_nM <= inactive_nM:
        raise ValueError(f"activity thresholds must satisfy 0 < active ({active_nM}) <= inactive ({inactive_nM}) nM")
    meta = aggregated.meta
    comp = is_compound(meta)
    gene = ~comp & ~meta[IS_CONTROL].to_numpy(bool)
    if not comp.any():
        raise ValueError("no compound profiles (Metadata_PerturbationType == 'COMPOUND') in the map")
    if gene.sum() < 2:
        raise ValueError(f"need at least 2 gene profiles to rank targets, found {int(gene.sum())}")
    gene_names, ug = _gene_matrix(aggregated.subset(gene))
    compounds = aggregated.subset(comp)
    uc = unit_rows(compounds.features).astype(np.float32)
    c_names = compounds.meta[PERTURBATION].astype(str).to_numpy()
    conc = (compounds.meta[CONCENTRATION].to_numpy(dtype=float) if CONCENTRATION in compounds.meta.columns
            else np.full(len(c_names), np.nan))
    actives, grey, has_activity = _truth_sets(targets, active_nM, inactive_nM)
    pool = set(targets["target_gene"]) if has_activity else set(gene_names)
    pool_idx = {g: i for i, g in enumerate(gene_names) if g in pool}
    rows = []
    for ci, compound in enumerate(np.unique(c_names)):
        pos = sorted(actives.get(compound, set()) & set(pool_idx) if has_activity
                     else actives.get(compound, set()) & set(gene_names))
        if not pos:
            continue
        eligible = sorted(set(pool_idx) - set(pos) - grey.get(compound, set()))
        n_neg = max(2 * len(pos), min_negatives)
        if len(eligible) < n_neg:
            continue
        rng = np.random.default_rng([seed, ci])
        neg = list(rng.choice(eligible, n_neg, replace=False))
        cand = np.searchsorted(gene_names, pos + neg)
        y = np.r_[np.ones(len(pos)), np.zeros(n_neg)]
        sel = np.flatnonzero(c_names == compound)
        sims = np.abs(uc[sel] @ ug[cand].T)  # (doses, candidates)
        doses = [("max", np.nan, sims.max(axis=0))]
        doses += [(_dose_label(conc[i]), conc[i], sims[k]) for k, i in enumerate(sel)]
        for dose, c, s in doses:
            rows.append({"compound": compound, "dose": dose, "concentration": c, "n_targets": len(pos),
                         "n_negatives": n_neg, "average_precision": float(average_precision_score(y, s)),
                         "roc_auc": float(roc_auc_score(y, s))})
    table = pd.DataFrame(rows, columns=COLUMNS[:7])
    rand = [_row_draws(r.n_targets, r.n_negatives, n_random, seed, i) for i, r in enumerate(table.itertuples())]
    table["random_average_precision"] = [float(a.mean()) for a, _ in rand]
    table["random_roc_auc"] = [float(b.mean()) for _, b in rand]
    return table[COLUMNS]


def _zscore(value: float, draws: np.ndarray) -> float | None:
    sd = float(draws.std(ddof=1)) if len(draws) > 1 else 0.0
    return float((value - draws.mean()) / sd) if sd > 0 else None


def compound_gene_summary(table: pd.DataFrame, *, n_random: int = N_RANDOM, seed: int = 0) -> dict:
    """Macro means over compounds for the max-over-dose results (top level) and per dose, each with
    the random baseline's mean and the z-score against the ``n_random`` seeded draws of the table."""
    def block(rows: pd.DataFrame) -> dict:
        n = len(rows)
        if not n:
            return {"n_compounds": 0, "mean_ap": None, "mean_auc": None, "random_mean_ap": None,
                    "random_mean_auc": None, "ap_zscore": None, "auc_zscore": None}
        draws = [_row_draws(int(r.n_targets), int(r.n_negatives), n_random, seed, int(i)) for i, r in rows.iterrows()]
        ap_draws = np.mean([d[0] for d in draws], axis=0)  # macro mean per draw
        auc_draws = np.mean([d[1] for d in draws], axis=0)
        mean_ap, mean_auc = float(rows["average_precision"].mean()), float(rows["roc_auc"].mean())
        return {"n_compounds": n, "mean_ap": mean_ap, "mean_auc": mean_auc,
                "random_mean_ap": float(ap_draws.mean()), "random_mean_auc": float(auc_draws.mean()),
                "ap_zscore": _zscore(mean_ap, ap_draws), "auc_zscore": _zscore(mean_auc, auc_draws)}

    table = table.reset_index(drop=True)
    out = block(table[table["dose"] == "max"])
    out["per_dose"] = {d: block(table[table["dose"] == d]) for d in table["dose"].unique() if d != "max"}
    return out
