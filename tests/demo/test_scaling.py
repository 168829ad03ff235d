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


@pytest.mark.slow
def test_screen_evaluation_adds_recall_probes_and_baselines_per_variant(sim_shards: Path, tmp_path: Path) -> None:
    import json

    from cellmae.layout import SCALING_EVAL_DIR

    screen = sim_shards.parent / "screen"
    overrides = override_args(tiny_overrides(**{"checkpoint.every_n_steps": 100}))
    model = "camae_vit_tiny_patch8_64"
    out = tmp_path / "study"
    table = run_scaling_study("tiny-camae", sim_shards, out, models=[model], steps=[2, 4], overrides=overrides,
                              screen=screen, variants=["image_stats=true"], variant_jobs=[job_name(model, 1.0, 4)],
                              env={"OMP_NUM_THREADS": "1"})
    assert sorted(set(table["variant"])) == ["default", "image_stats=true"]
    trained = table[table["method"] == "trained"]
    # the default covers every job, the variant only the job it was asked for
    assert trained.groupby("variant")["steps"].apply(sorted).tolist() == [[2, 4], [4]]
    assert (trained["job"] == trained["steps"].map(lambda n: job_name(model, 1.0, n))).all()
    base = table[table["method"] != "trained"]
    assert (base["compute_flops"] == 0).all()
    # handcrafted once (image statistics do not apply to it), the random-init twin once per variant
    assert base.groupby("method").size().to_dict() == {"handcrafted": 1, "random-init": 2}
    for r in table.to_dict("records"):
        blocks = json.loads(r["recall_per_block"])
        assert 0 <= r["recall"] <= 1 and r["recall"] == blocks[r["recall_block"]]
        assert r["recall_max"] == max(blocks.values()) and r["recall_last"] == blocks[sorted(blocks)[-1]]
    # the variant appends 2 numbers (mean, spread) per channel to every block of the embedding
    def width(variant: str) -> int:
        part = next((out / SCALING_EVAL_DIR / variant / job_name(model, 1.0, 4) / "embed" / "camae" / "block02").rglob("*.parquet"))
        return sum(c.startswith("feature_") for c in pd.read_parquet(part).columns)
    assert width("image_stats-true") == width("default") + 2 * 6
    assert (out / "scaling.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="variant-jobs"):
        run_scaling_study("tiny-camae", sim_shards, out, models=[model], steps=[2, 4], overrides=overrides,
                          screen=screen, variants=["pool=channel_concat"], variant_jobs=["nope"])
