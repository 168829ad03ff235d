import numpy as np
import pandas as pd
import pytest

from cellmae.bench.inputs import (
    find_group_file,
    profiles_from_frame,
    read_compound_targets,
    read_groups,
    read_map_dir,
)
from cellmae.data.profiles import perturbation_key
from cellmae.data.schema import SchemaError
from cellmae.utils.errors import InputError


def test_read_groups_csv_and_clusters(tmp_path):
    csv = tmp_path / "genes.csv"
    pd.DataFrame({"gene": ["A", "B", "C"], "group": ["g1", "g1", None], "strength": [1, 2, 3]}).to_csv(csv, index=False)
    g = read_groups(csv)
    assert g.to_dict("list") == {"gene": ["A", "B"], "group": ["g1", "g1"]}
    tsv = tmp_path / "x_clusters.tsv"
    tsv.write_text("complex one\tA B C\ncomplex two\tC D\n")
    g = read_groups(tsv)
    assert len(g) == 5 and set(g[g["gene"] == "C"]["group"]) == {"complex one", "complex two"}
    assert find_group_file(tmp_path) == csv
    assert find_group_file(tmp_path / "anything.csv") == csv
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"gene": ["A"], "colour": ["red"]}).to_csv(bad, index=False)
    with pytest.raises(SchemaError, match="group"):
        read_groups(bad)


def test_read_real_corum_clusters(relationships_dir):
    g = read_groups(relationships_dir / "CORUM_clusters.tsv")
    assert g["group"].nunique() > 1000
    assert {"SNRPE", "SNRPF", "SNRPG"} <= set(g.loc[g["group"] == "(E.F.G) complex", "gene"])
    assert find_group_file(relationships_dir) == relationships_dir / "CORUM_clusters.tsv"


def test_read_compound_targets_splits_multi_targets(tmp_path):
    p = tmp_path / "compounds.csv"
    pd.DataFrame({"compound": ["C1", "C1", "C2"], "target_gene": ["G1", "G1", "G2|G3"],
                  "concentration": [0.1, 1.0, 1.0]}).to_csv(p, index=False)
    t = read_compound_targets(p)
    assert sorted(map(tuple, t.to_numpy())) == [("C1", "G1"), ("C2", "G2"), ("C2", "G3")]


def test_profiles_validation_and_keys(tmp_path):
    df = pd.DataFrame({"Metadata_Perturbation": ["A", "B"], "Metadata_Concentration": [np.nan, 0.5],
                       "Metadata_PerturbationType": ["CRISPR", "COMPOUND"], "feature_0000": [1.0, np.nan]})
    with pytest.raises(SchemaError, match="row 2"):
        profiles_from_frame(df)
    df["feature_0000"] = [1.0, 2.0]
    prof = profiles_from_frame(df)
    assert prof.features.dtype == np.float32 and not prof.meta["Metadata_IsControl"].any()
    assert list(perturbation_key(prof.meta)) == ["A", "B@0.5"]
    with pytest.raises(InputError, match="no manifest.json"):
        read_map_dir(tmp_path)
