import itertools
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.bench.summary import read_summary
from cellmae.cli import app


@pytest.fixture(scope="module")
def truth_dir(tmp_path_factory, synth):
    """Simulator-like truth folder: relationships.csv, genes.csv (groups), compounds.csv."""
    d = tmp_path_factory.mktemp("truth")
    pairs = [(a, b) for g in synth.GROUPED_GENES for a, b in itertools.combinations(synth.GROUPED_GENES, 2)
             if synth.GROUP_OF[a] == synth.GROUP_OF[b] == synth.GROUP_OF[g]]
    pd.DataFrame(sorted(set(pairs)), columns=["entity1", "entity2"]).to_csv(d / "relationships.csv", index=False)
    synth.groups_table().to_csv(d / "genes.csv", index=False)
    synth.targets_table().to_csv(d / "compounds.csv", index=False)
    return d


def _embed_dir(root, wells):
    for plate, part in wells.groupby("Metadata_Plate"):
        (root / f"plate={plate}").mkdir(parents=True)
        part.drop(columns="Metadata_Plate").to_parquet(root / f"plate={plate}" / "part-0.parquet", index=False)
    return root


def test_bench_end_to_end(tmp_path, synth, screen_wells, truth_dir, relationships_dir):
    map_dir = synth.write_map_dir(tmp_path / "map" / "m" / "block06", screen_wells)
    embed = _embed_dir(tmp_path / "embed", screen_wells)
    out = tmp_path / "bench" / "m" / "block06"
    res = CliRunner().invoke(app, [
        "bench", str(map_dir), "--out", str(out), "-r", str(truth_dir / "relationships.csv"),
        "-r", str(relationships_dir / "Reactome.txt"), "--truth-compounds", str(truth_dir / "compounds.csv"),
        "--embed-dir", str(embed), "--map-null-size", "1000", "--null-size", "500",
    ])
    assert res.exit_code == 0, res.output
    for name in ("recall.csv", "consistency.csv", "map_copairs.csv", "compound_gene.csv", "batch.csv", "summary.json"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())  # strict JSON (no NaN)
    assert s == read_summary(out)
    assert s["n_perturbations"] == 32 and s["n_wells"] == len(screen_wells)
    # planted within-group pairs are recalled; Reactome genes are not in this map at all
    assert s["recall"]["relationships"]["recall_0.05_0.95"] > 0.5
    assert s["recall"]["relationships"]["n_pairs"] == 24
    assert s["recall"]["Reactome"]["n_pairs"] == 0 and s["recall"]["Reactome"]["recall_0.05_0.95"] is None
    assert 0.5 < s["consistency"]["fraction_p_le_0.05"] <= 1
    rt = s["consistency"]["replicate_test"]
    assert rt["null"] == "random-pairs" and rt["mean_difference"] > 0 and rt["ks_p_value"] < 0.01
    assert s["map"]["activity"]["fraction_significant"] > 0.5 and s["map"]["consistency"]["n"] == 6
    cg = s["compound_gene"]
    assert cg["n_compounds"] == 4 and cg["mean_auc"] > cg["random_mean_auc"]
    assert s["batch"]["before"]["accuracy"] > s["batch"]["after"]["accuracy"]
    assert set(s["skipped"]) == set()
    m = pd.read_csv(out / "map_copairs.csv")
    assert set(m["kind"]) == {"activity", "consistency"}


def test_bench_accepts_a_simulator_truth_folder(tmp_path, synth, screen_wells, truth_dir):
    map_dir = synth.write_map_dir(tmp_path / "map", screen_wells)
    out = tmp_path / "bench"
    res = CliRunner().invoke(app, ["bench", str(map_dir), "--out", str(out), "-r", str(truth_dir),
                                   "--map-null-size", "200", "--null-size", "200", "--replicate-null", "negative-controls"])
    assert res.exit_code == 0, res.output
    s = read_summary(out)
    assert s["consistency"]["replicate_test"]["null"] == "negative-controls"
    assert list(s["recall"]) == ["relationships"]  # genes.csv / compounds.csv are not relationship tables
    assert s["compound_gene"]["n_compounds"] == 4 and s["map"]["consistency"]["n"] == 6
    assert s["inputs"]["truth_compounds"].endswith("compounds.csv")


def test_bench_without_optional_inputs(tmp_path, synth, screen_wells):
    map_dir = synth.write_map_dir(tmp_path / "map", screen_wells)
    out = tmp_path / "bench"
    res = CliRunner().invoke(app, ["bench", str(map_dir), "--out", str(out), "--map-null-size", "200", "--null-size", "200"])
    assert res.exit_code == 0, res.output
    s = read_summary(out)
    assert s["recall"] is None and s["compound_gene"] is None and s["batch"]["before"] is None
    assert {"recall", "compound_gene", "map_consistency", "batch_before"} <= set(s["skipped"])
    assert not (out / "compound_gene.csv").exists()


def test_bench_folder_of_blocks_runs_probes_and_resumes(tmp_path, synth, truth_dir):
    root = tmp_path / "map" / "m"
    for name, signal in (("block03", 0.0), ("block05", 1.0)):
        synth.write_map_dir(root / name, synth.make_screen(2, signal=signal))
    out = tmp_path / "bench" / "m"
    args = ["bench", str(root), "--out", str(out), "--groups", str(truth_dir / "genes.csv"),
            "--map-null-size", "200", "--null-size", "200"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "block03" / "summary.json").is_file() and (out / "block05" / "summary.json").is_file()
    best = json.loads((out / "best_block.json").read_text())
    assert best["block"] == 5 and best["metric"] == "mean_balanced_accuracy"
    # the 24 genes of --groups are evaluation labels: the probes ran on the compounds only
    assert best["protocol"]["held_out_perturbations"] == 24 and best["protocol"]["fold_column"] == "Metadata_Plate"
    assert set(pd.read_csv(out / "probes.csv")["block"]) == {3, 5}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "already benchmarked" in again.output


