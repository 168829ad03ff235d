"""Compound-gene activity (RxRx3-core style): does a compound's profile find its known targets?

For every compound x concentration profile and every gene profile of the aggregated map, the
score is |cosine| (a knockout and an inhibitor may move cells the same way or, for activators,
the opposite way). A compound's score for a gene is the maximum over its concentrations (the
most active dose decides; ``reduce="mean"`` averages instead). Per compound, its known targets
in the map are positives and a seeded sample of other genes the negatives; scikit-learn gives
average precision and ROC-AUC. The random baseline ranks the same candidates by random scores
(``n_random`` seeded draws), so it carries the same positive/negative ratio as the real ranking.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellmae.bench.consistency import unit_rows
from cellmae.bench.inputs import Profiles, is_compound
from cellmae.data.schema import IS_CONTROL, PERTURBATION

REDUCE = ("max", "mean")


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
    """|cosine| between each compound (reduced over its concentrations) and each gene: compounds x genes.

    Computed one compound at a time, so memory is (concentrations x genes), never the whole
    (compound-doses x genes) matrix.
    """
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


def random_ranking_baseline(y: np.ndarray, n_draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """Mean AP and ROC-AUC of ``n_draws`` uniformly random rankings of labels ``y`` (1 = target).

    Vectorised over draws (sklearn scores one ranking per call, which costs ~1 ms x draws x
    compounds); without ties this is exactly sklearn's AP and AUC, which the tests check.
    """
    y = np.asarray(y, dtype=np.float64)
    n_pos, n = y.sum(), len(y)
    order = np.argsort(rng.random((n_draws, n)), axis=1)
    rel = y[order]  # relevance in ranked order, best first
    hits = np.cumsum(rel, axis=1)
    ap = ((hits / np.arange(1, n + 1)) * rel).sum(axis=1) / n_pos
    # AUC = P(random positive ranked above random negative): count negatives below each positive.
    neg_below = (n - n_pos) - (np.arange(1, n + 1) - hits)  # negatives ranked after each position
    auc = (neg_below * rel).sum(axis=1) / (n_pos * (n - n_pos))
    return float(ap.mean()), float(auc.mean())


def compound_gene_benchmark(
    aggregated: Profiles,
    targets: pd.DataFrame,
    *,
    n_negatives: int = 100,
    reduce: str = "max",
    n_random: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-compound AP and ROC-AUC of known targets against sampled non-targets.

    ``aggregated``: one row per perturbation (x concentration for compounds), compounds marked by
    ``Metadata_PerturbationType == "COMPOUND"``. ``targets``: columns ``compound``, ``target_gene``
    (see :func:`cellmae.bench.inputs.read_compound_targets`). Compounds with no target among the
    map's genes are skipped. Returns one row per compound: compound, n_targets, n_negatives,
    average_precision, roc_auc, random_average_precision, random_roc_auc.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    meta = aggregated.meta
    comp = is_compound(meta)
    gene = ~comp & ~meta[IS_CONTROL].to_numpy(bool)
    if not comp.any():
        raise ValueError("no compound profiles (Metadata_PerturbationType == 'COMPOUND') in the map")
    if gene.sum() < 2:
        raise ValueError(f"need at least 2 gene profiles to rank targets, found {int(gene.sum())}")
    scores = compound_gene_scores(aggregated.subset(comp), aggregated.subset(gene), reduce=reduce)
    gene_names = scores.columns.to_numpy()
    by_compound = targets.groupby("compound")["target_gene"].agg(set)
    rng = np.random.default_rng(seed)
    rows = []
    for compound in scores.index:
        known = by_compound.get(compound, set())
        pos = np.flatnonzero(np.isin(gene_names, list(known)))
        others = np.flatnonzero(~np.isin(gene_names, list(known)))
        if len(pos) == 0 or len(others) == 0:
            continue
        neg = rng.choice(others, size=min(n_negatives, len(others)), replace=False)
        cand = np.concatenate([pos, neg])
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        s = scores.loc[compound].to_numpy()[cand]
        rand_ap, rand_auc = random_ranking_baseline(y, n_random, rng)
        rows.append({
            "compound": compound,
            "n_targets": len(pos),
            "n_negatives": len(neg),
            "average_precision": float(average_precision_score(y, s)),
            "roc_auc": float(roc_auc_score(y, s)),
            "random_average_precision": rand_ap,
            "random_roc_auc": rand_auc,
        })
    return pd.DataFrame(rows, columns=[
        "compound", "n_targets", "n_negatives", "average_precision", "roc_auc",
        "random_average_precision", "random_roc_auc",
    ])


def compound_gene_summary(table: pd.DataFrame) -> dict:
    """Mean AP / AUC over compounds and the same means for the random baseline."""
    n = len(table)
    def mean(col: str) -> float | None:
        return float(table[col].mean()) if n else None
    return {
        "n_compounds": n,
        "mean_ap": mean("average_precision"),
        "mean_auc": mean("roc_auc"),
        "random_mean_ap": mean("random_average_precision"),
        "random_mean_auc": mean("random_roc_auc"),
    }
