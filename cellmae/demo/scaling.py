"""Scaling study, an experiment on top of the stages: a grid of model sizes x training-data sizes, one separate training job per cell,
summarised in one table (``scaling.csv``) and one plot (``scaling.png``: loss, and recall once benchmark
results exist, against training compute).

Each job is a ``cellmae train`` subprocess (``data.fraction`` sets the data size), so a crash or a kill
affects one cell only and a rerun skips finished cells and resumes killed ones. Compute is counted, not
estimated: training FLOPs per crop (forward + backward, masking included) are measured with
``torch.utils.flop_counter.FlopCounterMode`` on one crop and multiplied by the crops seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cellmae.layout import (
    BENCH_SUMMARY_FILE,
    SCALING_PLOT_FILE,
    SCALING_RUNS_DIR,
    SCALING_TABLE_FILE,
    SHARDS_DIR,
    TRAIN_CONFIG_FILE,
    TRAIN_SUMMARY_FILE,
)
from cellmae.utils.atomic import atomic_path

RUNS_DIR = SCALING_RUNS_DIR


def job_name(model: str, fraction: float) -> str:
    return f"{model}__data{fraction:g}"


def measure_model(cfg: Any, channels: tuple[str, ...]) -> dict[str, int]:
    """Parameters and FLOPs of one training step on one crop (forward + backward) of the run's model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cellmae.train.run import build_model

    model = build_model(cfg, channels=channels, num_classes=2 if cfg.task == "wsl" else None)
    size = int(model.config.get("img_size") or 64)
    x = torch.randint(0, 256, (1, len(channels), size, size), dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter:
        if cfg.task == "wsl":
            out = model(x, channels=channels, labels=torch.zeros(1, dtype=torch.long))
        else:
            out = model(x, channels=channels, mask_ratio=cfg.model.mask_ratio, mask_seed=0)
        out["loss"].backward()
    return {"params": sum(p.numel() for p in model.parameters()), "flops_per_crop": int(counter.get_total_flops())}


def _recall_from_bench(bench_dir: Path | None, job: str) -> float | None:
    """A headline recall from ``bench_dir/<job>/**/summary.json`` (the first numeric 'recall' entry)."""
    if bench_dir is None or not (bench_dir / job).is_dir():
        return None
    for path in sorted((bench_dir / job).rglob(BENCH_SUMMARY_FILE)):
        found = _find_recall(json.loads(path.read_text()))
        if found is not None:
            return found
    return None


def _find_recall(obj: Any) -> float | None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if "recall" in str(k).lower() and isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
        for v in obj.values():
            found = _find_recall(v)
            if found is not None:
                return found
    return None


def run_scaling_study(
    config: str | Path,
    shards: str | Path,
    out_dir: str | Path,
    *,
    models: Iterable[str],
    fractions: Iterable[float] = (1.0,),
    overrides: Iterable[str] = (),
    bench_dir: str | Path | None = None,
    resume: bool = True,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Run every (model, fraction) job not yet finished, then write and return the summary table."""
    from cellmae.data.shards import ensure_shards
    from cellmae.train.config import load_config
    from cellmae.train.run import training_crop_size

    out_dir = Path(out_dir)
    models, fractions, overrides = list(models), [float(f) for f in fractions], list(overrides)
    if not models:
        raise ValueError("scaling study: give at least one model preset")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"scaling study: data fractions must be in (0, 1], got {bad}")
    base = load_config(config, overrides)
    for m in models:  # fail before any job on a bad model name or override
        load_config(config, [*overrides, f"model.name={m}"])
    shard_dir = ensure_shards(shards, out_dir / SHARDS_DIR, crop_size=training_crop_size(base),
                              crops_per_field=base.data.crops_per_field, seed=base.seed, keep_wells=base.data.keep_wells,
                              progress=False)
    rows = []
    for model in models:
        for fraction in fractions:
            job = job_name(model, fraction)
            job_dir = out_dir / RUNS_DIR / job
            if not (resume and (job_dir / TRAIN_SUMMARY_FILE).is_file()):
                _run_job(python, config, shard_dir, job_dir, [*overrides, f"model.name={model}",
                                                              f"data.fraction={fraction:g}"], resume, env)
            rows.append(_job_row(job_dir, config, [*overrides, f"model.name={model}"], model, fraction, shard_dir,
                                 Path(bench_dir) if bench_dir else None, job))
    table = pd.DataFrame(rows)
    with atomic_path(out_dir / SCALING_TABLE_FILE) as tmp:
        table.to_csv(tmp, index=False)
    plot_scaling(table, out_dir / SCALING_PLOT_FILE)
    return table


def _run_job(python: str, config: str | Path, shard_dir: Path, job_dir: Path, overrides: list[str], resume: bool,
             env: dict[str, str] | None) -> None:
    job_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "cellmae.cli", "train", str(shard_dir), "--out", str(job_dir), "--config", str(config),
           *[a for o in overrides for a in ("--set", o)], "--no-progress"]
    if resume:
        cmd.append("--resume")
    log = job_dir.parent / f"{job_dir.name}.log"
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"scaling job {job_dir.name} failed (exit {proc.returncode}); log {log}:\n{tail}")


def _job_row(job_dir: Path, config: str | Path, overrides: list[str], model: str, fraction: float,
             shard_dir: Path, bench_dir: Path | None, job: str) -> dict[str, Any]:
    from cellmae.data.shards import read_shard_info
    from cellmae.train.config import load_config
    from cellmae.train.run import read_summary

    cfg = load_config(job_dir / TRAIN_CONFIG_FILE) if (job_dir / TRAIN_CONFIG_FILE).is_file() \
        else load_config(config, overrides)
    summary = read_summary(job_dir)
    channels = tuple(read_shard_info(shard_dir)["channels"])
    measured = measure_model(cfg, channels)
    flops = measured["flops_per_crop"]
    crops = summary.get("crops_seen", 0)
    return {
        "job": job, "model": model, "data_fraction": fraction,
        "train_crops": int(round(summary.get("train_crops_available", 0) * fraction)),
        "params": measured["params"], "steps": summary.get("steps"), "crops_seen": crops,
        "flops_per_crop": flops, "compute_flops": float(flops) * crops,
        "loss_final": summary.get("loss_final_mean"), "crops_per_s": summary.get("crops_per_s_median"),
        "wall_s": summary.get("wall_s"), "recall": _recall_from_bench(bench_dir, job),
        "run_dir": str(job_dir),
    }


def plot_scaling(table: pd.DataFrame, path: Path) -> Path:
    """Final loss (and recall, when present) against training compute, one line per model size."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    has_recall = "recall" in table and table["recall"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_recall else 1, figsize=(11 if has_recall else 6, 4.2), squeeze=False)
    panels = [("loss_final", "final training loss")] + ([("recall", "known-relationship recall")] if has_recall else [])
    for ax, (col, label) in zip(axes[0], panels, strict=True):
        for model, g in table.sort_values("compute_flops").groupby("model", sort=False):
            g = g[g[col].notna()]
            ax.plot(g["compute_flops"], g[col], marker="o", label=model)
            for _, r in g.iterrows():
                ax.annotate(f"{r['data_fraction']:g}", (r["compute_flops"], r[col]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.set_xscale("log")
        ax.set_xlabel("training compute (FLOPs)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="model (labels: data fraction)", title_fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path
