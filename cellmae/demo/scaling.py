"""Scaling study, an experiment on top of the stages: a grid of model sizes x training-data sizes, one separate training job per cell,
summarised in one table (``scaling.csv``) and one plot (``scaling.png``: loss, and recall once benchmark
results exist, against training compute).

Each job is a ``cellmae train`` subprocess (``data.fraction`` sets the data size, ``trainer.max_steps`` the
training length), so a crash or a kill affects one cell only and a rerun skips finished cells and resumes
killed ones. With a screen, every finished job is embedded, mapped and benchmarked on it by the demo's
stages (cellmae.demo.stages), next to the random-init twin of each model and the handcrafted features,
once per embedding variant (pooling, appended image statistics, alignment). Compute is counted, not
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
    SCALING_EVAL_DIR,
    SCALING_EVAL_FILE,
    SCALING_PLOT_FILE,
    SCALING_RUNS_DIR,
    SCALING_TABLE_FILE,
    SHARDS_DIR,
    TRAIN_CONFIG_FILE,
    TRAIN_SUMMARY_FILE,
)
from cellmae.utils.atomic import atomic_path, write_text_atomic

RUNS_DIR = SCALING_RUNS_DIR


def job_name(model: str, fraction: float, steps: int | None = None) -> str:
    return f"{model}__data{fraction:g}" + (f"__steps{steps}" if steps is not None else "")


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
    steps: Iterable[int] | None = None,
    overrides: Iterable[str] = (),
    bench_dir: str | Path | None = None,
    screen: str | Path | None = None,
    variants: Iterable[str] = (),
    variant_jobs: Iterable[str] | None = None,
    seed: int = 0,
    resume: bool = True,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Run every (model, fraction, steps) job not yet finished, then write and return the summary table.

    ``steps``: the training-length axis (``trainer.max_steps`` per job, each with its own full schedule);
    None trains every job for the config's own length. ``screen``: embed + map + bench every job on it (and
    the baselines), under the default embedding and each of ``variants`` (see :func:`parse_variant`), the
    variants only for the jobs named in ``variant_jobs`` when given."""
    from cellmae.data.training_shards import ensure_shards
    from cellmae.train.config import load_config
    from cellmae.train.run import training_crop_size

    out_dir = Path(out_dir)
    models, fractions, overrides = list(models), [float(f) for f in fractions], list(overrides)
    if not models:
        raise ValueError("scaling study: give at least one model preset")
    parsed = [("default", {})] + [(v, parse_variant(v)) for v in variants]
    if screen is not None and not Path(screen).is_dir():
        raise FileNotFoundError(f"--eval-screen {screen}: no such folder (give a screen folder with truth/)")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"scaling study: data fractions must be in (0, 1], got {bad}")
    step_axis: list[int | None] = [int(n) for n in steps] if steps is not None else [None]
    if any(n is not None and n < 1 for n in step_axis):
        raise ValueError(f"scaling study: --steps must be >= 1, got {step_axis}")
    base = load_config(config, overrides)
    for m in models:  # fail before any job on a bad model name or override
        load_config(config, [*overrides, f"model.name={m}"])
    shard_dir = ensure_shards(shards, out_dir / SHARDS_DIR, crop_size=training_crop_size(base),
                              crops_per_field=base.data.crops_per_field, seed=base.seed, keep_wells=base.data.keep_wells,
                              progress=False)
    rows = []
    for model in models:
        for fraction in fractions:
            for n_steps in step_axis:
                job = job_name(model, fraction, n_steps)
                job_dir = out_dir / RUNS_DIR / job
                job_overrides = [*overrides, f"model.name={model}", f"data.fraction={fraction:g}",
                                 *([f"trainer.max_steps={n_steps}"] if n_steps is not None else [])]
                if not (resume and (job_dir / TRAIN_SUMMARY_FILE).is_file()):
                    _run_job(python, config, shard_dir, job_dir, job_overrides, resume, env)
                rows.append(_job_row(job_dir, config, job_overrides, model, fraction, shard_dir,
                                     Path(bench_dir) if bench_dir else None, job))
    table = pd.DataFrame(rows)
    if screen is not None:
        table = evaluate_study(table, Path(screen), out_dir, parsed, seed=seed, resume=resume,
                               variant_jobs=None if variant_jobs is None else list(variant_jobs))
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


