import numpy as np
import pandas as pd
import pytest

from cellmae.bench.consistency import mean_pairwise_cosine, null_scores, replicate_consistency, unit_rows
from cellmae.bench.inputs import profiles_from_frame
from cellmae.data.schema import PERTURBATION


def test_mean_pairwise_cosine_matches_definition():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 7))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = np.mean([u[i] @ u[j] for i in range(5) for j in range(i + 1, 5)])
    assert mean_pairwise_cosine(x) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_cosine(x[:1])


def test_null_sets_have_distinct_wells_and_are_seeded():
    u = unit_rows(np.eye(6))  # orthogonal rows: any set of distinct wells scores exactly 0
    pool = np.arange(6)
    a = null_scores(u, pool, 3, 500, np.random.default_rng(0))
    assert np.allclose(a, 0.0)  # a repeated well would add a cosine of 1
    rng_x = np.random.default_rng(3).normal(size=(40, 5))
    ux = unit_rows(rng_x)
    b1 = null_scores(ux, np.arange(40), 4, 100, np.random.default_rng(7))
    b2 = null_scores(ux, np.arange(40), 4, 100, np.random.default_rng(7))
    assert np.array_equal(b1, b2)


def test_consistency_finds_planted_perturbations(aligned_wells, synth):
    table = replicate_consistency(profiles_from_frame(aligned_wells), n_null=1000, seed=0)
    genes = table[table["Metadata_PerturbationType"] == "CRISPR"].set_index(PERTURBATION)
    active = genes.loc[synth.ACTIVE_GENES]
    null = genes.loc[synth.INERT_GENES]
    assert (active["p_value"] <= 0.05).all()
    assert (null["p_value"] > 0.05).mean() >= 0.75
    assert active["mean_cosine"].min() > null["mean_cosine"].max()
    # compounds are scored per concentration, with 4 replicate wells each
    comp = table[table["Metadata_PerturbationType"] == "COMPOUND"]
    assert len(comp) == 8 and (comp["n_replicates"] == 4).all()
    assert "EMPTY" not in set(table[PERTURBATION])


def test_consistency_null_is_uniform_on_random_data():
    rng = np.random.default_rng(5)
    n_pert, reps = 60, 3
    meta = pd.DataFrame({
        "Metadata_Perturbation": np.repeat([f"P{i}" for i in range(n_pert)], reps),
        "Metadata_PerturbationType": "CRISPR", "Metadata_IsControl": False,
    })
    prof = profiles_from_frame(pd.concat([meta, pd.DataFrame(rng.normal(size=(n_pert * reps, 8)),
                                                              columns=[f"feature_{i:04d}" for i in range(8)])], axis=1))
    table = replicate_consistency(prof, n_null=2000, seed=1)
    assert len(table) == n_pert
    # no planted signal: about 5% false positives, p-values spread over (0, 1]
    assert table["significant"].mean() <= 0.15
    assert 0.3 < table["p_value"].median() < 0.7


def test_controls_null_and_bad_arguments(aligned_wells):
    prof = profiles_from_frame(aligned_wells)
    t = replicate_consistency(prof, n_null=200, null_from="controls", seed=0)
    assert (t["null_from"] == "controls").all() and len(t) > 0
    with pytest.raises(ValueError, match="null_from"):
        replicate_consistency(prof, null_from="plates")


def test_max_replicates_caps_the_tested_set(aligned_wells, synth):
    prof = profiles_from_frame(aligned_wells)
    full = replicate_consistency(prof, n_null=500, seed=0).set_index("perturbation_key")
    capped = replicate_consistency(prof, n_null=500, seed=0, max_replicates=3).set_index("perturbation_key")
    assert (capped["null_set_size"] == 3).all() and (capped["n_replicates"] == 4).all()
    # the reported score is always over all replicates; only the test uses the subset
    assert np.allclose(capped["mean_cosine"], full["mean_cosine"])
    assert (capped.loc[synth.ACTIVE_GENES, "p_value"] <= 0.05).all()


# ------------------------------------------------- KS / Cramér–von Mises of cross-batch replicate similarities

