"""Scaling study: a models x data-fractions grid of separate jobs, one table and one plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cellmae.demo.scaling import RUNS_DIR, job_name, run_scaling_study

from ..train.conftest import override_args, tiny_overrides


@pytest.mark.slow
def test_grid_runs_each_cell_once_and_summarises_loss_against_compute(sim_shards: Path, tmp_path: Path) -> None:
    overrides = override_args(tiny_overrides(**{"trainer.max_epochs": 1, "trainer.max_steps": -1,
                                                "data.batch_size": 16, "checkpoint.every_n_steps": 100}))
    models = ["camae_vit_tiny_patch8_64", "mae_vit_tiny_patch8_64"]
    out = tmp_path / "study"
    bench = tmp_path / "bench"
    (bench / job_name(models[0], 0.5) / "block02").mkdir(parents=True)
    (bench / job_name(models[0], 0.5) / "block02" / "summary.json").write_text('{"recall": {"recall_at_5pct": 0.12}}')
    table = run_scaling_study("tiny-camae", sim_shards, out, models=models, fractions=[0.25, 0.5],
                              overrides=overrides, bench_dir=bench, env={"OMP_NUM_THREADS": "1"})
    assert len(table) == 4 and set(table["model"]) == set(models)
    assert (out / "scaling.csv").is_file() and (out / "scaling.png").stat().st_size > 1000
    for _model, g in table.groupby("model"):
        g = g.sort_values("data_fraction")
        assert g["steps"].tolist()[0] < g["steps"].tolist()[1]  # half the data, fewer steps in one epoch
        assert g["compute_flops"].is_monotonic_increasing and (g["flops_per_crop"] > 0).all()
        assert g["loss_final"].notna().all()
    assert table.loc[table["job"] == job_name(models[0], 0.5), "recall"].item() == pytest.approx(0.12)
    assert table["recall"].isna().sum() == 3
    assert pd.read_csv(out / "scaling.csv")["job"].tolist() == table["job"].tolist()

    # a rerun reuses finished jobs instead of training again
    stamp = {p: p.stat().st_mtime for p in (out / RUNS_DIR).glob("*/model.safetensors")}
    run_scaling_study("tiny-camae", sim_shards, out, models=models, fractions=[0.25, 0.5], overrides=overrides)
    assert {p: p.stat().st_mtime for p in (out / RUNS_DIR).glob("*/model.safetensors")} == stamp