VARIANT_KEYS = {"pool": str, "image_stats": bool, "align": str}


def parse_variant(text: str) -> dict[str, Any]:
    """``"pool=channel_concat,image_stats=true"`` -> options of one embedding variant (errors name the key)."""
    out: dict[str, Any] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in VARIANT_KEYS:
            raise ValueError(f"--variant {text!r}: {item!r} is not KEY=VALUE with KEY in {sorted(VARIANT_KEYS)}")
        out[key] = raw.strip().lower() in {"1", "true", "yes"} if VARIANT_KEYS[key] is bool else raw.strip()
    if not out:
        raise ValueError(f"--variant {text!r}: empty; give e.g. pool=channel_concat or image_stats=true")
    return out


def evaluate_source(screen: Path, source: str | Path, root: Path, *, name: str, blocks: str | None,
                    variant: dict[str, Any], seed: int = 0, resume: bool = True) -> dict[str, Any]:
    """Embed ``screen`` with ``source``, map and bench it into the run folder ``root`` (the demo's stages);
    return the recall of the screen's truth at the probe-chosen, last and best block, and the probe score."""
    from cellmae.demo import stages
    from cellmae.demo.settings import DemoSettings

    marker = root / SCALING_EVAL_FILE
    if resume and marker.is_file():
        return json.loads(marker.read_text())
    # tiles of the model's own input size ("auto"), one process: the study's jobs own the other cores
    s = DemoSettings(out=root, screen=screen, seed=seed, progress=False, workers=0, tile="auto",
                     pool=variant.get("pool", DemoSettings.pool), align=variant.get("align", DemoSettings.align))
    from cellmae.layout import RunDir, read_best_block

    run = RunDir(root)
    stages.embed(s, screen, source, run.embed(name), blocks=blocks, overwrite=True,
                 image_stats=bool(variant.get("image_stats", False)))
    stages.build_maps(s, root, name)
    res = stages.bench_model(s, root, screen, name, probes=blocks is not None)
    per_block = {k: _first_recall(v) for k, v in res.items() if k.startswith("block")}
    per_block = {k: v for k, v in per_block.items() if v is not None}
    if not per_block:
        raise RuntimeError(f"scaling study: no recall for {name} on {screen} (does {screen}/truth hold relationships?)")
    last = sorted(per_block)[-1]
    best_file = run.best_block_file(name)
    chosen, probe = last, None
    if best_file.is_file():
        from cellmae.layout import block_name

        chosen = block_name(read_best_block(best_file))
        probe = json.loads(best_file.read_text()).get("value")
    out = {"recall": per_block.get(chosen), "recall_block": chosen, "recall_last": per_block[last],
           "recall_max": max(per_block.values()), "probe_score": probe,
           "recall_per_block": per_block}
    write_text_atomic(marker, json.dumps(out, indent=2))
    return out


def _first_recall(recall: Any) -> float | None:
    """The first recall value of a bench summary's ``recall`` entry (the screen's own truth comes first)."""
    if not isinstance(recall, dict):
        return None
    for source in recall.values():
        if isinstance(source, dict):
            for k, v in source.items():
                if k.startswith("recall") and isinstance(v, (int, float)):
                    return float(v)
    return None


