"""One function per pipeline stage, each a thin call into the package that owns the stage.

No stage logic lives here: simulation is cellmae.data.simulate, crops cellmae.data.shards,
training cellmae.train, featurization cellmae.embed, maps cellmae.map, benchmarks
cellmae.bench and the page cellmae.report. Each function writes into the DESIGN.md run
layout and returns a small dict that the demo records in RUN/demo.json.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cellmae import layout
from cellmae.demo.settings import DemoSettings


def simulate(s: DemoSettings, out: Path, preset: str, *, overwrite: bool) -> dict:
    """The simulated screen of ``preset`` in ``out`` (reused when already there with the same settings)."""
    from cellmae.data.simulate import simulate_screen

    simulate_screen(out, preset=preset, seed=s.seed, overwrite=overwrite, progress=s.progress, **s.simulate_kwargs())
    return {"screen": str(out), "preset": preset}


def simulate_proxy(s: DemoSettings, screen: Path, out: Path, *, overwrite: bool) -> dict:
    """The proxy screen for block selection: same preset family and channels as ``screen``, its own seed,
    and only genes of functional groups that ``screen`` does not use (settings.PROXY_*)."""
    import pandas as pd

    from cellmae.data.simulate import simulate_screen
    from cellmae.demo.settings import PROXY_SEED_OFFSET

    evaluation = pd.read_csv(screen / layout.TRUTH_DIR / layout.TRUTH_GENES_FILE, dtype=str)["gene"].tolist()
    kwargs = s.proxy_kwargs(evaluation)
    simulate_screen(out, preset=s.preset, seed=s.seed + PROXY_SEED_OFFSET, overwrite=overwrite, progress=s.progress,
                    **kwargs)
    return {"screen": str(out), "preset": s.preset, "seed": s.seed + PROXY_SEED_OFFSET, "genes": kwargs["n_genes"],
            "evaluation_genes_excluded": len(evaluation)}


def shards(s: DemoSettings, screen: Path, out: Path, *, overwrite: bool) -> dict:
    """Random training crops of the screen as a LitData shard set."""
    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards

    report = build_shards(open_screen(screen), out, crop_size=s.crop_size, crops_per_field=s.crops_per_field,
                          seed=s.seed, overwrite=overwrite, progress=s.progress)
    return {"crops": report.crops_written, "fields": report.fields}


def train(s: DemoSettings, shard_dir: Path, out: Path, *, config: str, overwrite: bool, user_overrides: bool = True) -> dict:
    """Train ``config`` on the shards for ``s.steps`` steps (at most ``s.max_train_minutes``); resumes.

    ``user_overrides``: apply ``s.train_overrides`` (they target the CA-MAE, not the WSL baseline).
    """
    from cellmae.train.run import read_summary, run_training

    if overwrite and out.exists():
        shutil.rmtree(out)
    overrides = [f"trainer.max_steps={s.steps}", f"seed={s.seed}", f"data.crop_size={s.crop_size}",
                 f"trainer.progress_bar={str(s.progress).lower()}",
                 f"logging.recon_every_n_steps={max(1, s.steps // 4)}",
                 f"checkpoint.every_n_steps={max(1, s.steps // 4)}", "logging.tensorboard=false"]
    if s.device != "auto":
        overrides.append(f"trainer.accelerator={'cpu' if s.device == 'cpu' else 'gpu'}")
    if s.max_train_minutes is not None:
        total = int(round(s.max_train_minutes * 60))
        overrides.append(f"trainer.max_time=00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}")
    if user_overrides:
        overrides += list(s.train_overrides)
    run_training(config, shard_dir, out, overrides=overrides, resume=True)
    summ = read_summary(out)
    detail = {k: summ[k] for k in ("steps", "wall_s", "loss_first", "loss_last", "crops_per_s_median") if k in summ}
    detail["steps_planned"] = s.steps
    detail["time_guard_fired"] = int(detail.get("steps", s.steps)) < s.steps
    return detail


def embed(s: DemoSettings, screen: Path, source: str | Path, out: Path, *, blocks: str | int | None,
          overwrite: bool, pool: str | None = None, image_stats: bool = False) -> dict:
    """Well embeddings of ``screen`` by ``source`` (a checkpoint, ``random-init:...`` or ``handcrafted``);
    ``image_stats`` appends each channel's tile mean and spread to a model's embedding."""
    from cellmae.embed.pipeline import run_embedding

    opts = dict(overwrite=overwrite, progress=s.progress, num_workers=s.workers)
    if str(source) != "handcrafted":
        opts |= dict(blocks=blocks, tile=s.tile, pool=pool or s.pool, batch_size=s.batch_size, device=s.device,
                     seed=s.seed, image_stats=image_stats)
    summary = run_embedding(screen, str(source), out, **opts)
    return {"wells": summary.wells, "seconds": round(summary.seconds, 1),
            "blocks": sorted(int(b) for b in summary.paths)}


def block_dirs(model_dir: Path) -> list[Path]:
    """The ``blockNN`` folders of a stage's ``<model>`` folder, in block order."""
    return list(layout.block_dirs(model_dir).values())