def _reference_pairs(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Cosine of every pair of the given wells with the same perturbation (x concentration) in different
    experiments, by explicit loops (the definition)."""
    from cellmae.data.profiles import perturbation_key

    x = frame[[c for c in frame.columns if c.startswith("feature_")]].to_numpy(np.float64)
    keys = perturbation_key(frame).to_numpy()
    exp = frame["Metadata_Experiment"].to_numpy()
    out = []
    for a_pos, a in enumerate(rows):
        for b in rows[a_pos + 1:]:
            if keys[a] == keys[b] and exp[a] != exp[b]:
                out.append(x[a] @ x[b] / (np.linalg.norm(x[a]) * np.linalg.norm(x[b])))
    return np.sort(np.asarray(out))


def test_replicate_test_matches_scipy_on_the_definition(aligned_wells):
    from scipy.stats import cramervonmises_2samp, ks_2samp

    from cellmae.bench.consistency import replicate_similarity_test

    frame = aligned_wells.reset_index(drop=True)
    ctrl = frame["Metadata_IsControl"].to_numpy(bool)
    query = _reference_pairs(frame, np.flatnonzero(~ctrl))
    null = _reference_pairs(frame, np.flatnonzero(ctrl))  # 8 controls per experiment: 64 cross pairs
    assert len(null) == 64
    got = replicate_similarity_test(profiles_from_frame(frame), batch_column="Metadata_Experiment",
                                    null="negative-controls", n_null=1000)
    assert got["query_size"] == len(query) and got["null_size"] == len(null)
    ks, cvm = ks_2samp(query, null), cramervonmises_2samp(query, null)
    assert got["ks_statistic"] == pytest.approx(ks.statistic) and got["ks_p_value"] == pytest.approx(ks.pvalue)
    assert got["cvm_statistic"] == pytest.approx(cvm.statistic) and got["cvm_p_value"] == pytest.approx(cvm.pvalue)
    assert got["mean_difference"] == pytest.approx(query.mean() - null.mean())


def test_replicate_test_random_pair_null(aligned_wells):
    from cellmae.bench.consistency import _random_cross_batch_pairs, replicate_similarity_test

    prof = profiles_from_frame(aligned_wells)
    got = replicate_similarity_test(prof, batch_column="Metadata_Experiment", n_null=3000, seed=0)
    assert got["null_size"] == 3000 and got["mean_difference"] > 0.3 and got["ks_p_value"] < 1e-6
    assert got == replicate_similarity_test(prof, batch_column="Metadata_Experiment", n_null=3000, seed=0)
    groups = np.repeat(np.arange(10), 4)
    batches = np.tile(np.array(["a", "b"]), 20)
    i, j = _random_cross_batch_pairs(groups, batches, np.arange(40), 500, np.random.default_rng(0))
    assert len(i) == 500 and (groups[i] != groups[j]).all() and (batches[i] != batches[j]).all()


def test_replicate_test_without_signal_is_not_significant():
    from cellmae.bench.consistency import replicate_similarity_test

    rng = np.random.default_rng(4)
    n_pert, reps = 80, 4
    meta = pd.DataFrame({
        "Metadata_Perturbation": np.repeat([f"P{i}" for i in range(n_pert)], reps),
        "Metadata_PerturbationType": "CRISPR", "Metadata_IsControl": False,
        "Metadata_Experiment": np.tile(["e1", "e2"], n_pert * reps // 2),
    })
    feats = pd.DataFrame(rng.normal(size=(n_pert * reps, 8)), columns=[f"feature_{i:04d}" for i in range(8)])
    got = replicate_similarity_test(profiles_from_frame(pd.concat([meta, feats], axis=1)),
                                    batch_column="Metadata_Experiment", n_null=4000, seed=2)
    assert got["ks_p_value"] > 0.01 and got["cvm_p_value"] > 0.01 and abs(got["mean_difference"]) < 0.05


def test_replicate_test_errors(aligned_wells):
    from cellmae.bench.consistency import replicate_similarity_test

    prof = profiles_from_frame(aligned_wells.assign(Metadata_Experiment="one"))
    with pytest.raises(ValueError, match="at least two batches"):
        replicate_similarity_test(prof, batch_column="Metadata_Experiment")
    with pytest.raises(ValueError, match="replicate null"):
        replicate_similarity_test(prof, batch_column="Metadata_Experiment", null="bogus")


# ------------------------------------------------- EFAAR's null over negative-control perturbations

def _efaar_consistency(frame: pd.DataFrame, negatives: list[str]) -> pd.DataFrame:
    """EFAAR_benchmarking ``pert_signal_consistency_benchmark`` (benchmarking.py), transcribed: controls
    dropped (keys_to_drop); null = the mean lower-triangle cosine of each negative-control perturbation's
    wells, sorted; each other perturbation: its mean cosine and p = 1 - searchsorted(null, score) / len(null).
    The perturbation column is cellmae's perturbation key (perturbation x concentration)."""
    from sklearn.metrics.pairwise import cosine_similarity

    from cellmae.data.profiles import perturbation_key

    frame = frame[~frame["Metadata_IsControl"]]
    x = frame[[c for c in frame.columns if c.startswith("feature_")]].to_numpy(np.float64)
    keys = perturbation_key(frame).to_numpy()
    names = frame["Metadata_Perturbation"].to_numpy()

    def metric(arr):
        sim = np.clip(cosine_similarity(arr), -1, 1)
        return sim[np.tril_indices(sim.shape[0], k=-1)].mean()

    null = np.sort([metric(x[keys == k]) for k in set(keys[np.isin(names, negatives)])])
    rows = []
    for k in np.unique(keys[~np.isin(names, negatives)]):
        score = metric(x[keys == k])
        rows.append((k, score, 1 - np.searchsorted(null, score) / len(null)))
    return pd.DataFrame(rows, columns=["perturbation_key", "mean_cosine", "p_value"]).set_index("perturbation_key")


def test_negative_control_null_is_efaars_definition(aligned_wells, synth):
    negatives = list(synth.INERT_GENES)  # genes without phenotype, like EFAAR's unexpressed genes
    got = replicate_consistency(profiles_from_frame(aligned_wells), null_from="negative-controls",
                                negative_controls=negatives).set_index("perturbation_key")
    ref = _efaar_consistency(aligned_wells, negatives)
    assert sorted(got.index) == sorted(ref.index) and not set(negatives) & set(got.index)
    assert np.allclose(got.loc[ref.index, "mean_cosine"], ref["mean_cosine"])
    assert np.allclose(got.loc[ref.index, "p_value"], ref["p_value"])
    assert (got["null_from"] == "negative-controls").all() and (got["null_set_size"] == len(negatives)).all()
    assert (got.loc[synth.GROUPED_GENES, "p_value"] == 0).all()  # above every negative control
    with pytest.raises(ValueError, match="needs the negative-control"):
        replicate_consistency(profiles_from_frame(aligned_wells), null_from="negative-controls")
    with pytest.raises(ValueError, match="none of the 2 negative-control"):
        replicate_consistency(profiles_from_frame(aligned_wells), null_from="negative-controls",
                              negative_controls=["nope", "EMPTY"])


def test_replicate_test_with_negative_control_perturbations(aligned_wells, synth):
    from scipy.stats import ks_2samp

    from cellmae.bench.consistency import replicate_similarity_test

    frame = aligned_wells.reset_index(drop=True)
    negative = frame["Metadata_Perturbation"].isin(synth.INERT_GENES).to_numpy()
    ctrl = frame["Metadata_IsControl"].to_numpy(bool)
    query = _reference_pairs(frame, np.flatnonzero(~ctrl & ~negative))
    null = _reference_pairs(frame, np.flatnonzero(negative))  # 4 genes x 2 x 2 wells: 16 cross-batch pairs
    got = replicate_similarity_test(profiles_from_frame(frame), batch_column="Metadata_Experiment",
                                    null="negative-controls", negative_controls=synth.INERT_GENES)
    assert got["negative_controls"] == 4 and got["null_size"] == len(null) == 16 and got["query_size"] == len(query)
    assert got["ks_statistic"] == pytest.approx(ks_2samp(query, null).statistic)
    with pytest.raises(ValueError, match="none of the 1 negative-control"):
        replicate_similarity_test(profiles_from_frame(frame), batch_column="Metadata_Experiment",
                                  null="negative-controls", negative_controls=["nope"])
