"""Data curation: keep wells of perturbations with a consistent phenotype plus a capped share of controls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellmae.bench.curation import curate_wells
from cellmae.data import schema
from cellmae.data.readers.subset import read_well_list as read_kept_wells


def _embeddings(seed: int = 0) -> pd.DataFrame:
    """6 strong-phenotype genes, 6 null genes (4 wells each) and 40 control wells, 16-d features."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    well = 0
    for g in range(12):
        direction = rng.normal(size=16)
        for _ in range(4):
            signal = 3.0 * direction / np.linalg.norm(direction) if g < 6 else 0.0
            feats.append(signal + rng.normal(size=16) * 0.5)
            rows.append((f"G{g:02d}", "CRISPR", False, well))
            well += 1
    for _ in range(40):
        feats.append(rng.normal(size=16) * 0.5)
        rows.append(("EMPTY", "CONTROL", True, well))
        well += 1
    meta = pd.DataFrame({
        schema.EXPERIMENT: "E1", schema.PLATE: "1",
        schema.WELL: [f"{'ABCDEFGHIJKLMNOP'[w // 24]}{w % 24 + 1:02d}" for *_, w in rows],
        schema.PERTURBATION: [r[0] for r in rows], schema.PERTURBATION_TYPE: [r[1] for r in rows],
        schema.IS_CONTROL: [r[2] for r in rows],
    })
    return schema.embeddings_frame(meta, np.asarray(feats, dtype=np.float32))


def test_curation_keeps_consistent_perturbations_and_caps_controls(tmp_path: Path) -> None:
    emb = _embeddings()
    path = tmp_path / "wells.parquet"
    emb.to_parquet(path)
    res = curate_wells(path, tmp_path / "curated", alpha=0.05, control_share=0.2, n_null=500, seed=1)
    kept_genes = set(res.kept_wells.loc[~res.kept_wells[schema.IS_CONTROL], schema.PERTURBATION])
    assert kept_genes == {f"G{g:02d}" for g in range(6)}
    n_treat = 6 * 4
    n_ctrl = int(res.kept_wells[schema.IS_CONTROL].sum())
    assert n_ctrl == int(0.2 * n_treat / 0.8)  # controls are at most 20% of the kept wells
    assert n_ctrl / (n_ctrl + n_treat) <= 0.2
    cons = pd.read_csv(tmp_path / "curated" / "consistency.csv")
    assert {"mean_cosine", "p_value", "q_value", "kept"} <= set(cons.columns) and len(cons) == 12
    assert (cons["q_value"] >= cons["p_value"]).all()
    rep = res.report
    assert rep["wells_kept"] == n_treat + n_ctrl and rep["perturbations_significant"] == 6
    assert len(read_kept_wells(tmp_path / "curated" / "kept_wells.csv")) == n_treat + n_ctrl
    assert "kept 30 of 88 wells" in res.summary_text()


def test_site_level_embeddings_are_averaged_per_well(tmp_path: Path) -> None:
    emb = _embeddings()
    sites = pd.concat([emb.assign(**{schema.SITE: 1}), emb.assign(**{schema.SITE: 2})], ignore_index=True)
    path = tmp_path / "sites.parquet"
    sites.to_parquet(path)
    res = curate_wells(path, tmp_path / "c", n_null=200)
    assert res.report["wells_total"] == len(emb)


def test_kept_wells_restrict_the_screen(tmp_path: Path) -> None:
    from cellmae.data.readers import open_screen
    from cellmae.data.simulate import simulate_screen

    screen = open_screen(simulate_screen(tmp_path / "screen", "tiny", seed=0))
    wells = screen.metadata[list(schema.WELL_KEYS)].astype(str).drop_duplicates().head(3)
    csv = tmp_path / "kept.csv"
    wells.to_csv(csv, index=False)
    sub = screen.subset(read_kept_wells(csv))
    keys = set(map(tuple, sub.metadata[list(schema.WELL_KEYS)].astype(str).to_numpy()))
    assert keys == set(map(tuple, wells.to_numpy())) and 0 < len(sub) < len(screen)
    np.testing.assert_array_equal(sub.read_field(0), screen.read_field(sub.indices[0]))
    with pytest.raises(ValueError, match="none of the 1 wells of the well list"):
        screen.subset({("nope", "1", "A01")})