def test_bench_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(app, ["bench", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "block" in res.output
    assert not (tmp_path / "o").exists()


def _proxy_screen(synth, signal: float, seed: int):
    """A separate screen: genes P00.. (none of the evaluation's G00..), its own groups, no compounds."""
    wells = synth.make_screen(seed, signal=signal)
    wells = wells[wells["Metadata_PerturbationType"] != "COMPOUND"].copy()
    wells["Metadata_Perturbation"] = wells["Metadata_Perturbation"].str.replace("G", "P", regex=False)
    groups = synth.groups_table().assign(gene=lambda t: t["gene"].str.replace("G", "P", regex=False))
    return wells, groups


def test_bench_probe_map_chooses_the_block_on_the_proxy_screen_only(tmp_path, synth, truth_dir):
    """`--probe-map`: the probes run on a separate screen's maps, so the evaluation truth cannot move the choice."""
    evaluation, proxy = tmp_path / "map" / "m", tmp_path / "proxy" / "map" / "m"
    for name, eval_signal, proxy_signal in (("block03", 1.0, 0.0), ("block05", 0.0, 1.0)):
        synth.write_map_dir(evaluation / name, synth.make_screen(2, signal=eval_signal))
        wells, groups = _proxy_screen(synth, proxy_signal, seed=3)
        synth.write_map_dir(proxy / name, wells)
    groups.to_csv(tmp_path / "proxy_genes.csv", index=False)
    few = tmp_path / "few.csv"
    pd.read_csv(truth_dir / "relationships.csv").head(2).to_csv(few, index=False)
    records = []
    for i, (rels, eval_groups) in enumerate(((truth_dir / "relationships.csv", truth_dir / "genes.csv"), (few, None))):
        out = tmp_path / f"out{i}"
        args = ["bench", str(evaluation), "--out", str(out), "--probes-only", "-r", str(rels), "--probe-map", str(proxy),
                "--probe-groups", str(tmp_path / "proxy_genes.csv")]
        res = CliRunner().invoke(app, args + (["--groups", str(eval_groups)] if eval_groups else []))
        assert res.exit_code == 0, res.output
        best = json.loads((out / "best_block.json").read_text())
        probes = pd.read_csv(out / "probes.csv")
        # the proxy's biology is in block05 (the evaluation's in block03): the proxy's answer
        assert best["block"] == 5 and best["protocol"]["probe_screen"] == str(proxy)
        # 24 proxy genes (no compounds), 4 groups with a phenotype direction and 2 more: every class is the proxy's
        assert set(probes["task"]) == {"perturbation", "group"}
        assert probes.loc[probes["task"] == "perturbation", "n_classes"].eq(24).all()
        best["protocol"].pop("held_out_perturbations")  # how many evaluation names were left out: 24, then 4
        records.append((best, probes))
    assert records[0][0] == records[1][0]
    pd.testing.assert_frame_equal(records[0][1], records[1][1])


def test_bench_probe_map_needs_the_same_blocks(tmp_path, synth):
    evaluation, proxy = tmp_path / "map" / "m", tmp_path / "proxy" / "m"
    synth.write_map_dir(evaluation / "block03", synth.make_screen(2))
    synth.write_map_dir(evaluation / "block05", synth.make_screen(2))
    synth.write_map_dir(proxy / "block03", _proxy_screen(synth, 1.0, 3)[0])
    res = CliRunner().invoke(app, ["bench", str(evaluation), "--out", str(tmp_path / "o"), "--probes-only",
                                   "--probe-map", str(proxy)])
    assert res.exit_code == 2 and "--probe-map" in res.output and "[3]" in res.output
    one = CliRunner().invoke(app, ["bench", str(evaluation / "block03"), "--out", str(tmp_path / "o1"),
                                   "--probe-map", str(proxy)])
    assert one.exit_code == 2 and "--probe-map" in one.output


def test_bench_negative_control_perturbations(tmp_path, synth, screen_wells):
    map_dir = synth.write_map_dir(tmp_path / "map", screen_wells)
    base = ["bench", str(map_dir), "--map-null-size", "200", "--null-size", "200", "--consistency-null", "negative-controls"]
    res = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o1")])
    assert res.exit_code == 2 and "--negative-controls" in res.output and not (tmp_path / "o1").exists()
    names = tmp_path / "unexpressed.txt"
    names.write_text("# genes without phenotype\n" + "\n".join(synth.INERT_GENES) + "\n")
    out = tmp_path / "o2"
    res = CliRunner().invoke(app, [*base, "--out", str(out), "--negative-controls", str(names),
                                   "--replicate-null", "negative-controls"])
    assert res.exit_code == 0, res.output
    cons = pd.read_csv(out / "consistency.csv")
    assert (cons["null_from"] == "negative-controls").all() and not set(synth.INERT_GENES) & set(cons["Metadata_Perturbation"])
    test = json.loads((out / "summary.json").read_text())["consistency"]["replicate_test"]
    assert test["null"] == "negative-controls" and test["negative_controls"] == 4
