import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cellmae.bench.compound_gene import (
    compound_gene_benchmark,
    compound_gene_scores,
    compound_gene_summary,
    random_ranking_baseline,
)
from cellmae.bench.inputs import Profiles, is_compound, profiles_from_frame


def test_random_baseline_equals_sklearn_for_one_ranking():
    y = np.r_[np.ones(3), np.zeros(17)]
    ap, auc = random_ranking_baseline(y, 1, np.random.default_rng(4))
    r = np.random.default_rng(4).random((1, 20))[0]
    assert ap == pytest.approx(average_precision_score(y, -r))  # smallest draw ranks first
    assert auc == pytest.approx(roc_auc_score(y, -r))
    ap, auc = random_ranking_baseline(y, 4000, np.random.default_rng(0))
    assert auc == pytest.approx(0.5, abs=0.02)
    assert 0.15 < ap < 0.35  # about the positive rate, a bit above for small lists


def test_scores_are_abs_cosine_max_over_concentrations():
    meta_c = pd.DataFrame({"Metadata_Perturbation": ["C", "C"], "Metadata_PerturbationType": "COMPOUND",
                           "Metadata_IsControl": False})
    meta_g = pd.DataFrame({"Metadata_Perturbation": ["G1", "G2"], "Metadata_PerturbationType": "CRISPR",
                           "Metadata_IsControl": False})
    comp = Profiles(meta_c, np.array([[1.0, 0.0], [0.0, -2.0]], np.float32))
    genes = Profiles(meta_g, np.array([[3.0, 0.0], [1.0, 1.0]], np.float32))
    s = compound_gene_scores(comp, genes)
    assert s.loc["C", "G1"] == pytest.approx(1.0)
    assert s.loc["C", "G2"] == pytest.approx(1 / np.sqrt(2))
    m = compound_gene_scores(comp, genes, reduce="mean")
    assert m.loc["C", "G1"] == pytest.approx(0.5)


def test_planted_targets_beat_random_baseline(aligned_wells, synth):
    agg = profiles_from_frame(synth.aggregate(aligned_wells))
    assert is_compound(agg.meta).sum() == 8
    t = compound_gene_benchmark(agg, synth.targets_table(), seed=0)
    best = t[t["dose"] == "max"]
    assert sorted(best["compound"]) == ["C0", "C1", "C2", "C3"]
    assert sorted(t["dose"].unique()) == ["0.1", "1", "max"] and len(t) == 12
    # no activity values: every listed target is a positive, negatives max(2 x 1, 20) from the other genes
    assert (t["n_targets"] == 1).all() and (t["n_negatives"] == 20).all()
    s = compound_gene_summary(t)
    # the compound equals (+/-) its target plus noise; group mates are close too, so AP < 1 is allowed
    assert s["mean_auc"] > 0.85 and s["mean_ap"] > 0.5 and s["ap_zscore"] > 3 and s["auc_zscore"] > 3
    assert s["random_mean_ap"] < 0.3 and s["random_mean_auc"] == pytest.approx(0.5, abs=0.1)
    assert set(s["per_dose"]) == {"0.1", "1"} and s["per_dose"]["1"]["n_compounds"] == 4
    assert best.set_index("compound").loc["C1", "roc_auc"] > 0.8  # sign-flipped compound still found via |cos|


def test_compounds_without_targets_in_map_are_skipped(aligned_wells, synth):
    agg = profiles_from_frame(synth.aggregate(aligned_wells))
    t = compound_gene_benchmark(agg, pd.DataFrame({"compound": ["C0", "C1"], "target_gene": ["G00", "NOTAGENE"]}))
    assert set(t["compound"]) == {"C0"}
    genes_only = agg.subset(~is_compound(agg.meta))
    with pytest.raises(ValueError, match="no compound"):
        compound_gene_benchmark(genes_only, synth.targets_table())


# ------------------------------------------------------------------ RxRx3-core protocol, reference definitions

