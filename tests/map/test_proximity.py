"""Proximity-bias (chromosome-arm) correction, tested on profiles with a planted arm effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.map.proximity import arm_center, arm_of_location, read_arm_table

from .screen import synthetic_table
from .test_map_cli import write_embedding_dataset

ARMS = ("1p", "1q", "2p", "17q")


def reference_arm_centering(x: np.ndarray, arms: list[str | None], min_genes: int = 2) -> np.ndarray:
    """The definition, by explicit loops: minus the mean of the genes on the same arm."""
    out = x.astype(np.float64).copy()
    for i, a in enumerate(arms):
        same = [j for j, b in enumerate(arms) if a is not None and b == a]
        if a is not None and len(same) >= min_genes:
            out[i] = x[i] - x[same].mean(axis=0)
    return out


def planted(seed: int = 0, n_per_arm: int = 10, dim: int = 16):
    """Genes on four arms: a strong shared offset per arm, plus a function shared by one gene of each arm
    (function k = genes k of every arm), so true partners always sit on different arms."""
    rng = np.random.default_rng(seed)
    arm_offset = {a: rng.normal(size=dim) * 3 for a in ARMS}
    function = rng.normal(size=(n_per_arm, dim))
    genes, arms, rows = [], [], []
    for a in ARMS:
        for k in range(n_per_arm):
            genes.append(f"G{a}{k}")
            arms.append(a)
            rows.append(arm_offset[a] + function[k] + 0.3 * rng.normal(size=dim))
    return genes, arms, np.asarray(rows)


def _cos(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


def test_arm_centering_removes_the_planted_arm_effect():
    genes, arms, x = planted()
    table = pd.Series(arms, index=genes)
    got, report = arm_center(x, genes, table)
    np.testing.assert_allclose(got, reference_arm_centering(x, arms), atol=1e-5)
    assert report["genes_corrected"] == 40 and report["arms"] == 4 and report["genes_without_arm"] == 0
    arm = np.asarray(arms)
    same_arm = (arm[:, None] == arm[None, :]) & ~np.eye(len(arm), dtype=bool)
    partners = np.asarray([[int(a[-1]) == int(b[-1]) and a != b for b in genes] for a in genes])
    before, after = _cos(x), _cos(got.astype(np.float64))
    assert before[same_arm].mean() > 0.5 > before[partners].mean()  # the arm dominates before
    assert after[same_arm].mean() < 0.05 and after[partners].mean() > 0.7  # function dominates after


def test_genes_without_arm_and_small_arms_are_left_alone():
    genes, arms, x = planted(n_per_arm=3)
    table = pd.Series(arms, index=genes).drop(["G1p0"])  # one gene the table does not know
    table["G2p0"] = "9q"  # a single gene on its own arm
    got, report = arm_center(x, genes, table)
    i, j = genes.index("G1p0"), genes.index("G2p0")
    np.testing.assert_array_equal(got[[i, j]], x[[i, j]].astype(np.float32))
    assert report["genes_without_arm"] == 1 and report["arms_too_small"] == 1
    ref_arms = [table.get(g) for g in genes]
    np.testing.assert_allclose(got, reference_arm_centering(x, ref_arms), atol=1e-5)


@pytest.mark.parametrize(("loc", "arm"), [("17q21.31", "17q"), ("1p36.33-p36.32", "1p"), ("Xq28", "Xq"),
                                          ("chr2p13.3", "2p"), ("mitochondria", None), ("reserved", None),
                                          ("12p13.2-q24.1", None), ("22pter-q11", None)])
def test_arm_of_location(loc, arm):
    assert arm_of_location(loc) == arm


def test_read_arm_table_accepts_hgnc_layout_and_names_bad_files(tmp_path: Path):
    hgnc = tmp_path / "hgnc_complete_set.txt"
    pd.DataFrame({"hgnc_id": ["HGNC:5", "HGNC:7", "HGNC:1"], "symbol": ["A1BG", "A2M", "MT-X"],
                  "location": ["19q13.43", "12p13.31", "mitochondria"]}).to_csv(hgnc, sep="\t", index=False)
    assert read_arm_table(hgnc).to_dict() == {"A1BG": "19q", "A2M": "12p"}
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"name": ["A"], "where": ["1p"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="--arm-correction .*bad.csv.*gene column"):
        read_arm_table(bad)
    with pytest.raises(ValueError, match="no such file"):
        read_arm_table(tmp_path / "missing.csv")


def test_map_cli_arm_correction(tmp_path: Path):
    table = synthetic_table(n_batches=2, n_genes=6, reps=3, n_controls=16, dim=6)
    embed = write_embedding_dataset(table, tmp_path / "embed" / "block01")
    arms = tmp_path / "arms.csv"
    pd.DataFrame({"gene": [f"GENE{i}" for i in range(6)], "chromosome_arm": ["1p"] * 3 + ["3q"] * 3}).to_csv(arms, index=False)
    plain, corrected = tmp_path / "plain", tmp_path / "corrected"
    assert CliRunner().invoke(app, ["map", str(embed), "--out", str(plain)]).exit_code == 0
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(corrected), "--arm-correction", str(arms)])
    assert res.exit_code == 0, res.output
    a, b = pd.read_parquet(plain / "aggregated.parquet"), pd.read_parquet(corrected / "aggregated.parquet")
    feats = [c for c in a.columns if c.startswith("feature_")]
    genes = a["Metadata_PerturbationType"] == "CRISPR"
    x = a.loc[genes, feats].to_numpy()
    want = reference_arm_centering(x, ["1p"] * 3 + ["3q"] * 3)
    assert a.loc[genes, "Metadata_Perturbation"].tolist() == [f"GENE{i}" for i in range(6)]
    np.testing.assert_allclose(b.loc[genes, feats].to_numpy(), want, atol=1e-5)
    np.testing.assert_array_equal(b.loc[~genes, feats].to_numpy(), a.loc[~genes, feats].to_numpy())  # compounds
    summary = json.loads((corrected / "map.json").read_text())
    assert summary["arm_correction"]["genes_corrected"] == 6 and json.loads((plain / "map.json").read_text())["arm_correction"] is None
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(tmp_path / "x"), "--arm-correction", str(tmp_path / "nope.csv")])
    assert res.exit_code != 0 and "nope.csv" in res.output


def test_builtin_arm_table_knows_well_mapped_genes():
    """The shipped table (NCBI Gene map locations) against textbook locations, and its attribution."""
    from cellmae.map.proximity import builtin_arm_table

    table = read_arm_table("builtin")
    assert len(table) > 60000 and table.nunique() == 48  # 1-22, X, Y: p and q
    known = {"TP53": "17p", "BRCA1": "17q", "MYC": "8q", "KRAS": "12p", "EGFR": "7p", "XIST": "Xq", "SRY": "Yp"}
    assert {g: table[g] for g in known} == known
    assert "CD99" not in table.index  # pseudo-autosomal (X and Y): no single arm
    attribution = (builtin_arm_table().parent / "ATTRIBUTION.txt").read_text()
    assert "NCBI Gene" in attribution and "2022-09-12" in attribution and "public domain" in attribution


def test_map_cli_builtin_arm_correction_removes_a_planted_arm_effect(tmp_path: Path):
    genes = {"GENE0": "TP53", "GENE1": "PER1", "GENE2": "ALOX15", "GENE3": "MYC", "GENE4": "RAD21", "GENE5": "EXT1"}
    arms = ["17p"] * 3 + ["8q"] * 3
    table = synthetic_table(n_batches=2, n_genes=6, reps=3, n_controls=16, dim=6)
    feats = [c for c in table.columns if c.startswith("feature_")]
    offset = {"17p": np.full(len(feats), 4.0), "8q": np.full(len(feats), -4.0)}  # each arm's shared shift
    for old, new in genes.items():
        rows = table["Metadata_Perturbation"] == old
        table.loc[rows, feats] += offset[arms[int(old[-1])]].astype(np.float32)
        table.loc[rows, "Metadata_Perturbation"] = new
    embed = write_embedding_dataset(table, tmp_path / "embed" / "block01")
    plain, corrected = tmp_path / "plain", tmp_path / "corrected"
    assert CliRunner().invoke(app, ["map", str(embed), "--out", str(plain)]).exit_code == 0
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(corrected), "--arm-correction", "builtin"])
    assert res.exit_code == 0, res.output
    a, b = pd.read_parquet(plain / "aggregated.parquet"), pd.read_parquet(corrected / "aggregated.parquet")
    out_feats = [c for c in a.columns if c.startswith("feature_")]
    is_gene = (a["Metadata_PerturbationType"] == "CRISPR").to_numpy()
    names = a.loc[is_gene, "Metadata_Perturbation"].tolist()
    got_arms = [arms[list(genes.values()).index(g)] for g in names]
    want = reference_arm_centering(a.loc[is_gene, out_feats].to_numpy(), got_arms)
    np.testing.assert_allclose(b.loc[is_gene, out_feats].to_numpy(), want, atol=1e-5)
    per_arm = pd.DataFrame(b.loc[is_gene, out_feats].to_numpy()).groupby(got_arms).mean().abs().to_numpy()
    assert per_arm.max() < 1e-5  # the planted arm effect is gone
    assert json.loads((corrected / "map.json").read_text())["arm_correction"]["genes_corrected"] == 6
