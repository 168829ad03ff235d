"""``cellmae bench``: score a map against known biology. Registered by cellmae/cli.py."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae import layout
from cellmae.data.schema import EXPERIMENT
from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker


def register(app: typer.Typer) -> None:
    """Add ``bench`` and ``curate`` to ``app``."""
    app.command("bench")(bench)
    app.command("curate")(curate)


def bench(
    map_dir: Path = typer.Argument(
        ..., help="A `cellmae map` output folder (aligned + aggregated tables), or a folder of block{NN} "
        "map folders: then every block is benchmarked into OUT/block{NN} and linear probes across blocks "
        "write OUT/probes.csv and OUT/best_block.json; or your own table of aligned wells (Parquet, CSV/TSV, "
        ".h5ad, zarr; format read from the content), aggregated here by mean.", exists=True),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (RUN/bench/<model>/<block>, or RUN/bench/<model> for a folder of blocks)."),
    relationships: list[str] = typer.Option(
        None, "--relationships", "-r", help="'builtin' (HuMAP, Reactome, StringDB shipped with cellmae; CC0/CC BY), "
        "relationship CSVs (entity1,entity2) or a folder of them (CORUM/HuMAP/Reactome/SIGNOR/StringDB). "
        "Repeat for several. Omit to skip recall."),
    features: str = typer.Option(
        "", "--features", help="Feature columns of the tables: a comma-separated list or a regular expression. "
        "Default: feature_* columns, else CellProfiler Cells*/Cytoplasm*/Nuclei* columns, else an AnnData's X."),
    gene_types: str = typer.Option(
        "", "--gene-types", help="Comma-separated perturbation types that name genes, for recall and consistency "
        "mAP (e.g. CRISPR,ORF). Default: every type but COMPOUND."),
    sources: list[str] = typer.Option(None, "--source", help="Only these relationship databases (file stems) from a folder."),
    groups: Path = typer.Option(
        None, "--groups", help="Gene -> functional group table (CSV with gene,group columns, e.g. the simulator's "
        "truth/genes.csv, or a CORUM_clusters.tsv). Default: genes.csv / *_clusters.tsv next to --relationships.",
        exists=True, dir_okay=False),
    truth_compounds: Path = typer.Option(
        None, "--truth-compounds", help="Compound -> target gene table (compound,target_gene) for the compound-gene "
        "benchmark, e.g. the simulator's truth/compounds.csv.", exists=True, dir_okay=False),
    embed_dir: Path = typer.Option(
        None, "--embed-dir", help="Raw embeddings before alignment (RUN/embed/<model>/<block>, or RUN/embed/<model> "
        "with block folders, or your own table of unaligned wells) for the before/after batch diagnostic.",
        exists=True),
    batch_column: str = typer.Option(EXPERIMENT, "--batch-column", help="Metadata column naming the batch."),
    null_size: int = typer.Option(2000, "--null-size", min=1, help="Random replicate sets in the consistency null."),
    consistency_null: str = typer.Option(
        "other", "--consistency-null", help="Per-perturbation consistency null: random well sets from 'other' wells "
        "or 'controls', or 'negative-controls' (EFAAR: the scores of the --negative-controls perturbations)."),
    replicate_null: str = typer.Option(
        "random-pairs", "--replicate-null", help="Null of the KS / Cramer-von Mises replicate test: 'random-pairs' "
        "(wells of different perturbations, different batches) or 'negative-controls' (EFAAR: cross-batch replicate "
        "pairs of the --negative-controls perturbations, or of control wells when none are given)."),
    negative_controls: Path = typer.Option(
        None, "--negative-controls", help="Negative-control perturbations, one name per line (e.g. unexpressed "
        "genes), for the 'negative-controls' nulls.", exists=True, dir_okay=False),
    map_null_size: int = typer.Option(10000, "--map-null-size", min=10, help="copairs null size for mAP p-values."),
    max_groups: int = typer.Option(250, "--max-groups", min=2, help="At most this many functional groups (a seeded sample) in consistency mAP: its cost grows with (genes in them)^2."),
    n_negatives: int = typer.Option(20, "--negatives", min=1, help="Compound-gene: at least this many sampled "
                                    "non-target genes per compound, max(2 x targets, this) (RxRx3-core: 20)."),
    probe_metric: str = typer.Option("mean_balanced_accuracy", "--probe-metric", help="Best-block criterion: "
                                     "<mean|perturbation|group>_<balanced_accuracy|accuracy|f1>."),
    probe_groups: Path = typer.Option(
        None, "--probe-groups", help="Functional groups for the group probe (a proxy task: use groups that the "
        "evaluation does not score). Default: no group probe.", exists=True, dir_okay=False),
    probe_map: Path = typer.Option(
        None, "--probe-map", help="Folder of block{NN} maps of a separate proxy screen (same model, same blocks): "
        "the probes run on it instead of MAP_DIR, so the block is chosen on a screen the evaluation does not score. "
        "Default: probe MAP_DIR's held-out perturbations.", exists=True, file_okay=False),
    probe_folds: str = typer.Option("Metadata_Plate", "--probe-folds", help="Probe folds are grouped by this column "
                                    "(held-out plates)."),
    probe_evaluation: bool = typer.Option(
        False, "--probe-evaluation-perturbations/--probe-held-out", help="Default --probe-held-out: probes leave out "
        "every perturbation named in --relationships and --groups, so the block is not chosen on evaluation labels."),
    probes_only: bool = typer.Option(False, "--probes-only", help="Folder of blocks: run only the probes."),
    force: bool = typer.Option(False, "--force", help="Folder of blocks: redo blocks already benchmarked (default: resume)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw (nulls, negatives, folds)."),
    progress: bool = PROGRESS,
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Benchmark a map: known-relationship recall, replicate consistency, copairs mAP (activity and
    consistency, FDR-corrected), compound-gene AP/AUC, batch predictability; or, for a folder of
    blocks, all of that per block plus linear probes that pick the best block.

    Writes recall.csv, consistency.csv, map_copairs.csv, compound_gene.csv (when compounds have known targets), batch.csv and summary.json. See docs/bench.md.
    """
    from cellmae.bench.benchmark import BenchOptions, describe, run_bench
    from cellmae.bench.blocks import run_blocks
    from cellmae.bench.inputs import is_map_dir, read_perturbation_list
    from cellmae.bench.relationships import resolve_sources
    from cellmae.data.profiles import parse_features
    from cellmae.layout import BENCH_PROBES_FILE, BEST_BLOCK_FILE

    speaker = Speaker(quiet=quiet, as_json=as_json)
    if consistency_null not in ("other", "controls", "negative-controls"):
        raise typer.BadParameter(f"must be 'other', 'controls' or 'negative-controls', got {consistency_null!r}",
                                 param_hint="--consistency-null")
    if consistency_null == "negative-controls" and negative_controls is None:
        raise typer.BadParameter("'negative-controls' needs --negative-controls FILE (the negative-control "
                                 "perturbations, one per line)", param_hint="--consistency-null")
    if replicate_null not in ("random-pairs", "negative-controls"):
        raise typer.BadParameter(f"must be 'random-pairs' or 'negative-controls', got {replicate_null!r}",
                                 param_hint="--replicate-null")
    rels = resolve_sources(relationships) if relationships else None
    opts = BenchOptions(
        relationships=rels, relationship_names=list(sources) if sources else None, groups=groups,
        truth_compounds=truth_compounds, embed_dir=embed_dir, batch_column=batch_column, n_null=null_size,
        consistency_null=consistency_null, replicate_null=replicate_null,
        negative_controls=read_perturbation_list(negative_controls) if negative_controls else None, map_null_size=map_null_size, n_negatives=n_negatives,
        max_groups=max_groups, seed=seed, features=parse_features(features),
        gene_types=[t.strip() for t in gene_types.split(",") if t.strip()] or None,
    )
    if is_map_dir(map_dir) or not layout.block_dirs(map_dir):  # one map, or the user's own table
        if probe_map is not None:
            raise typer.BadParameter(f"{map_dir} is one map, not a folder of block{{NN}} maps: there is no block to "
                                     "choose", param_hint="--probe-map")
        summary = run_bench(map_dir, out, opts)
        speaker.summary({"out": str(out), **summary}, *describe(summary), f"wrote {out}")
        return
    result = run_blocks(map_dir, out, opts, embed_model_dir=embed_dir, bench=not probes_only,
                        probe_groups=probe_groups, probe_map_dir=probe_map, probe_metric=probe_metric, probe_folds=probe_folds,
                        held_out=not probe_evaluation, force=force, progress=progress and speaker.chatty,
                        say=speaker.say)
    best = result.best
    speaker.summary({"out": str(out), "blocks": result.summaries, "skipped": result.skipped, "best_block": best},
                    result.probes.to_string(index=False),
                    f"best block: {best['block']} ({best['metric']} = {best['value']:.3f}); "
                    f"wrote {out}/{BENCH_PROBES_FILE}, {BEST_BLOCK_FILE}")


def curate(
    embeddings: Path = typer.Argument(..., help="Well-level embeddings: an embed block folder or any profile table (Parquet, CSV/TSV, .h5ad, zarr)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for kept_wells.csv, consistency.csv, report."),
    alpha: float = typer.Option(0.05, help="Significance level (Benjamini-Hochberg FDR over perturbations)."),
    control_share: float = typer.Option(0.1, help="Controls kept as at most this share of the kept wells."),
    n_null: int = typer.Option(1000, help="Random well sets in the null distribution."),
    seed: int = typer.Option(0, help="Seed for the null and the control subsample."),
    quiet: bool = QUIET,
    as_json: bool = JSON,
) -> None:
    """Keep wells of perturbations with a significant phenotype (replicate consistency) plus capped controls."""
    from cellmae.bench.curation import curate_wells

    result = curate_wells(embeddings, out, alpha=alpha, control_share=control_share, n_null=n_null, seed=seed)
    Speaker(quiet=quiet, as_json=as_json).summary({"out": str(out), **result.report}, result.summary_text())
