"""One profile table (cellmae.data.profiles): one perturbation key, features by name, formats by content."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.bench.consistency import replicate_consistency
from cellmae.cli import app
from cellmae.data.profiles import Profiles, infer_features, parse_features, perturbation_key
from cellmae.data.schema import CONCENTRATION, PERTURBATION, PERTURBATION_TYPE, SchemaError
from cellmae.data.tables import table_format
from cellmae.profiles.aggregate import aggregate
from cellmae.profiles.filtering import filter_wells
from cellmae.utils.errors import InputError

from .screen import synthetic_table


def _dosed_genes() -> pd.DataFrame:
    """The three old keys disagreed here: a CRISPR gene that also carries a concentration."""
    t = synthetic_table(n_batches=1, n_genes=3, reps=2, n_controls=6, dim=4, seed=1)
    genes = t[PERTURBATION_TYPE] == "CRISPR"
    t.loc[genes, CONCENTRATION] = np.where(np.arange(genes.sum()) % 2 == 0, 0.1, 1.0)
    return t


def test_one_key_for_aggregate_filter_and_bench():
    t = _dosed_genes()
    key = perturbation_key(t)
    assert set(key[t[PERTURBATION_TYPE] == "COMPOUND"]) == {"CPD0@0.1", "CPD0@1", "CPD1@0.1", "CPD1@1"}
    assert set(key[t[PERTURBATION_TYPE] == "CRISPR"]) == {"GENE0", "GENE1", "GENE2"}  # no dose for genes
    prof = Profiles.from_frame(t, wells=True)
    groups, _ = aggregate(prof.features, prof.meta)
    assert sorted(perturbation_key(groups)) == sorted(set(key[~t["Metadata_IsControl"]]))
    # min_replicates counts by the key: each gene has 2 wells (one per dose) and passes 2
    kept, report = filter_wells(prof, min_replicates=2)
    assert report.dropped["too_few_replicates"] == 0 and len(kept) == len(prof)
    cons = replicate_consistency(prof, n_null=50, seed=0)
    assert set(cons["perturbation_key"]) == set(groups.pipe(perturbation_key))


def test_features_by_list_regex_and_cellprofiler_prefixes():
    saved = pd.get_option("mode.copy_on_write")  # importing pycytominer turns it on process-wide
    pycytominer = pytest.importorskip("pycytominer.cyto_utils")
    pd.set_option("mode.copy_on_write", saved)
    cols = ["Metadata_Plate", "Cells_AreaShape_Area", "Cytoplasm_Intensity_Mean_DNA", "Nuclei_Texture_X",
            "Image_Count_Cells", "other"]
    df = pd.DataFrame(np.ones((2, len(cols))), columns=cols)
    assert infer_features(cols) == pycytominer.infer_cp_features(df)  # the reference rule
    assert infer_features(cols, parse_features("Nuclei_.*|Cells_.*")) == ["Cells_AreaShape_Area", "Nuclei_Texture_X"]
    assert infer_features(cols, parse_features("other, Image_Count_Cells")) == ["other", "Image_Count_Cells"]
    assert infer_features(["Metadata_Plate", "feature_0000", "Cells_A"]) == ["feature_0000"]  # ours first
    with pytest.raises(InputError, match="--features"):
        infer_features(["Metadata_Plate", "x"])
    with pytest.raises(InputError, match=r"\['nope'\] not in the table"):
        infer_features(cols, ["nope"])
    bad = pd.DataFrame({PERTURBATION: ["A", "B"], "Cells_A": ["1.0", "oops"]})
    with pytest.raises(SchemaError, match="row 2, column Cells_A"):
        Profiles.from_frame(bad)


def test_reader_decides_by_content_not_suffix(tmp_path):
    t = synthetic_table(n_batches=1, n_genes=2, n_controls=2, dim=3)
    ref = Profiles.from_frame(t, wells=True)
    t.to_parquet(tmp_path / "parquet.csv", index=False)  # a misleading suffix
    t.to_csv(tmp_path / "table.parquet", index=False)
    with gzip.open(tmp_path / "table.tsv.gz", "wt") as fh:
        t.to_csv(fh, sep="\t", index=False)
    ref.write(tmp_path / "h5.data", "anndata_h5ad")
    ref.to_anndata().write_zarr(tmp_path / "store.zarr")
    names = {"parquet.csv": "parquet", "table.parquet": "csv", "table.tsv.gz": "csv", "h5.data": "h5ad",
             "store.zarr": "zarr"}
    for name, kind in names.items():
        assert table_format(tmp_path / name) == kind
        got = Profiles.read(tmp_path / name, wells=True)
        np.testing.assert_allclose(got.features, ref.features, rtol=1e-6)
        pd.testing.assert_frame_equal(got.meta, ref.meta, check_dtype=False, check_categorical=False)
        assert got.feature_names == ref.feature_names


def test_h5ad_has_well_ids_and_provenance(tmp_path):
    ad = pytest.importorskip("anndata")
    t = synthetic_table(n_batches=2, n_genes=2, n_controls=2, dim=3)
    prof = Profiles.from_frame(t, wells=True, provenance={"model": "m", "block": 6, "pool": "mean", "x": None})
    adata = ad.read_h5ad(prof.write(tmp_path / "w.h5ad", "anndata_h5ad"))
    assert adata.obs_names[0] == "EXP0_EXP0_P1_B02" and adata.obs_names.is_unique
    assert adata.uns["model"] == "m" and adata.uns["block"] == 6 and "x" not in adata.uns
    assert list(adata.var_names) == list(prof.feature_names)


def test_map_output_type_anndata_and_bench_reads_it(tmp_path):
    ad = pytest.importorskip("anndata")
    t = synthetic_table(n_batches=2, n_genes=6, n_controls=8, dim=6)
    t.to_csv(tmp_path / "wells.csv", index=False)
    res = CliRunner().invoke(app, ["map", str(tmp_path / "wells.csv"), "--out", str(tmp_path / "map"),
                                   "--output-type", "anndata_h5ad", "--align", "center_scale"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "map").iterdir()) == ["aggregated.h5ad", "aligned.h5ad", "manifest.json",
                                                                   "map.json"]
    agg = ad.read_h5ad(tmp_path / "map" / "aggregated.h5ad")
    assert "GENE0" in agg.obs_names and "CPD0@0.1" in agg.obs_names  # aggregated rows are named by their key
    assert json.loads(agg.uns["map"])["align"] == "center_scale"
    res = CliRunner().invoke(app, ["bench", str(tmp_path / "map"), "--out", str(tmp_path / "bench"),
                                   "--null-size", "50", "--map-null-size", "50"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "bench" / "summary.json").read_text())["n_wells"] == len(t)


def test_partition_folders_round_trip_odd_values_through_pandas_and_ours(tmp_path):
    from cellmae.data.tables import PARTITION_COLUMNS, partition_dir, read_parquet_parts

    t = synthetic_table(n_batches=2, n_genes=1, n_controls=2, dim=2)
    t["Metadata_Experiment"] = t["Metadata_Experiment"].map({"EXP0": "HUVEC 1/a", "EXP1": "x=y%z"})
    for values, part in t.groupby(list(PARTITION_COLUMNS), sort=True):
        folder = tmp_path / partition_dir(values)
        folder.mkdir(parents=True)
        part.drop(columns=list(PARTITION_COLUMNS)).to_parquet(folder / "part-0.parquet", index=False)
    ours = read_parquet_parts(tmp_path)
    theirs = pd.read_parquet(tmp_path)
    assert sorted(ours.columns) == sorted(theirs.columns) == sorted(t.columns)  # nothing stray, nothing lost
    assert set(ours["Metadata_Experiment"]) == set(theirs["Metadata_Experiment"].astype(str)) == {"HUVEC 1/a", "x=y%z"}
    assert list(ours.columns[:2]) == list(PARTITION_COLUMNS)


def test_control_flags_as_text_are_read_as_meant(tmp_path):
    df = pd.DataFrame({PERTURBATION: ["A", "B", "C"], "Metadata_IsControl": ["False", "TRUE", "0"],
                       "feature_0000": [1.0, 2.0, 3.0]})
    assert Profiles.from_frame(df).meta["Metadata_IsControl"].tolist() == [False, True, False]
    df["Metadata_IsControl"] = ["False", "maybe", "0"]
    with pytest.raises(SchemaError, match="row 2, column Metadata_IsControl"):
        Profiles.from_frame(df)


def test_a_table_of_wells_without_schema_columns_says_what_to_add():
    t = synthetic_table(n_batches=1, n_genes=1, n_controls=2, dim=2).drop(columns=["Metadata_Experiment"])
    with pytest.raises(SchemaError, match=r"\['Metadata_Experiment'\].*the batch of each well"):
        Profiles.from_frame(t, source="cp.csv", wells=True)
