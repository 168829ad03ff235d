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
    t = compound_gene_benchmark(agg, synth.targets_table(), n_negatives=15, seed=0)
    assert sorted(t["compound"]) == ["C0", "C1", "C2", "C3"]
    assert (t["n_targets"] == 1).all() and (t["n_negatives"] == 15).all()
    s = compound_gene_summary(t)
    # the compound equals (+/-) its target plus noise; group mates are close too, so AP < 1 is allowed
    assert s["mean_auc"] > 0.85 and s["mean_ap"] > 0.5
    assert s["random_mean_ap"] < 0.3 and s["random_mean_auc"] == pytest.approx(0.5, abs=0.1)
    assert t.set_index("compound").loc["C1", "roc_auc"] > 0.8  # sign-flipped compound still found via |cos|


def test_compounds_without_targets_in_map_are_skipped(aligned_wells, synth):
    agg = profiles_from_frame(synth.aggregate(aligned_wells))
    t = compound_gene_benchmark(agg, pd.DataFrame({"compound": ["C0", "C1"], "target_gene": ["G00", "NOTAGENE"]}))
    assert list(t["compound"]) == ["C0"]
    genes_only = agg.subset(~is_compound(agg.meta))
    with pytest.raises(ValueError, match="no compound"):
        compound_gene_benchmark(genes_only, synth.targets_table())