def reference_metrics(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """EFAAR_benchmarking compute_metrics, transcribed: AP as the mean precision at each positive."""
    order = np.argsort(scores)[::-1]
    lab = labels[order]
    precision = np.cumsum(lab) / np.arange(1, len(lab) + 1)
    return float(np.sum(precision * lab) / lab.sum()), float(roc_auc_score(labels, scores))


def _rxrx3_map(seed: int = 3):
    rng = np.random.default_rng(seed)
    genes = [f"G{i:02d}" for i in range(30)]
    gx = rng.normal(size=(30, 6))
    cx = np.stack([gx[0] + rng.normal(size=6), 0.3 * gx[0] + rng.normal(size=6),   # C0 at 0.1 and 1.0 uM
                   -gx[3] + rng.normal(size=6), gx[4] + rng.normal(size=6)])      # C1
    meta = pd.DataFrame({
        "Metadata_Perturbation": genes + ["C0", "C0", "C1", "C1"],
        "Metadata_PerturbationType": ["CRISPR"] * 30 + ["COMPOUND"] * 4,
        "Metadata_Concentration": [np.nan] * 30 + [0.1, 1.0, 0.1, 1.0],
        "Metadata_IsControl": False,
    })
    truth = [("C0", "G00", 100.0), ("C0", "G01", 5000.0), ("C1", "G03", 500.0), ("C1", "G04", 800.0)]
    truth += [(c, g, 50000.0) for c in ("C0", "C1") for g in genes[5:]]  # tested inactive: the negative pool
    truth = pd.DataFrame(truth, columns=["compound", "target_gene", "activity_nM"])
    return Profiles(meta, np.vstack([gx, cx]).astype(np.float32)), truth, gx, cx, genes


def test_rxrx3_core_protocol_matches_the_reference_definition():
    prof, truth, gx, cx, genes = _rxrx3_map()
    # pool = the truth table's genes (G00, G01, G03, G04, G05..G29 = 29 genes); with min_negatives equal to the
    # number of eligible genes every eligible gene is a negative, so the candidates are fixed
    t = compound_gene_benchmark(prof, truth, min_negatives=27, seed=0)
    cos = np.abs((cx / np.linalg.norm(cx, axis=1, keepdims=True)) @ (gx / np.linalg.norm(gx, axis=1, keepdims=True)).T)
    # C0: active G00 (100 nM); G01 (5 uM) is grey and left out; eligible = G03, G04, G05..G29 = 27 genes
    # C1: actives G03, G04; eligible = G00, G01, G05..G29 = 27 genes
    cands = {"C0": ([0], [3, 4, *range(5, 30)]), "C1": ([3, 4], [0, 1, *range(5, 30)])}
    rows = {"C0": (0, 1), "C1": (2, 3)}
    got = t.set_index(["compound", "dose"])
    for c, (pos, neg) in cands.items():
        idx = np.array(pos + neg)
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(int)
        per_dose = [cos[r, idx] for r in rows[c]]
        for dose, scores in (("0.1", per_dose[0]), ("1", per_dose[1]), ("max", np.nanmax(np.vstack(per_dose), 0))):
            ap, auc = reference_metrics(scores, labels)
            row = got.loc[(c, dose)]
            assert row["n_targets"] == len(pos) and row["n_negatives"] == len(neg)
            assert row["average_precision"] == pytest.approx(ap) and row["roc_auc"] == pytest.approx(auc)
    s = compound_gene_summary(t)
    best = t[t["dose"] == "max"]
    assert s["mean_ap"] == pytest.approx(best["average_precision"].mean())  # macro average over compounds
    assert s["per_dose"]["0.1"]["mean_auc"] == pytest.approx(t[t["dose"] == "0.1"]["roc_auc"].mean())


def test_negatives_are_max_of_twice_the_targets_and_the_minimum():
    prof, truth, *_ = _rxrx3_map()
    t = compound_gene_benchmark(prof, truth, min_negatives=1, seed=0)
    by = t[t["dose"] == "max"].set_index("compound")
    assert by.loc["C0", "n_negatives"] == 2 and by.loc["C1", "n_negatives"] == 4
    t = compound_gene_benchmark(prof, truth, seed=0)  # RxRx3-core default: at least 20
    assert (t["n_negatives"] == 20).all()
    assert compound_gene_benchmark(prof, truth, min_negatives=28).empty  # too few eligible genes: skipped
    strict = truth.assign(activity_nM=truth["activity_nM"].where(truth["target_gene"] != "G04", 2000.0))
    by = compound_gene_benchmark(prof, strict, min_negatives=1).set_index(["compound", "dose"])
    assert by.loc[("C1", "max"), "n_targets"] == 1  # G04 at 2 uM is grey now, not a target


def test_zscore_against_the_seeded_random_draws():
    from cellmae.bench.compound_gene import random_ranking_draws

    prof, truth, *_ = _rxrx3_map()
    t = compound_gene_benchmark(prof, truth, seed=5, n_random=100)
    s = compound_gene_summary(t, n_random=100, seed=5)
    best = t[t["dose"] == "max"]
    draws = []
    for i, r in best.iterrows():
        y = np.r_[np.ones(r["n_targets"]), np.zeros(r["n_negatives"])]
        draws.append(random_ranking_draws(y, 100, np.random.default_rng([5, i])))
    ap = np.mean([d[0] for d in draws], axis=0)
    assert s["random_mean_ap"] == pytest.approx(ap.mean())
    assert s["ap_zscore"] == pytest.approx((best["average_precision"].mean() - ap.mean()) / ap.std(ddof=1))
    assert best["random_average_precision"].to_numpy() == pytest.approx([d[0].mean() for d in draws])


def test_activity_column_is_read(tmp_path):
    from cellmae.bench.inputs import read_compound_targets

    path = tmp_path / "truth.csv"
    pd.DataFrame({"treatment": ["C0", "C0"], "gene_symbol": ["G1", "G2"], "nM_value": [10, 20000]}).to_csv(path, index=False)
    got = read_compound_targets(path)
    assert list(got.columns) == ["compound", "target_gene", "activity_nM"] and got["activity_nM"].tolist() == [10, 20000]
    pd.DataFrame({"compound": ["C0"], "target_gene": ["G1"], "nM_value": ["high"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="nM_value"):
        read_compound_targets(path)
