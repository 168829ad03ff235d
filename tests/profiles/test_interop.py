"""Profiles in and out: our map read unchanged by pycytominer and copairs; a CellProfiler-style table
through `cellmae map` and `cellmae bench`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.schema import (
    EXPERIMENT,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    PLATE,
    WELL,
    feature_columns,
)
from cellmae.profiles.align import center_scale_on_controls

from .screen import synthetic_table, well_ids


@pytest.fixture(scope="module")
def pycytominer():
    """pycytominer, imported here: its import turns pandas' copy_on_write on for the whole process,
    which must not leak into other tests (they run under the pandas default, as users do)."""
    saved = pd.get_option("mode.copy_on_write")
    module = pytest.importorskip("pycytominer")
    yield module
    pd.set_option("mode.copy_on_write", saved)


@pytest.fixture(scope="module")
def our_map(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    synthetic_table(n_batches=2, n_genes=8, n_controls=10, dim=6).to_parquet(root / "wells.parquet", index=False)
    res = CliRunner().invoke(app, ["map", str(root / "wells.parquet"), "--out", str(root / "map"), "--align", "tvn"])
    assert res.exit_code == 0, res.output
    return root / "map"


def test_pycytominer_reads_our_map_unchanged(our_map, pycytominer):
    aligned = pd.read_parquet(our_map / "aligned.parquet")
    feats = feature_columns(aligned)
    # normalize: pycytominer's standardize on control wells == our center-scale on all controls
    norm = pycytominer.normalize(aligned, features=feats, meta_features="infer", samples=f"{IS_CONTROL} == True",
                                 method="standardize")
    ours = center_scale_on_controls(aligned[feats].to_numpy(), None, aligned[IS_CONTROL].to_numpy())
    np.testing.assert_allclose(norm[feats].to_numpy(), ours, rtol=1e-4, atol=1e-4)
    assert list(norm.columns) == list(aligned.columns)  # metadata recognised by its Metadata_ prefix
    selected = pycytominer.feature_select(norm, features=feats, operation=["variance_threshold"])
    assert set(feature_columns(selected)) <= set(feats) and IS_CONTROL in selected.columns
    # aggregate: pycytominer's mean per perturbation == our aggregated.parquet (genes: no dose)
    genes = aligned[(aligned[PERTURBATION_TYPE] == "CRISPR") & ~aligned[IS_CONTROL]]
    theirs = pycytominer.aggregate(genes, strata=[PERTURBATION], features=feats, operation="mean")
    ours = pd.read_parquet(our_map / "aggregated.parquet")
    ours = ours[ours[PERTURBATION_TYPE] == "CRISPR"].set_index(PERTURBATION).loc[theirs[PERTURBATION]]
    np.testing.assert_allclose(theirs[feats].to_numpy(), ours[feats].to_numpy(), rtol=1e-4, atol=1e-5)


def test_copairs_reads_our_map_unchanged(our_map):
    from copairs.map import average_precision, mean_average_precision

    aligned = pd.read_parquet(our_map / "aligned.parquet")
    feats = feature_columns(aligned)
    meta = aligned.drop(columns=feats)
    ap = average_precision(meta, aligned[feats].to_numpy(), pos_sameby=[PERTURBATION], pos_diffby=[],
                           neg_sameby=[], neg_diffby=[IS_CONTROL])
    maps = mean_average_precision(ap, [PERTURBATION], null_size=200, threshold=0.05, seed=0)
    assert set(maps[PERTURBATION]) >= {f"GENE{i}" for i in range(8)}
    assert maps["mean_average_precision"].between(0, 1).all()


def _cellprofiler_table(genes: list[str], *, ptype: str = "CRISPR", reps: int = 3, seed: int = 0) -> pd.DataFrame:
    """Per-well CellProfiler-style profiles: Cells_/Cytoplasm_/Nuclei_ features, Image_ counts, our metadata."""
    rng = np.random.default_rng(seed)
    names = ["Cells_AreaShape_Area", "Cells_Intensity_MeanIntensity_AGP", "Cytoplasm_Texture_Contrast_RNA",
             "Nuclei_AreaShape_Eccentricity", "Nuclei_Intensity_IntegratedIntensity_DNA"]
    effects = {g: rng.normal(size=len(names)) * 2 for g in genes}
    rows = []
    for plate in ("P1", "P2"):
        shift = rng.normal(size=len(names))
        items = [(g, ptype, False) for g in genes for _ in range(reps)] + [("DMSO", "CONTROL", True)] * 8
        for well, (pert, kind, ctrl) in zip(well_ids(len(items)), items, strict=True):
            x = (np.zeros(len(names)) if ctrl else effects[pert]) + shift + rng.normal(size=len(names)) * 0.3
            rows.append({EXPERIMENT: "batch1", PLATE: plate, WELL: well, PERTURBATION: pert, PERTURBATION_TYPE: kind,
                         IS_CONTROL: ctrl, "Image_Count_Cells": int(rng.integers(200, 400)),
                         **dict(zip(names, x, strict=True))})
    return pd.DataFrame(rows)


def test_cellprofiler_table_through_map_and_bench(tmp_path):
    genes = ["POLR2A", "POLR2B", "GORASP1", "GOLGA2", "NDUFA2", "COX7C"]  # pairs in the builtin sets
    table = _cellprofiler_table(genes)
    table.to_csv(tmp_path / "profiles.csv", index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["map", str(tmp_path / "profiles.csv"), "--out", str(tmp_path / "map"),
                              "--batch-col", PLATE, "--align", "center_scale"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "map" / "map.json").read_text())
    assert summary["input_dim"] == 5 and summary["input_features"][0] == "Cells_AreaShape_Area"  # Image_ left out
    res = runner.invoke(app, ["bench", str(tmp_path / "map"), "--out", str(tmp_path / "bench"), "-r", "builtin",
                              "--null-size", "50", "--map-null-size", "50"])
    assert res.exit_code == 0, res.output
    recall = json.loads((tmp_path / "bench" / "summary.json").read_text())["recall"]
    assert set(recall) == {"HuMAP", "Reactome", "StringDB"} and recall["HuMAP"]["n_pairs"] >= 2
    # the user's own (already normalized) table benchmarked directly, features chosen by a regex
    res = runner.invoke(app, ["bench", str(tmp_path / "profiles.csv"), "--out", str(tmp_path / "bench2"),
                              "--features", "Nuclei_.*|Cells_.*", "-r", "builtin", "--null-size", "50",
                              "--map-null-size", "50", "--batch-column", PLATE])
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "bench2" / "summary.json").read_text())
    assert got["n_wells"] == len(table) and got["n_perturbations"] == len(genes)


def test_bench_without_gene_perturbations_names_the_types_found(tmp_path):
    table = _cellprofiler_table(["CPD1", "CPD2", "CPD3"], ptype="COMPOUND")
    table.to_parquet(tmp_path / "cpds.parquet", index=False)
    args = ["bench", str(tmp_path / "cpds.parquet"), "--out", str(tmp_path / "b"), "-r", "builtin",
            "--null-size", "50", "--map-null-size", "50", "--batch-column", PLATE]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert f"{tmp_path / 'cpds.parquet'}: found perturbation types COMPOUND (18 wells)" in res.output
    assert "--gene-types" in res.output
    assert "Metadata_PerturbationType" in res.output
    res = CliRunner().invoke(app, [*args, "--gene-types", "COMPOUND"])  # the user says these name genes
    assert res.exit_code == 0, res.output