def evaluate_study(table: pd.DataFrame, screen: Path, out_dir: Path, variants: list[tuple[str, dict[str, Any]]],
                   *, seed: int = 0, resume: bool = True, variant_jobs: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``table`` with their recall on ``screen`` (one row per job and variant) plus baseline rows
    (``random-init`` of each model and ``handcrafted``, at zero training compute). Variants other than the
    default cover only ``variant_jobs`` (and their models' random-init twins) when given."""
    unknown = sorted(set(variant_jobs or ()) - set(table["job"]))
    if unknown:
        raise ValueError(f"--variant-jobs: no such job(s) {unknown}; jobs of this study: {table['job'].tolist()}")
    rows = []
    for vname, variant in variants:
        vdir = out_dir / SCALING_EVAL_DIR / vname.replace("=", "-").replace(",", "_")
        jobs = table if vname == "default" or variant_jobs is None else table[table["job"].isin(variant_jobs)]
        for model, g in jobs.groupby("model", sort=False):
            first = Path(table.loc[table["model"] == model, "run_dir"].iloc[0])  # the twin: same for every variant
            res = evaluate_source(screen, f"random-init:{first}", vdir / f"random-init__{model}", name="random-init",
                                  blocks="all", variant=variant, seed=seed, resume=resume)
            rows.append({"job": f"random-init__{model}", "model": model, "method": "random-init", "variant": vname,
                         "params": g["params"].iloc[0], "steps": 0, "crops_seen": 0, "compute_flops": 0.0, **res})
            for r in g.to_dict("records"):
                res = evaluate_source(screen, r["run_dir"], vdir / r["job"], name="camae", blocks="all",
                                      variant=variant, seed=seed, resume=resume)
                rows.append({**r, "method": "trained", "variant": vname, **res})
        if vname == "default" or "align" in variant:  # pooling and image statistics do not apply to it
            res = evaluate_source(screen, "handcrafted", vdir / "handcrafted", name="handcrafted", blocks=None,
                                  variant=variant, seed=seed, resume=resume)
            rows.append({"job": "handcrafted", "model": "handcrafted", "method": "handcrafted", "variant": vname,
                         "steps": 0, "crops_seen": 0, "compute_flops": 0.0, **res})
    out = pd.DataFrame(rows)
    out["recall_per_block"] = out["recall_per_block"].map(json.dumps)
    return out


def plot_scaling(table: pd.DataFrame, path: Path) -> Path:
    """Final loss (and recall, when present) against training compute, one line per model size."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    baselines = table[table["method"] != "trained"] if "method" in table else table.iloc[:0]
    if "variant" in table:  # the plot shows the default embedding; the table holds every variant
        table = table[table["variant"] == "default"]
        baselines = baselines[baselines["variant"] == "default"]
    trained = table[table["method"] == "trained"] if "method" in table else table
    has_recall = "recall" in trained and trained["recall"].notna().any()
    has_probe = has_recall and "probe_score" in trained and trained["probe_score"].notna().any()
    panels = [("loss_final", "final training loss")]
    panels += [("recall", "known-relationship recall (probe-chosen block)")] if has_recall else []
    panels += [("probe_score", "block probe (mean balanced accuracy)")] if has_probe else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    label_col = "steps" if trained["steps"].nunique() > 1 else "data_fraction"
    for ax, (col, label) in zip(axes[0], panels, strict=True):
        for i, (model, g) in enumerate(trained.sort_values("compute_flops").groupby("model", sort=False)):
            g = g[g[col].notna()]
            line = ax.plot(g["compute_flops"], g[col], marker="o", label=model, color=f"C{i}")[0]
            for _, r in g.iterrows():
                ax.annotate(f"{r[label_col]:g}", (r["compute_flops"], r[col]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
            base = baselines[(baselines["model"] == model) & baselines[col].notna()] if col in baselines else []
            for _, b in getattr(base, "iterrows", lambda: [])():
                ax.axhline(b[col], color=line.get_color(), ls=":", lw=1, label=f"random-init {model}")
        hand = baselines[(baselines["model"] == "handcrafted") & baselines[col].notna()] if col in baselines else []
        for _, b in getattr(hand, "iterrows", lambda: [])():
            ax.axhline(b[col], color="k", ls="--", lw=1, label="handcrafted")
        ax.set_xscale("log")
        ax.set_xlabel("training compute (FLOPs)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    legend_ax = axes[0][1] if has_recall else axes[0][0]  # the recall panel has every line, baselines included
    legend_ax.legend(fontsize=7, title=f"model (labels: {label_col.replace('_', ' ')})", title_fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path
