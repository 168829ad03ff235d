from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cellmae.bench.relationships import DEFAULT_SOURCES, load_relationships, normalize_pairs


def test_load_directory_reads_the_five_sources(relationships_dir: Path) -> None:
    rels = load_relationships(relationships_dir)
    assert list(rels) == list(DEFAULT_SOURCES)
    corum = rels["CORUM"]
    assert list(corum.columns) == ["entity1", "entity2"]
    assert len(corum) == len(pd.read_csv(relationships_dir / "CORUM.txt"))
    assert all(isinstance(v, str) for v in corum["entity1"].head(50))


def test_load_explicit_paths_and_names(tmp_path: Path) -> None:
    a = tmp_path / "mine.csv"
    a.write_text("entity1,entity2\nA,B\nB,A\n")
    b = tmp_path / "other.csv"
    b.write_text("entity1,entity2,score\nC,D,1\n")
    rels = load_relationships([a, b])
    assert sorted(rels) == ["mine", "other"]
    assert list(rels["other"].columns) == ["entity1", "entity2"]
    assert list(load_relationships(tmp_path, names=["other"])) == ["other"]
    assert list(load_relationships(a)) == ["mine"]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("gene_a,gene_b\nA,B\n")
    with pytest.raises(ValueError, match="bad.csv.*entity1"):
        load_relationships(bad)
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        load_relationships([tmp_path / "nothere.csv"])
    with pytest.raises(FileNotFoundError, match="CORUM"):
        load_relationships(tmp_path, names=["CORUM"])


def test_values_are_str_of_what_read_csv_parsed(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("entity1,entity2\nNA,B\n7,B\n")  # read_csv turns NA into NaN and 7 into a float column
    rels = load_relationships(f)
    assert rels["x"]["entity1"].tolist() == ["nan", "7.0"]


def test_normalize_pairs_sorts_dedups_drops_self_and_outsiders() -> None:
    df = pd.DataFrame({"entity1": ["B", "A", "A", "C", "A", "Z"], "entity2": ["A", "B", "A", "A", "C", "A"]})
    out = normalize_pairs(df, universe=["A", "B", "C"])
    assert out.values.tolist() == [["A", "B"], ["A", "C"]]
    assert normalize_pairs(df).values.tolist() == [["A", "B"], ["A", "C"], ["A", "Z"]]


def test_builtin_sets_are_the_public_pairs_normalised(relationships_dir: Path, tmp_path: Path) -> None:
    from cellmae.bench.relationships import BUILTIN_SOURCES, builtin_dir, bundle

    builtin = load_relationships("builtin")
    assert sorted(builtin) == sorted(BUILTIN_SOURCES) == ["HuMAP", "Reactome", "StringDB"]
    public = load_relationships(relationships_dir, names=list(BUILTIN_SOURCES))
    for name in BUILTIN_SOURCES:  # what recall scores is the same set of pairs
        ours, theirs = normalize_pairs(builtin[name]), normalize_pairs(public[name])
        assert set(map(tuple, ours.to_numpy())) == set(map(tuple, theirs.to_numpy())) and len(ours) == len(theirs)
    # the shipped bytes are reproducible from the public files, and only CC0 / CC BY sets ship
    counts = bundle(relationships_dir, tmp_path)
    for name in BUILTIN_SOURCES:
        assert (tmp_path / f"{name}.csv.gz").read_bytes() == (builtin_dir() / f"{name}.csv.gz").read_bytes()
    shipped = sorted(p.name for p in builtin_dir().iterdir())
    assert shipped == ["ATTRIBUTION.txt", "HuMAP.csv.gz", "LICENSE", "Reactome.csv.gz", "StringDB.csv.gz"]
    attribution = (builtin_dir() / "ATTRIBUTION.txt").read_text()
    for name, n in counts.items():
        assert f"{name}.csv.gz ({n:,} pairs)" in attribution
    assert sum((builtin_dir() / f"{n}.csv.gz").stat().st_size for n in BUILTIN_SOURCES) < 600_000


def test_simulator_gene_groups_rebuild_from_the_shipped_sets() -> None:
    pytest.importorskip("networkx")  # a build-time tool of the simulator's resources
    from cellmae.bench.relationships import builtin_dir
    from cellmae.data.simulate.build_resources import gene_groups

    shipped = Path(__file__).parents[2] / "cellmae" / "data" / "simulate" / "resources" / "gene_groups.csv"
    pd.testing.assert_frame_equal(gene_groups(builtin_dir()), pd.read_csv(shipped))  # one copy of the pairs


def test_builtin_mixes_with_other_files(tmp_path: Path) -> None:
    own = tmp_path / "CORUM.csv"
    own.write_text("entity1,entity2\nA,B\n")
    got = load_relationships(["builtin", own])
    assert sorted(got) == ["CORUM", "HuMAP", "Reactome", "StringDB"] and len(got["CORUM"]) == 1


def test_a_gene_in_two_modalities_is_refused_with_the_way_out(tmp_path):
    import numpy as np
    import pandas as pd
    import pytest

    from cellmae.bench.benchmark import BenchOptions, _recall
    from cellmae.data.profiles import Profiles

    rels = tmp_path / "rels.csv"
    rels.write_text("entity1,entity2\nGENEA,GENEB\n")
    meta = pd.DataFrame({"Metadata_Perturbation": ["GENEA", "GENEA", "GENEB", "GENEC"],
                         "Metadata_PerturbationType": ["CRISPR", "ORF", "CRISPR", "CRISPR"],
                         "Metadata_IsControl": [False] * 4})
    feats = pd.DataFrame(np.random.default_rng(0).normal(size=(4, 3)), columns=[f"feature_{i:04d}" for i in range(3)])
    agg = Profiles.from_frame(pd.concat([meta, feats], axis=1))
    with pytest.raises(ValueError, match=r"GENEA: CRISPR, ORF.*--gene-types CRISPR"):
        _recall(agg, BenchOptions(relationships=[rels]))
    table = _recall(agg, BenchOptions(relationships=[rels], gene_types=["CRISPR"]))
    assert len(table)