def _drop_stale_blocks(folder: Path, keep: set[str]) -> None:
    """Remove ``blockNN`` folders a previous run left that this run's embeddings no longer have,
    so later stages and the report never mix blocks of two different runs."""
    for d in block_dirs(folder):
        if d.name not in keep:
            shutil.rmtree(d)


def build_maps(s: DemoSettings, root: Path, model: str, advance: Callable[[], None] | None = None) -> dict:
    """``RUN/map/<model>/<block>`` for every embedded block (filter, align, aggregate)."""
    from cellmae.map.pipeline import MapOptions, build_map

    run = layout.RunDir(root)
    embedded = block_dirs(run.embed(model))
    _drop_stale_blocks(run.map(model), {d.name for d in embedded})
    done = []
    for d in embedded:
        build_map(d, run.map(model) / d.name, MapOptions(align=s.align))
        done.append(d.name)
        if advance:
            advance()
    return {"blocks": done}


def relationship_sources(s: DemoSettings, screen: Path, root: Path) -> list[Path]:
    """The simulated truth (as ``sim-truth.csv``, so the report names it) plus the user's databases."""
    sources: list[Path] = []
    truth = screen / layout.TRUTH_DIR / layout.TRUTH_RELATIONSHIPS_FILE
    if truth.is_file():
        named = root / "relationships" / "sim-truth.csv"
        named.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(truth, named)
        sources.append(named)
    return sources + list(s.relationships)


def bench_model(s: DemoSettings, root: Path, screen: Path, model: str, *, probes: bool,
                proxy_root: Path | None = None, advance: Callable[[], None] | None = None) -> dict:
    """Every benchmark of every block of ``model`` (cellmae.bench.blocks.run_blocks, as `cellmae bench`
    on a folder of blocks); block probes when there are several blocks.

    With ``proxy_root`` (a run folder holding the proxy screen and ``map/<model>``) the block is chosen
    on the proxy screen: perturbation and functional-group probes of its genes, which share no gene
    and no group with the evaluation (`cellmae bench --probe-map`). Without it, on held-out
    perturbations of the evaluation screen: every gene the recall or the functional groups score is
    left out (on the simulated screen the compounds remain), and there is no group probe because the
    recall's pairs come from the groups."""
    from cellmae.bench.benchmark import BenchOptions
    from cellmae.bench.blocks import run_blocks

    run = layout.RunDir(root)
    truth = screen / layout.TRUTH_DIR
    rels = relationship_sources(s, screen, root)
    genes, compounds = truth / layout.TRUTH_GENES_FILE, truth / layout.TRUTH_COMPOUNDS_FILE
    opts = BenchOptions(relationships=rels or None, groups=genes if genes.is_file() else None,
                        truth_compounds=compounds if compounds.is_file() else None, seed=s.seed)
    keep = {d.name for d in block_dirs(run.embed(model))}
    for folder in (run.map(model), run.bench(model)):  # probes read every map block folder
        _drop_stale_blocks(folder, keep)
    # force: the demo's own stage markers decide when to rerun; a rerun recomputes every block
    probe_map = probe_groups = None
    if proxy_root is not None:
        proxy = layout.RunDir(proxy_root)
        probe_map = proxy.map(model)
        probe_groups = proxy.screen / layout.TRUTH_DIR / layout.TRUTH_GENES_FILE
    result = run_blocks(run.map(model), run.bench(model), opts, embed_model_dir=run.embed(model),
                        probes=probes and len(keep) > 1, probes_optional=True, probe_map_dir=probe_map,
                        probe_groups=probe_groups, force=True, advance=advance)
    out: dict = {name: summary.get("recall") for name, summary in result.summaries.items()}
    if result.probes_skipped:
        out["probes_skipped"] = result.probes_skipped
    if result.best is not None:
        out["best_block"] = result.best["block"]
    return out


def report(root: Path) -> dict:
    """RUN/report.html from everything above."""
    from cellmae.report.build import build_report

    path = build_report(root)
    return {"report": str(path), "mb": round(path.stat().st_size / 1e6, 2)}
