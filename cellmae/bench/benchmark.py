"""Run every benchmark on one map folder and write the tidy tables plus ``summary.json``.

``run_bench`` is what ``cellmae bench`` calls; each benchmark also stands alone in its module
(pure functions over metadata and features). A benchmark that cannot run on this map (no
compounds, no functional groups, one batch, ...) is recorded under ``summary["skipped"]`` with
the reason, instead of failing the whole run. Everything is written into a temporary folder, a
manifest (files, options, the map it scored) is written last and the folder renamed into place,
so a bench folder is complete or absent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from cellmae import layout
from cellmae.bench.batch_effects import BATCH_COLUMNS, batch_summary, batch_table
from cellmae.bench.compound_gene import compound_gene_benchmark, compound_gene_summary
from cellmae.bench.consistency import consistency_summary, replicate_consistency, replicate_similarity_test
from cellmae.bench.copairs_map import MAP_COLUMNS, activity_map, consistency_map, map_summary
from cellmae.bench.inputs import (
    find_group_file,
    is_compound,
    is_map_dir,
    read_compound_targets,
    read_groups,
    read_map_dir,
)
from cellmae.bench.recall import recall_columns
from cellmae.bench.summary import BENCH_KIND, SCHEMA_VERSION, recall_summary, write_summary
from cellmae.data.profiles import Profiles
from cellmae.data.schema import EXPERIMENT, IS_CONTROL, PERTURBATION, PERTURBATION_TYPE
from cellmae.data.tables import parquet_parts, table_format_or_none
from cellmae.utils.errors import InputError, writing
from cellmae.utils.manifest import MANIFEST_FILE, committed_dir, read_manifest, sha256_file

log = logging.getLogger(__name__)

OUTPUT_FILES = (layout.BENCH_RECALL_FILE, layout.BENCH_CONSISTENCY_FILE, layout.BENCH_MAP_FILE,
                layout.BENCH_COMPOUND_GENE_FILE, layout.BENCH_BATCH_FILE, layout.BENCH_SUMMARY_FILE)


@dataclass
class BenchOptions:
    """Knobs of ``cellmae bench`` (defaults are what the CLI uses)."""

    relationships: Sequence[str | Path] | str | Path | None = None
    relationship_names: Sequence[str] | None = None
    groups: str | Path | None = None
    truth_compounds: str | Path | None = None
    embed_dir: str | Path | None = None
    batch_column: str = EXPERIMENT
    thresholds: tuple[tuple[float, float], ...] = ((0.05, 0.95), (0.1, 0.9))
    n_null: int = 2000
    consistency_null: str = "other"
    replicate_null: str = "random-pairs"
    replicate_null_size: int = 10000
    # negative-control perturbations (e.g. unexpressed genes): EFAAR's null for consistency_null and
    # replicate_null "negative-controls"
    negative_controls: Sequence[str] | None = None
    map_null_size: int = 10000
    n_negatives: int = 20  # RxRx3-core: max(2 x targets, this) negatives per compound
    max_groups: int | None = 250
    seed: int = 0
    features: Sequence[str] | str | None = None  # feature columns of the map tables; None: inferred
    gene_types: Sequence[str] | None = None  # perturbation types recall scores; None: all but COMPOUND


def gene_profiles(aggregated: Profiles, gene_types: Sequence[str] | None = None) -> Profiles:
    """Aggregated rows of gene perturbations (what relationship databases name), controls excluded:
    the ``gene_types`` given (case-insensitive), or every type but COMPOUND."""
    meta = aggregated.meta
    if gene_types:
        is_gene = meta[PERTURBATION_TYPE].astype(str).str.upper().isin({t.upper() for t in gene_types}).to_numpy()
    else:
        is_gene = ~is_compound(meta)
    return aggregated.subset(is_gene & ~meta[IS_CONTROL].to_numpy(bool))


def check_gene_profiles(aligned: Profiles, genes: Profiles, gene_types: Sequence[str] | None,
                        source: str | Path = "the map") -> None:
    """Refuse recall without gene perturbations, naming the types found and how to set them."""
    if len(genes) >= 2:
        return
    treated = aligned.meta[~aligned.meta[IS_CONTROL].to_numpy(bool)]
    counts = treated[PERTURBATION_TYPE].astype(str).value_counts() if PERTURBATION_TYPE in treated else {}
    found = ", ".join(f"{t} ({n} wells)" for t, n in counts.items()) or "none (every well is a control)"
    wanted = "/".join(gene_types) if gene_types else "CRISPR/ORF/SIRNA (any type but COMPOUND)"
    raise InputError(f"{source}: found perturbation types {found}: recall needs at least 2 gene perturbations "
                     f"({wanted}), this map has {len(genes)}; set {PERTURBATION_TYPE} in the screen metadata "
                     "(CRISPR, ORF, SIRNA) or pass --gene-types with the types that name genes, or drop --relationships")


def _sources(opts: BenchOptions) -> list[Path]:
    items = [opts.relationships] if isinstance(opts.relationships, (str, Path)) else list(opts.relationships or [])
    return [Path(p) for p in items]


def resolve_truth_dir(opts: BenchOptions) -> BenchOptions:
    """Let ``--relationships`` point at a simulator ``truth/`` folder.

    Such a folder holds ``relationships.csv`` next to ``genes.csv`` and ``compounds.csv`` (which are
    not relationship tables): use its ``relationships.csv`` for recall and, unless given, its
    ``compounds.csv`` as compound targets. Other folders pass through unchanged.
    """
    from cellmae.bench.relationships import DEFAULT_SOURCES

    sources, compounds = [], opts.truth_compounds
    for p in _sources(opts):
        is_truth = p.is_dir() and (p / layout.TRUTH_RELATIONSHIPS_FILE).is_file() and not any(
            (p / f"{n}{ext}").is_file() for n in DEFAULT_SOURCES for ext in (".txt", ".csv"))
        if is_truth:
            sources.append(p / layout.TRUTH_RELATIONSHIPS_FILE)
            if compounds is None and (p / layout.TRUTH_COMPOUNDS_FILE).is_file():
                compounds = p / layout.TRUTH_COMPOUNDS_FILE
        else:
            sources.append(p)
    if not sources:
        return opts
    return BenchOptions(**{**opts.__dict__, "relationships": sources, "truth_compounds": compounds})


def _recall(aggregated: Profiles, opts: BenchOptions) -> pd.DataFrame:
    from cellmae.bench.recall import known_relationship_recall
    from cellmae.bench.relationships import load_relationships

    rels = load_relationships(opts.relationships, names=opts.relationship_names)
    genes = gene_profiles(aggregated, opts.gene_types)
    types = genes.meta.groupby(genes.meta[PERTURBATION].astype(str))[PERTURBATION_TYPE].agg(lambda t: sorted(set(map(str, t))))
    mixed = types[types.map(len) > 1]
    if len(mixed):  # e.g. JUMP: one gene knocked out (CRISPR) and overexpressed (ORF) in one map
        gene, kinds = mixed.index[0], mixed.iloc[0]
        raise InputError(f"{len(mixed)} gene(s) are profiled under several perturbation types (e.g. {gene}: "
                         f"{', '.join(kinds)}); recall compares one profile per gene: benchmark one modality "
                         f"at a time with --gene-types {kinds[0]} (or map it alone with --types {kinds[0]})")
    return known_relationship_recall(genes.features, genes.meta[PERTURBATION].tolist(), rels, opts.thresholds)


def _groups(opts: BenchOptions) -> pd.DataFrame | None:
    path = opts.groups
    if path is None and _sources(opts):
        path = find_group_file(_sources(opts)[0])
    return read_groups(path) if path is not None else None


def bench_settings(opts: BenchOptions) -> dict:
    """The options of a bench run as JSON values (recorded in its manifest, compared on resume)."""
    return json.loads(json.dumps(asdict(opts), default=str))


def bench_inputs(map_dir: Path) -> dict:
    """Which map a bench folder was made from: its path and the checksum of its manifest (of the
    table itself for a user's own table file)."""
    map_dir = Path(map_dir)
    if map_dir.is_file():
        return {"map": str(map_dir), "map_manifest_sha256": None, "table_sha256": sha256_file(map_dir)}
    manifest = map_dir / MANIFEST_FILE
    return {"map": str(map_dir), "map_manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}


def read_bench_input(path: Path, features: Sequence[str] | str | None = None) -> tuple[Profiles, Profiles]:
    """(aligned wells, aggregated perturbations): a complete ``cellmae map`` folder, or a user's own
    table of aligned wells (Parquet, CSV/TSV, h5ad, zarr; e.g. pycytominer-normalized profiles),
    aggregated here with the map stage's mean."""
    from cellmae.bench.inputs import read_profiles
    from cellmae.embed.io import embed_root_of
    from cellmae.map.aggregate import aggregate

    if is_map_dir(path) or (path.is_dir() and (path / MANIFEST_FILE).is_file()):
        return read_map_dir(path, features)
    if path.is_dir() and not parquet_parts(path) and table_format_or_none(path) is None:
        raise InputError(f"{path}: neither a `cellmae map` folder ({' + '.join(layout.MAP_TABLE_FILES['parquet'])} "
                         "+ manifest.json), a folder of block{NN} map folders, nor a profile table (Parquet, CSV, "
                         ".h5ad, zarr)")
    if embed_root_of(path) is not None:
        raise InputError(f"{path}: raw embeddings of `cellmae embed`; map them first (`cellmae map {path} --out MAP`) "
                         "and benchmark the map folder")
    aligned = read_profiles(path, features)
    groups, x = aggregate(aligned.features, aligned.meta, "mean")
    return aligned, Profiles(groups, x, aligned.feature_names, aligned.provenance)


def is_current(out_dir: str | Path, map_dir: str | Path, opts: BenchOptions) -> bool:
    """Whether ``out_dir`` is a complete bench of the map now in ``map_dir`` with these options."""
    out_dir, map_dir = Path(out_dir), Path(map_dir)
    try:
        manifest = read_manifest(out_dir, BENCH_KIND, rerun="cellmae bench")
    except InputError:
        return False
    opts = resolve_truth_dir(opts)
    recorded = manifest.get("inputs", {})
    return (all(recorded.get(k) == v for k, v in bench_inputs(map_dir).items())
            and manifest.get("settings") == bench_settings(opts))


def run_bench(map_dir: str | Path, out_dir: str | Path, opts: BenchOptions | None = None) -> dict:
    """Benchmark the map in ``map_dir`` into ``out_dir``; return the summary dict written.

    The map must be complete (its manifest matches); the bench folder is committed as a unit
    with its own manifest naming the map it scored."""
    from cellmae.embed.io import check_complete_block, read_embedding_profiles

    opts = resolve_truth_dir(opts or BenchOptions())
    map_dir, out_dir = Path(map_dir), Path(out_dir)
    aligned, aggregated = read_bench_input(map_dir, opts.features)
    inputs = bench_inputs(map_dir)
    if opts.embed_dir is not None:
        check_complete_block(opts.embed_dir)
    if opts.relationships is not None:
        check_gene_profiles(aligned, gene_profiles(aggregated, opts.gene_types), opts.gene_types, map_dir)
    skipped: dict[str, str] = {}
    tables: dict[str, pd.DataFrame] = {}
    summary: dict = {
        "schema": SCHEMA_VERSION,
        "map_dir": str(map_dir),
        "n_wells": len(aligned),
        "n_perturbations": int((~aggregated.meta[IS_CONTROL].to_numpy(bool)).sum()),
        "inputs": {
            "relationships": [str(p) for p in _sources(opts)],
            "truth_compounds": None if opts.truth_compounds is None else str(opts.truth_compounds),
            "embed_dir": None if opts.embed_dir is None else str(opts.embed_dir),
            "seed": opts.seed,
        },
    }

    if opts.relationships is None:
        skipped["recall"] = "no --relationships given"
        tables[layout.BENCH_RECALL_FILE] = pd.DataFrame(columns=recall_columns(()))
        summary["recall"] = None
    else:
        tables[layout.BENCH_RECALL_FILE] = _recall(aggregated, opts)
        summary["recall"] = recall_summary(tables[layout.BENCH_RECALL_FILE])

    cons = replicate_consistency(aligned, n_null=opts.n_null, null_from=opts.consistency_null,
                                 negative_controls=opts.negative_controls, seed=opts.seed)
    tables[layout.BENCH_CONSISTENCY_FILE] = cons
    summary["consistency"] = consistency_summary(cons)
    try:
        summary["consistency"]["replicate_test"] = replicate_similarity_test(
            aligned, batch_column=opts.batch_column, null=opts.replicate_null, n_null=opts.replicate_null_size,
            negative_controls=opts.negative_controls, seed=opts.seed)
    except ValueError as e:
        summary["consistency"]["replicate_test"] = None
        skipped["replicate_test"] = str(e)

    maps = []
    try:
        maps.append(activity_map(aligned, null_size=opts.map_null_size, seed=opts.seed))
    except ValueError as e:
        skipped["map_activity"] = str(e)
    groups = _groups(opts)
    if groups is None:
        skipped["map_consistency"] = "no functional groups (--groups, or genes.csv / *_clusters.tsv next to the relationships)"
    else:
        try:
            maps.append(consistency_map(gene_profiles(aggregated, opts.gene_types), groups, null_size=opts.map_null_size,
                                        seed=opts.seed, max_groups=opts.max_groups))
        except ValueError as e:
            skipped["map_consistency"] = str(e)
    tables[layout.BENCH_MAP_FILE] = pd.concat(maps, ignore_index=True) if maps else pd.DataFrame(columns=MAP_COLUMNS)
    summary["map"] = map_summary(tables[layout.BENCH_MAP_FILE])

    summary["compound_gene"] = None
    if not is_compound(aggregated.meta).any():
        skipped["compound_gene"] = "no compound profiles in the map"
    elif opts.truth_compounds is None:
        skipped["compound_gene"] = "compounds present but no --truth-compounds target table given"
    else:
        try:
            cg = compound_gene_benchmark(aggregated, read_compound_targets(opts.truth_compounds),
                                         min_negatives=opts.n_negatives, seed=opts.seed)
            tables[layout.BENCH_COMPOUND_GENE_FILE] = cg
            summary["compound_gene"] = compound_gene_summary(cg, seed=opts.seed)
            if cg.empty:  # say why rather than report an empty table as a result
                skipped["compound_gene"] = (
                    "no compound has an active target among the map's genes together with enough other genes "
                    f"to sample max(2 x targets, {opts.n_negatives}) negatives (lower --negatives for a small screen)")
        except ValueError as e:
            skipped["compound_gene"] = str(e)

    before = read_embedding_profiles(opts.embed_dir) if opts.embed_dir is not None else None
    if before is None:
        skipped["batch_before"] = "no --embed-dir given (raw embeddings before alignment)"
    if opts.batch_column not in aligned.meta.columns:
        skipped["batch"] = f"no {opts.batch_column} column in the aligned table"
        tables[layout.BENCH_BATCH_FILE] = pd.DataFrame(columns=BATCH_COLUMNS)
    else:
        tables[layout.BENCH_BATCH_FILE] = batch_table(aligned, before, batch_column=opts.batch_column, seed=opts.seed)
    summary["batch"] = batch_summary(tables[layout.BENCH_BATCH_FILE])
    summary["skipped"] = skipped

    with writing(out_dir), committed_dir(out_dir, BENCH_KIND, bench_settings(opts), inputs) as tmp:
        for name, table in tables.items():
            table.to_csv(tmp / name, index=False)
        write_summary(summary, tmp)
    return summary


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def describe(summary: dict) -> list[str]:
    """Human-readable headline lines for the terminal."""
    lines = []
    for src, r in (summary.get("recall") or {}).items():
        vals = ", ".join(f"{k[7:]}={v:.3f}" for k, v in r.items() if k.startswith("recall_") and v is not None)
        lines.append(f"recall {src}: {vals} ({r['n_pairs']} pairs)")
    c = summary["consistency"]
    if c["n_perturbations"]:
        lines.append(f"replicate consistency: {c['fraction_p_le_0.05']:.1%} of {c['n_perturbations']} perturbations at p<=0.05")
    t = c.get("replicate_test")
    if t:
        lines.append(f"cross-batch replicate similarity vs {t['null']} null: KS {t['ks_statistic']:.3f}, "
                     f"CvM {t['cvm_statistic']:.3f}, mean difference {t['mean_difference']:+.3f}")
    for kind, m in summary["map"].items():
        if m["n"]:
            lines.append(f"mAP {kind}: {m['fraction_significant']:.1%} of {m['n']} significant (FDR<0.05), mean mAP {m['mean_map']:.3f}")
    cg = summary.get("compound_gene")
    if cg and cg["n_compounds"]:
        lines.append(f"compound-gene: AP {cg['mean_ap']:.3f} (random {cg['random_mean_ap']:.3f}), "
                     f"AUC {cg['mean_auc']:.3f} (random {cg['random_mean_auc']:.3f}) over {cg['n_compounds']} compounds, "
                     f"max over doses; z-scores AP {_fmt(cg['ap_zscore'])}, AUC {_fmt(cg['auc_zscore'])}")
    for stage, b in (summary.get("batch") or {}).items():
        if b and b["accuracy"] is not None:
            lines.append(f"batch predictability {stage} alignment: {b['accuracy']:.3f} (chance {b['chance']:.3f})")
    for k, why in summary.get("skipped", {}).items():
        lines.append(f"skipped {k}: {why}")
    return lines
