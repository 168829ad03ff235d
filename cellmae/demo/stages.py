"""One function per pipeline stage, each a thin call into the package that owns the stage.

No stage logic lives here: simulation is cellmae.data.simulate, crops cellmae.data.shards,
training cellmae.train, featurization cellmae.embed, maps cellmae.profiles, benchmarks
cellmae.bench and the page cellmae.report. Each function writes into the DESIGN.md run
layout and returns a small dict that the demo records in RUN/demo.json.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cellmae.demo.settings import DemoSettings


def simulate(s: DemoSettings, out: Path, preset: str, *, overwrite: bool) -> dict:
    """The simulated screen of ``preset`` in ``out`` (reused when already there with the same settings)."""
    from cellmae.data.simulate import simulate_screen

    simulate_screen(out, preset=preset, seed=s.seed, overwrite=overwrite, progress=s.progress, **s.simulate_kwargs())
    return {"screen": str(out), "preset": preset}


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
          overwrite: bool, pool: str | None = None) -> dict:
    """Well embeddings of ``screen`` by ``source`` (a checkpoint, ``random-init:...`` or ``handcrafted``)."""
    from cellmae.embed.pipeline import run_embedding

    opts = dict(overwrite=overwrite, progress=s.progress, num_workers=s.workers)
    if str(source) != "handcrafted":
        opts |= dict(blocks=blocks, tile=s.tile, pool=pool or s.pool, batch_size=s.batch_size, device=s.device,
                     seed=s.seed)
    summary = run_embedding(screen, str(source), out, **opts)
    return {"wells": summary.wells, "seconds": round(summary.seconds, 1),
            "blocks": sorted(int(b) for b in summary.paths)}


def block_dirs(embed_model_dir: Path) -> list[Path]:
    """The ``block{NN}`` folders an embed run wrote, in block order."""
    return sorted(p for p in embed_model_dir.glob("block[0-9]*") if p.is_dir())


def _drop_stale_blocks(folder: Path, keep: set[str]) -> None:
    """Remove ``block{NN}`` folders a previous run left that this run's embeddings no longer have,
    so later stages and the report never mix blocks of two different runs."""
    for d in folder.glob("block[0-9]*"):
        if d.is_dir() and d.name not in keep:
            shutil.rmtree(d)


def build_maps(s: DemoSettings, root: Path, model: str, advance: Callable[[], None] | None = None) -> dict:
    """``RUN/map/<model>/<block>`` for every embedded block (filter, align, aggregate)."""
    from cellmae.profiles.pipeline import MapOptions, build_map

    embedded = block_dirs(root / "embed" / model)
    _drop_stale_blocks(root / "map" / model, {d.name for d in embedded})
    done = []
    for d in embedded:
        build_map(d, root / "map" / model / d.name, MapOptions(align=s.align))
        done.append(d.name)
        if advance:
            advance()
    return {"blocks": done}


def relationship_sources(s: DemoSettings, screen: Path, root: Path) -> list[Path]:
    """The simulated truth (as ``sim-truth.csv``, so the report names it) plus the user's databases."""
    sources: list[Path] = []
    truth = screen / "truth" / "relationships.csv"
    if truth.is_file():
        named = root / "relationships" / "sim-truth.csv"
        named.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(truth, named)
        sources.append(named)
    return sources + list(s.relationships)


def bench_model(s: DemoSettings, root: Path, screen: Path, model: str, *, probes: bool,
                advance: Callable[[], None] | None = None) -> dict:
    """Every benchmark of every block of ``model``; block probes when there are several blocks."""
    from cellmae.bench.benchmark import BenchOptions, run_bench
    from cellmae.bench.inputs import read_groups
    from cellmae.bench.probes import (
        evaluation_perturbations,
        evaluation_recall_by_block,
        probe_blocks,
        write_probes,
    )
    from cellmae.bench.relationships import load_relationships

    truth = screen / "truth"
    rels = relationship_sources(s, screen, root)
    groups = truth / "genes.csv" if (truth / "genes.csv").is_file() else None
    compounds = truth / "compounds.csv" if (truth / "compounds.csv").is_file() else None
    out: dict = {}
    map_dirs = [root / "map" / model / d.name for d in block_dirs(root / "embed" / model)]
    for folder in (root / "map" / model, root / "bench" / model):  # probes read every map block folder
        _drop_stale_blocks(folder, {d.name for d in map_dirs})
    for d in map_dirs:
        opts = BenchOptions(relationships=rels or None, groups=groups, truth_compounds=compounds,
                            embed_dir=root / "embed" / model / d.name, seed=s.seed)
        out[d.name] = run_bench(d, root / "bench" / model / d.name, opts).get("recall")
        if advance:
            advance()
    if probes and len(map_dirs) > 1:
        # The block is chosen on held-out perturbations: every gene the recall or the functional groups
        # score is left out of the probes (on the simulated screen the compounds remain), and the
        # functional groups are not a probe task because the recall's pairs come from them.
        exclude = evaluation_perturbations(load_relationships(rels) if rels else None,
                                           read_groups(groups) if groups else None)
        try:
            table = probe_blocks(root / "map" / model, exclude=exclude, seed=s.seed)
        except ValueError as e:  # no held-out perturbation to probe on: no choice rather than a leaky one
            out["probes_skipped"] = str(e)
            for name in ("probes.csv", "best_block.json"):
                (root / "bench" / model / name).unlink(missing_ok=True)
            return out
        protocol = {"held_out_perturbations": len(exclude), "fold_column": "Metadata_Plate", "group_probe": None}
        out["best_block"] = write_probes(table, root / "bench" / model, protocol=protocol,
                                         evaluation_recall=evaluation_recall_by_block(root / "bench" / model))["block"]
    else:  # a single block needs no choice; an old choice would point at blocks no longer here
        for name in ("probes.csv", "best_block.json"):
            (root / "bench" / model / name).unlink(missing_ok=True)
    return out


def report(root: Path) -> dict:
    """RUN/report.html from everything above."""
    from cellmae.report.build import build_report

    path = build_report(root)
    return {"report": str(path), "mb": round(path.stat().st_size / 1e6, 2)}
