import numpy as np
import pandas as pd
import pytest

from cellmae.bench.copairs_map import MAP_COLUMNS, activity_map, consistency_map, map_summary
from cellmae.bench.inputs import profiles_from_frame


@pytest.fixture(scope="module")
def activity(aligned_wells):
    return activity_map(profiles_from_frame(aligned_wells), null_size=2000, seed=0)


def test_activity_map_high_for_planted_chance_for_null(activity, synth):
    assert list(activity.columns) == MAP_COLUMNS
    assert (activity["kind"] == "activity").all() and (activity["reference"] == "same_plate_controls").all()
    by = activity.set_index("entity")
    active, null = by.loc[synth.ACTIVE_GENES], by.loc[synth.INERT_GENES]
    assert active["significant"].all()
    assert active["mean_average_precision"].min() > 0.9
    assert not null["significant"].any()
    # 4 replicate wells ranked among 3 others + 16 controls: a random ranking averages ~0.3
    assert null["mean_average_precision"].mean() < 0.5
    # compounds are scored per concentration
    assert {"C0@0.1", "C0@1"} <= set(by.index)
    # FDR: corrected p-values never below raw ones
    assert (activity["corrected_p_value"] >= activity["p_value"] - 1e-12).all()


def test_activity_with_all_controls_agrees_on_planted(aligned_wells, activity):
    t = activity_map(profiles_from_frame(aligned_wells), null_size=500, seed=0, same_plate_controls=False)
    assert (t["reference"] == "controls").all()
    assert list(t["entity"]) == list(activity["entity"])
    assert t.set_index("entity").loc["G00", "significant"]


def test_activity_without_controls_uses_other_perturbations(aligned_wells):
    wells = aligned_wells[~aligned_wells["Metadata_IsControl"]]
    t = activity_map(profiles_from_frame(wells), null_size=500, seed=0)
    assert (t["reference"] == "other_perturbations").all()
    assert t.set_index("entity").loc["G00", "significant"]


def test_consistency_map_planted_groups(aligned_wells, synth):
    agg = synth.aggregate(aligned_wells)
    genes = agg[agg["Metadata_PerturbationType"] == "CRISPR"]
    t = consistency_map(profiles_from_frame(genes), synth.groups_table(), null_size=2000, seed=0)
    by = t.set_index("entity")
    assert by.loc[["grp0", "grp1", "grp2", "grp3"], "significant"].all()
    # grp4's genes are active but unrelated; grp5's are inert (and so alike one another: not asserted)
    assert not by.loc["grp4", "significant"]
    s = map_summary(t)
    assert s["consistency"]["n"] == 6
    assert s["consistency"]["fraction_significant"] == pytest.approx(by["significant"].mean())
    assert s["activity"]["n"] == 0 and s["activity"]["mean_map"] is None


def test_consistency_map_multilabel_and_too_few_groups(aligned_wells, synth):
    agg = synth.aggregate(aligned_wells)
    genes = profiles_from_frame(agg[agg["Metadata_PerturbationType"] == "CRISPR"])
    groups = pd.concat([synth.groups_table(), pd.DataFrame({"gene": ["G00", "G01"], "group": ["grp5", "grp5"]})])
    t = consistency_map(genes, groups, null_size=500, seed=0)
    assert t.set_index("entity").loc["grp0", "significant"]
    with pytest.raises(ValueError, match="functional groups"):
        consistency_map(genes, pd.DataFrame({"gene": ["G00", "G01"], "group": ["a", "a"]}))


def test_activity_requires_replicates():
    meta = pd.DataFrame({"Metadata_Perturbation": ["A", "B", "C"], "Metadata_PerturbationType": "CRISPR",
                         "Metadata_IsControl": False})
    frame = pd.concat([meta, pd.DataFrame(np.eye(3), columns=["feature_0000", "feature_0001", "feature_0002"])], axis=1)
    with pytest.raises(ValueError, match="replicate"):
        activity_map(profiles_from_frame(frame))


def test_consistency_map_caps_groups_with_a_seeded_sample(aligned_wells, synth):
    agg = synth.aggregate(aligned_wells)
    genes = profiles_from_frame(agg[agg["Metadata_PerturbationType"] == "CRISPR"])
    a = consistency_map(genes, synth.groups_table(), null_size=200, seed=3, max_groups=3)
    b = consistency_map(genes, synth.groups_table(), null_size=200, seed=3, max_groups=3)
    assert len(a) == 3 and list(a["entity"]) == list(b["entity"])
    assert (a["n_profiles"] == 4).all()
