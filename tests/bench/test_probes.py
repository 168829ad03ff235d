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
    assert (tmp_path / "probes.csv").read_text().startswith("block,task,accuracy,f1")
    assert best_block(table, "group_accuracy")["block"] == 2


def test_probe_tasks_on_one_block(aligned_wells, synth):
    prof = profiles_from_frame(aligned_wells)
    p = perturbation_probe(prof, seed=0)
    # 32 perturbation keys (24 genes + 4 compounds x 2 doses), 4 wells each; inert genes are indistinguishable
    assert p["n_classes"] == 32 and p["n_samples"] == 128
    assert p["accuracy"] > 3 * p["chance"]
    g = group_probe(prof, synth.groups_table(), seed=0)
    assert g["n_classes"] == 6 and g["n_samples"] == 96  # only gene wells carry a group


def test_best_block_and_read_best_block_errors(tmp_path):
    import pandas as pd

    t = pd.DataFrame({"block": [1, 2], "task": ["perturbation"] * 2, "accuracy": [0.5, 0.5], "f1": [0.4, 0.4]})
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
