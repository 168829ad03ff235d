"""The loop over blocks: benchmark every ``blockNN`` map of one model, then probe which block to use.

One function, :func:`run_blocks`, that ``cellmae bench`` (given a folder of block maps) and the
demo both call, so the two cannot drift apart: each block is benchmarked into ``OUT/blockNN``
(resumed when its bench is current), then linear probes across blocks write ``OUT/probes.csv``
and ``OUT/best_block.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cellmae import layout
from cellmae.bench.benchmark import BenchOptions, describe, is_current, resolve_truth_dir, run_bench
from cellmae.bench.inputs import check_map_dir, find_group_file, read_groups
from cellmae.bench.probes import (
    DEFAULT_METRIC,
    block_dirs,
    evaluation_perturbations,
    evaluation_recall_by_block,
    probe_blocks,
    write_probes,
)
from cellmae.bench.summary import read_summary
from cellmae.data.schema import PLATE


@dataclass
class BlocksResult:
    """What :func:`run_blocks` did: each block's bench summary, the probe table and the choice."""

    summaries: dict[str, dict] = field(default_factory=dict)  # block folder name -> summary.json
    skipped: list[str] = field(default_factory=list)  # blocks already benchmarked with these inputs
    probes: object | None = None  # the probes table (pandas), when probes ran
    best: dict | None = None  # the best_block.json record, when probes ran
    probes_skipped: str | None = None  # why no block was chosen (optional probes only)


def run_blocks(
    map_model_dir: str | Path,
    out_dir: str | Path,
    opts: BenchOptions,
    *,
    embed_model_dir: str | Path | None = None,
    bench: bool = True,
    probes: bool = True,
    probes_optional: bool = False,
    probe_groups: Path | None = None,
    probe_map_dir: str | Path | None = None,
    probe_metric: str = DEFAULT_METRIC,
    probe_folds: str = PLATE,
    held_out: bool = True,
    force: bool = False,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    advance: Callable[[], None] | None = None,
) -> BlocksResult:
    """Benchmark every block map under ``map_model_dir`` into ``out_dir/blockNN``; probe the blocks.

    ``embed_model_dir``: raw embeddings (``RUN/embed/<model>``, its ``blockNN`` folders pair with the
    maps) for the before/after batch diagnostic. ``bench=False`` runs only the probes. ``probes=False``
    removes a previous ``probes.csv`` / ``best_block.json`` (they would name blocks of another run).
    ``probe_map_dir``: probe the blocks of another screen's maps (a proxy screen, ViTally's protocol:
    block selection on tasks separate from the evaluation); its block numbers must be those of
    ``map_model_dir``. Default: probe ``map_model_dir`` itself.
    ``held_out``: the probes leave out every perturbation the evaluation scores (relationships and
    groups), so the block is never chosen on evaluation labels. ``probes_optional``: when no
    held-out perturbation is left to probe, record why instead of failing. ``force`` redoes blocks
    whose bench is current. ``say`` gets one line per block; ``advance`` is called after each.
    """
    map_model_dir, out_dir = Path(map_model_dir), Path(out_dir)
    say = say or (lambda _line: None)
    blocks = block_dirs(map_model_dir)
    for d in blocks.values():  # the probes read every block: each must be a complete map
        check_map_dir(d)
    result = BlocksResult()
    if bench:
        for d in blocks.values():
            target = out_dir / d.name
            block_opts = replace(opts, embed_dir=_embed_block(embed_model_dir, d.name))
            if not force and is_current(target, d, block_opts):
                say(f"{d.name}: already benchmarked in {target} (use --force to redo)")
                result.skipped.append(d.name)
                result.summaries[d.name] = read_summary(target)
            else:
                say(d.name)
                result.summaries[d.name] = run_bench(d, target, block_opts)
                for line in describe(result.summaries[d.name]):
                    say(f"  {line}")
            if advance:
                advance()
    if not probes:
        _remove_choice(out_dir)
        return result
    exclude = _evaluation_perturbations(opts) if held_out else set()
    probed = map_model_dir if probe_map_dir is None else _proxy_blocks(Path(probe_map_dir), blocks)
    try:
        table = probe_blocks(probed, read_groups(probe_groups) if probe_groups else None, exclude=exclude,
                             fold_column=probe_folds, progress=progress, seed=opts.seed)
    except ValueError as e:
        if not probes_optional:
            raise
        result.probes_skipped = str(e)  # no held-out perturbation to probe on: no choice rather than a leaky one
        _remove_choice(out_dir)
        return result
    protocol = {"held_out_perturbations": len(exclude), "fold_column": probe_folds,
                "group_probe": str(probe_groups) if probe_groups else None,
                "probe_screen": str(probe_map_dir) if probe_map_dir is not None else None}
    result.probes = table
    result.best = write_probes(table, out_dir, probe_metric, protocol=protocol,
                               evaluation_recall=evaluation_recall_by_block(out_dir))
    return result


def _proxy_blocks(probe_map_dir: Path, blocks: dict[int, Path]) -> Path:
    """``probe_map_dir`` after checking that it holds complete maps of the same blocks as the evaluation."""
    proxy = block_dirs(probe_map_dir)
    if sorted(proxy) != sorted(blocks):
        raise ValueError(f"--probe-map {probe_map_dir}: blocks {sorted(proxy)} differ from the evaluation's "
                         f"{sorted(blocks)}; embed and map both screens with the same --blocks")
    for d in proxy.values():
        check_map_dir(d)
    return probe_map_dir


def _embed_block(embed_model_dir: str | Path | None, name: str) -> Path | None:
    """The raw embeddings that pair with map block ``name`` (or the one folder given for all)."""
    if embed_model_dir is None:
        return None
    embed_model_dir = Path(embed_model_dir)
    return embed_model_dir / name if (embed_model_dir / name).is_dir() else embed_model_dir


def _evaluation_perturbations(opts: BenchOptions) -> set[str]:
    """Every perturbation the evaluation scores: its relationship tables and functional groups."""
    from cellmae.bench.relationships import load_relationships

    srcs = resolve_truth_dir(opts).relationships  # a simulator truth/ folder -> its relationships.csv
    rels = list(opts.relationships or [])
    group_path = opts.groups or (find_group_file(rels[0]) if rels else None)
    return evaluation_perturbations(load_relationships(srcs, names=opts.relationship_names) if srcs else None,
                                    read_groups(group_path) if group_path else None)


def _remove_choice(out_dir: Path) -> None:
    for name in (layout.BENCH_PROBES_FILE, layout.BEST_BLOCK_FILE):
        (out_dir / name).unlink(missing_ok=True)
