"""The package-level Python API: lazy exports visible to dir(), ``python -m cellmae``, no torch for
``--help``, and build_map / run_bench taking paths, DataFrames and AnnData alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellmae
from cellmae.data.schema import (
    CONCENTRATION,
    EXPERIMENT,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    PLATE,
    WELL,
    embeddings_frame,
)

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args],
                          capture_output=True, text=True, env=ENV, timeout=300)


def test_exports_are_listed_by_dir_and_resolve():
    import cellmae.embed
    import cellmae.models
    from cellmae.models.loader import load

    for name in ("load_model", "embed_screen", "build_map", "run_bench", "simulate_screen", "open_screen"):
        assert name in dir(cellmae)
    assert {"load", "create_model", "push_to_hub", "load_openphenom"} <= set(dir(cellmae.models))
    assert "read_embeddings" in dir(cellmae.embed)
    assert cellmae.load_model is load and cellmae.models.load is load  # one loader, two names
    with pytest.raises(AttributeError, match="module 'cellmae' has no attribute 'nope'"):
        cellmae.nope  # noqa: B018


def test_python_m_cellmae_and_help_import_no_torch():
    res = _python("", "-m", "cellmae", "--help")
    assert res.returncode == 0, res.stderr
    assert "embed" in res.stdout and "models" in res.stdout
    code = ("import sys, cellmae, cellmae.cli; dir(cellmae); dir(cellmae.models); "
            "print(sorted(m for m in ('torch', 'timm', 'huggingface_hub') if m in sys.modules))")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def _wells(seed: int = 0) -> pd.DataFrame:
    """Two experiments of four genes (two sharing a direction), two compounds and controls."""
    rng = np.random.default_rng(seed)
    effects = {"G0": rng.normal(size=6) * 2, "G2": rng.normal(size=6) * 2}
    effects["G1"] = effects["G0"] * 1.1
    effects["G3"] = -effects["G2"]
    meta, feats = [], []
    for e in range(2):
        shift = rng.normal(size=6) * 3
        rows = [(g, "CRISPR", np.nan, False, v) for g, v in effects.items() for _ in range(3)]
        rows += [("EMPTY", "CONTROL", np.nan, True, np.zeros(6))] * 10
        for i, (pert, kind, conc, ctrl, v) in enumerate(rows):
            meta.append({EXPERIMENT: f"E{e}", PLATE: f"E{e}_P1", WELL: f"B{i + 2:02d}", PERTURBATION: pert,
                         PERTURBATION_TYPE: kind, CONCENTRATION: conc, IS_CONTROL: ctrl})
            feats.append(v + shift + rng.normal(size=6) * 0.3)
    return embeddings_frame(pd.DataFrame(meta), np.asarray(feats, dtype=np.float32))


def test_build_map_and_run_bench_take_paths_frames_and_anndata(tmp_path):
    import anndata as ad

    wells = _wells()
    path = tmp_path / "wells.parquet"
    wells.to_parquet(path, index=False)
    feats = [c for c in wells.columns if c.startswith("feature_")]
    obs = wells.drop(columns=feats)
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=wells[feats].to_numpy(), obs=obs)
    from_frame = cellmae.build_map(wells, tmp_path / "map")
    from_path = cellmae.build_map(path)
    from_anndata = cellmae.build_map(adata)
    for other in (from_path, from_anndata):
        pd.testing.assert_frame_equal(other.aggregated, from_frame.aggregated, check_dtype=False)
    assert (tmp_path / "map" / "aggregated.parquet").is_file()  # out= keeps the stage folder
    assert from_frame.summary["profiles"] == len(from_frame.aggregated) == 4

    rels = tmp_path / "relationships.csv"
    rels.write_text("entity1,entity2\nG0,G1\nG2,G3\n")
    opts = {"relationships": rels, "n_null": 100, "map_null_size": 200}
    mem = cellmae.run_bench(from_frame, **opts)
    disk = cellmae.run_bench(tmp_path / "map", tmp_path / "bench", **opts)
    pd.testing.assert_frame_equal(mem.table("recall"), disk.table("recall"))
    pd.testing.assert_frame_equal(mem.table("consistency"), disk.table("consistency"))
    assert json.loads((tmp_path / "bench" / "summary.json").read_text())["n_wells"] == len(wells)
    assert any(line.startswith("recall relationships") for line in mem.lines())
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n_nul'\]"):
        cellmae.run_bench(from_frame, n_nul=3)
    with pytest.raises(ValueError, match=r"build_map: unknown option\(s\) \['align_to'\]"):
        cellmae.build_map(wells, align_to="x")
