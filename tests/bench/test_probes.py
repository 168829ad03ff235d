import json

import numpy as np
import pytest

from cellmae.bench.inputs import profiles_from_frame
from cellmae.bench.probes import (
    best_block,
    block_dirs,
    group_probe,
    perturbation_probe,
    probe_blocks,
    read_best_block,
    write_probes,
)


@pytest.fixture(scope="module")
def blocks_dir(tmp_path_factory, synth):
    """block02 carries strong biology, block04 weak, block06 is pure noise (signal 0)."""
    root = tmp_path_factory.mktemp("map_model")
    for name, signal in (("block02", 1.0), ("block04", 0.25), ("block06", 0.0)):
        d = root / name
        d.mkdir()
        synth.align(synth.make_screen(1, signal=signal, noise=0.35)).to_parquet(d / "aligned.parquet", index=False)
    (root / "not_a_block").mkdir()
    return root


def test_block_dirs(blocks_dir, tmp_path):
    assert sorted(block_dirs(blocks_dir)) == [2, 4, 6]
    with pytest.raises(FileNotFoundError, match="block"):
        block_dirs(tmp_path)


def test_probes_pick_planted_best_block(blocks_dir, synth, tmp_path):
    table = probe_blocks(blocks_dir, synth.groups_table(), seed=0)
    assert set(table["task"]) == {"perturbation", "group"}
    assert sorted(table["block"].unique()) == [2, 4, 6]
    f1 = table.pivot(index="block", columns="task", values="f1")
    assert f1.loc[2, "perturbation"] > f1.loc[4, "perturbation"] > f1.loc[6, "perturbation"]
    assert f1.loc[2, "group"] > f1.loc[6, "group"]
    best = write_probes(table, tmp_path, metric="mean_f1")
    assert best["block"] == 2 and set(best["values"]) == {"2", "4", "6"}
    assert read_best_block(tmp_path) == 2
    assert read_best_block(tmp_path / "best_block.json") == 2
    assert (tmp_path / "probes.csv").read_text().startswith("block,task,balanced_accuracy,accuracy,f1")
    assert best_block(table, "group_accuracy")["block"] == 2


def test_probe_tasks_on_one_block(aligned_wells, synth):
    prof = profiles_from_frame(aligned_wells)
    p = perturbation_probe(prof, seed=0)
    # 32 perturbation keys (24 genes + 4 compounds x 2 doses), 4 wells each; inert genes are indistinguishable
    assert p["n_classes"] == 32 and p["n_samples"] == 128 and p["n_folds"] == 2  # two plates
    assert p["accuracy"] > 3 * p["chance"] and p["balanced_accuracy"] > 3 / 32
    g = group_probe(prof, synth.groups_table(), seed=0)
    assert g["n_classes"] == 6 and g["n_samples"] == 96  # only gene wells carry a group


def test_best_block_and_read_best_block_errors(tmp_path):
    import pandas as pd

    t = pd.DataFrame({"block": [1, 2], "task": ["perturbation"] * 2, "accuracy": [0.5, 0.5], "f1": [0.4, 0.4]})
    with pytest.raises(ValueError, match="no 'balanced_accuracy' column"):
        best_block(t)
    t["balanced_accuracy"] = [0.3, 0.3]
    assert best_block(t)["block"] == 1  # ties go to the earlier (cheaper) block
    with pytest.raises(ValueError, match="metric"):
        best_block(t, "median_f1")
    with pytest.raises(ValueError, match="no probe rows"):
        best_block(t, "group_f1")
    with pytest.raises(FileNotFoundError):
        read_best_block(tmp_path)
    (tmp_path / "best_block.json").write_text(json.dumps({"block": "7"}))
    with pytest.raises(ValueError, match="positive integer"):
        read_best_block(tmp_path)
    (tmp_path / "best_block.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        read_best_block(tmp_path)


def test_no_usable_classes(synth):
    wells = synth.align(synth.make_screen(0, replicates_per_batch=1))
    one_batch = wells[wells["Metadata_Experiment"] == "exp1"]
    assert perturbation_probe(profiles_from_frame(one_batch)) is None
    assert np.isfinite(perturbation_probe(profiles_from_frame(wells))["f1"])


def test_perturbation_probe_is_the_grouped_reference_definition(aligned_wells):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cellmae.data.profiles import perturbation_key

    prof = profiles_from_frame(aligned_wells)
    got = perturbation_probe(prof, seed=3)
    treat = ~prof.meta["Metadata_IsControl"].to_numpy(bool)
    y = perturbation_key(prof.meta)[treat].to_numpy()
    plates = prof.meta["Metadata_Plate"].to_numpy()[treat]
    cv = StratifiedGroupKFold(2, shuffle=True, random_state=3)
    for train, test in cv.split(prof.features[treat], y, plates):
        assert set(plates[train]).isdisjoint(plates[test])  # no plate on both sides
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, random_state=3))
    pred = cross_val_predict(clf, prof.features[treat], y, cv=cv, groups=plates)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))


def test_plate_grouped_folds_do_not_reward_plate_specific_replicates():
    import pandas as pd

    rng = np.random.default_rng(0)
    rows, feats = [], []
    for plate in ("P1", "P2", "P3"):
        for p in range(12):
            effect = rng.normal(size=8) * 3  # a fresh effect per plate: nothing carries across plates
            for _ in range(3):
                rows.append({"Metadata_Perturbation": f"X{p}", "Metadata_PerturbationType": "CRISPR",
                             "Metadata_IsControl": False, "Metadata_Plate": plate})
                feats.append(effect + rng.normal(size=8) * 0.3)
    frame = pd.concat([pd.DataFrame(rows), pd.DataFrame(feats, columns=[f"feature_{i:04d}" for i in range(8)])], axis=1)
    prof = profiles_from_frame(frame)
    grouped = perturbation_probe(prof, seed=0)
    assert grouped["balanced_accuracy"] < 0.25  # chance is 1/12
    mixed = perturbation_probe(prof.subset(np.ones(len(frame), bool)), fold_column="Metadata_Perturbation", seed=0)
    assert mixed is None  # a perturbation's wells in one fold group cannot be held out by group


def test_probes_leave_out_evaluation_perturbations(blocks_dir, synth, tmp_path):
    from cellmae.bench.probes import evaluation_perturbations

    rels = {"truth": __import__("pandas").DataFrame({"entity1": ["G00", "G01"], "entity2": ["G02", "G03"]})}
    exclude = evaluation_perturbations(rels, synth.groups_table())
    assert exclude == set(synth.GENES)
    table = probe_blocks(blocks_dir, exclude=exclude, seed=0)
    assert set(table["task"]) == {"perturbation"}
    assert (table["n_classes"] == 8).all()  # 4 compounds x 2 doses; every gene is held out
    best = write_probes(table, tmp_path, protocol={"held_out_perturbations": len(exclude)},
                        evaluation_recall={"2": 0.4, "4": 0.2})
    record = json.loads((tmp_path / "best_block.json").read_text())
    assert record["metric"] == "mean_balanced_accuracy" and record["block"] == best["block"]
    assert record["protocol"] == {"held_out_perturbations": 24} and record["evaluation_recall"]["2"] == 0.4
    with pytest.raises(ValueError, match="outside the 28 evaluation perturbations"):
        probe_blocks(blocks_dir, exclude=exclude | {"C0", "C1", "C2", "C3"})
