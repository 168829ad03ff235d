"""Public entry points: ``embed_screen`` (a model) and ``embed_handcrafted`` (the classical baseline)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellmae import layout
from cellmae.data.schema import EXPERIMENT, PLATE, SITE_KEYS
from cellmae.embed.aggregate import site_metadata, wells_from_sites
from cellmae.embed.channels import find_dna_channel, parse_channel_list, plan_channels
from cellmae.embed.distributed import device_for_rank, plates_for_rank, rank_info
from cellmae.embed.featurize import (
    HandcraftedPrep,
    ModelFeatures,
    TilePrep,
    featurize_sites,
    precomputed_features,
)
from cellmae.embed.progress import WellProgress
from cellmae.embed.sources import HANDCRAFTED, resolve_source
from cellmae.embed.writer import FEATURE_NAMES_FILE, EmbeddingStore, embedding_lock, plate_id
from cellmae.layout import RunDir, block_name, read_best_block
from cellmae.models.interface import resolve_blocks
from cellmae.utils.errors import InputError

log = logging.getLogger(__name__)
HANDCRAFTED_BLOCK = 0  # handcrafted features have no blocks; they live in block00


@dataclass
class EmbedSummary:
    """What a run did: where each block went and how fast it was."""

    out_dir: Path
    paths: dict[int, Path]
    plates_done: int = 0
    plates_skipped: int = 0
    wells: int = 0
    sites: int = 0
    images: int = 0
    seconds: float = 0.0
    manifest: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wells_per_s(self) -> float:
        return self.wells / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One summary line for the terminal."""
        where = ", ".join(str(p) for p in self.paths.values())
        skipped = f", {self.plates_skipped} already done" if self.plates_skipped else ""
        return (
            f"embedded {self.wells} wells ({self.sites} sites, {self.plates_done} plates{skipped}) in "
            f"{self.seconds:.1f} s: {self.wells_per_s:.2f} wells/s, {self.images / max(self.seconds, 1e-9):.1f} "
            f"images/s -> {where}"
        )


def open_any_screen(screen, layout: str = "auto", **spec_options) -> tuple[Any, str | None]:
    """(screen, note): a path opened by the data readers with its screen spec (the note says which), or
    the screen object itself."""
    from cellmae.embed.screens import open_embed_screen

    return open_embed_screen(screen, layout=layout, **spec_options)


def _spec_record(screen) -> dict | None:
    spec = getattr(screen, "spec", None)
    return spec.record() if spec is not None else None


def parse_blocks(spec: str | int | Sequence[int] | None, num_blocks: int, *, best_block_file: str | Path | None = None) -> list[int]:
    """Blocks to embed: ``None``/"last" -> the last block; "all"; "auto" (best_block.json); "6,8,12"; ints."""
    if spec is None:
        spec = "last"
    if spec == "auto":
        if best_block_file is None:
            raise ValueError("blocks='auto' needs the best_block.json path (best_block_file=...)")
        spec = [read_best_block(best_block_file)]
    elif isinstance(spec, str) and spec not in ("all", "last"):
        try:
            spec = [int(b) for b in spec.split(",") if b.strip()]
        except ValueError:
            raise ValueError(f"--blocks {spec!r}: expected 'all', 'last', 'auto' or a list like 6,8,12") from None
    return resolve_blocks(spec, num_blocks)


def default_best_block_file(out_dir: Path) -> Path:
    """RUN/embed/<model> -> RUN/bench/<model>/best_block.json."""
    run, model = RunDir.of_embed_output(out_dir)
    return run.best_block_file(model)


def model_input_size(model) -> int | None:
    """The square input size a model was built for (config ``img_size``/``tile``), if it has one."""
    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict):
        size = cfg.get("img_size", cfg.get("tile"))
        return int(size) if size else None
    return None


def resolve_tile(tile: int | str | None, model) -> int | None:
    """Tile size: "auto" -> the model's input size; 0/None/"full" -> whole fields; else checked int."""
    size = model_input_size(model)
    if tile == "auto":
        return size
    if tile in (None, 0, "0", "full"):
        return None
    tile = int(tile)
    if tile <= 0:
        raise ValueError(f"tile must be positive (or 'auto' / 'full'), got {tile}")
    if size is not None and tile != size and not getattr(model, "dynamic_img_size", False):
        raise ValueError(f"tile={tile} but the model takes {size}x{size} inputs; use --tile {size} (or 'auto')")
    return tile


def _plates(meta: pd.DataFrame) -> dict[str, np.ndarray]:
    pids = [plate_id(e, p) for e, p in zip(meta[EXPERIMENT].astype(str), meta[PLATE].astype(str), strict=True)]
    codes, uniq = pd.factorize(pd.Series(pids), sort=True)
    order = np.lexsort([meta[k].astype(str).to_numpy() for k in reversed([k for k in SITE_KEYS if k in meta])])
    return {pid: order[codes[order] == c] for c, pid in enumerate(uniq)}


def _run(screen, store: EmbeddingStore, *, prep, compute, blocks: list[int], site_level: bool,
         fields_per_batch: int, num_workers: int, rank: int | None, world_size: int | None,
         progress: bool, pin_memory: bool = False, feature_names: list[str] | None = None) -> EmbedSummary:
    t0 = time.perf_counter()
    info = rank_info()
    rank = info.rank if rank is None else rank
    world_size = info.world_size if world_size is None else world_size
    meta = screen.metadata.reset_index(drop=True)
    plates = _plates(meta)
    levels = ["well", "site"] if site_level else ["well"]
    mine = plates_for_rank({p: len(s) for p, s in plates.items()}, rank, world_size)
    todo = {p: store.pending_blocks(p, blocks, levels=levels) for p in mine}
    # Only the blocks still missing are computed; a plate with some blocks done recomputes the rest.
    work = {p: plates[p] for p, b in todo.items() if b}
    summary = EmbedSummary(store.root, {b: store.block_dir(b) for b in blocks}, plates_skipped=len(mine) - len(work))
    if feature_names is not None:
        from cellmae.utils.atomic import write_text_atomic

        write_text_atomic(store.root / FEATURE_NAMES_FILE, json.dumps(feature_names, indent=1) + "\n")

    sites_meta = site_metadata(meta)
    sites_in_well = sites_meta.groupby(list(SITE_KEYS[:3]))[SITE_KEYS[0]].transform("size").to_numpy() \
        if len(sites_meta) else np.zeros(0)
    total_wells = float(sum((1.0 / sites_in_well[s]).sum() for s in work.values()))

    def on_plate(pid: str, sites: np.ndarray, feats: dict[int, np.ndarray]) -> None:
        smeta = sites_meta.iloc[sites].reset_index(drop=True)
        from cellmae.data.schema import embeddings_frame

        for b in todo[pid]:
            wmeta, wfeats = wells_from_sites(smeta, feats[b])
            store.write_part(embeddings_frame(wmeta, wfeats), b, pid)
            if site_level:
                store.write_part(embeddings_frame(smeta, feats[b]), b, pid, level="site")
        store.mark_done(pid, todo[pid], {"wells": int(len(wmeta)), "sites": int(len(sites))})
        summary.plates_done += 1
        summary.wells += int(len(wmeta))
        summary.sites += int(len(sites))

    with WellProgress(total_wells, enabled=progress, description=f"embed {store.root.name}") as bar:
        def on_sites(idx: np.ndarray, n_images: int) -> None:
            bar.advance(float((1.0 / sites_in_well[idx]).sum()), n_images)

        if work:
            needed = sorted({b for p in work for b in todo[p]})
            if isinstance(compute, ModelFeatures):
                compute.blocks = needed  # the forward pass then stops at the deepest block still missing
            summary.images = featurize_sites(
                screen, work, prep, lambda rows: {b: f for b, f in compute(rows).items() if b in needed},
                on_plate, fields_per_batch=fields_per_batch, num_workers=num_workers, on_sites=on_sites,
                pin_memory=pin_memory,
            )
    summary.seconds = time.perf_counter() - t0
    summary.manifest = store.write_manifest(plates, blocks, levels=levels)
    return summary


@contextlib.contextmanager
def _open_store(out_dir: Path, config: dict, overwrite: bool, rank: int | None,
                world_size: int | None) -> Iterator[EmbeddingStore]:
    """The output store of this rank, held under its lock for the whole run."""
    info = rank_info()
    rank = info.rank if rank is None else rank
    world_size = info.world_size if world_size is None else world_size
    if overwrite and world_size > 1:
        # Ranks do not synchronise: one rank deleting OUT could remove another's fresh parts, or
        # another rank could trust stale markers just before they are deleted.
        raise InputError(f"--overwrite with {world_size} ranks is unsafe: delete {out_dir} before launching")
    with embedding_lock(out_dir, rank):
        yield EmbeddingStore(out_dir, config, overwrite=overwrite)


def _check_counts(batch_size: int, num_workers: int | None) -> None:
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: give at least 1 image per forward pass (default 64)")
    if num_workers is not None and num_workers < 0:
        raise InputError(f"--num-workers {num_workers}: give 0 (read in the main process) or more")


def _default_workers(num_workers: int | None, *, model_in_main: bool = True) -> int:
    if num_workers is not None:
        return num_workers
    cores = os.cpu_count() or 1
    if not model_in_main:  # handcrafted: all the work is in the workers, the main process only collects
        return max(0, min(4, cores))
    # Decoding PNGs is the other half of the work on CPU; leave one core to the model.
    return max(0, min(4, cores - 1))


def run_embedding(
    screen,
    model_source,
    out_dir: str | Path,
    *,
    blocks: str | int | Sequence[int] | None = None,
    tile: int | str | None = "auto",
    pool: str = "mean",
    image_stats: bool = False,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    layout: str = "auto",
    channels: str | Sequence[str] | None = None,
    site_level: bool = False,
    anndata: bool = False,
    overwrite: bool = False,
    num_workers: int | None = None,
    best_block_file: str | Path | None = None,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    screen_spec=None,
    reader_options: dict | None = None,
    cache_dir: str | Path | None = None,
) -> EmbedSummary:
    """Featurize ``screen`` with ``model_source`` into ``out_dir`` (= RUN/embed/<model>); see embed_screen."""
    from cellmae.utils.device import select_autocast_dtype

    _check_counts(batch_size, num_workers)
    screen, note = open_any_screen(screen, layout, screen_spec=screen_spec, model_source=model_source,
                                   spec_overrides=reader_options, cache_dir=cache_dir)
    out_dir = Path(out_dir)
    requested = parse_channel_list(channels)
    src = resolve_source(model_source, screen_channels=requested or screen.channels,
                         tile=tile if isinstance(tile, int) and tile > 0 else 64, seed=seed)
    if src.kind == "handcrafted":
        hand = run_handcrafted(screen, out_dir, channels=requested, site_level=site_level, anndata=anndata,
                               overwrite=overwrite, num_workers=num_workers, rank=rank, world_size=world_size,
                               progress=progress)
        hand.extra["screen_spec"] = note
        return hand
    model = src.model
    plan = plan_channels(screen.channels, getattr(model, "expected_channels", None), requested=requested)
    if plan.dropped:
        log.info("screen channels not used by the model: %s", ", ".join(plan.dropped))
    block_list = parse_blocks(blocks, int(model.num_blocks),
                              best_block_file=best_block_file or default_best_block_file(out_dir))
    info = rank_info()
    dev = device_for_rank(device, info if rank is None else type(info)(rank, world_size or 1, rank, world_size or 1))
    dtype = select_autocast_dtype(dev, precision)
    tile = resolve_tile(tile, model)
    prep = TilePrep(plan.indices, tile)
    tiles_per_field = len(prep(screen.read_field(0))) if len(screen) else 1  # also checks tile <= field size
    config = {"source": src.describe(), "tile": tile, "pool": pool, **({"image_stats": True} if image_stats else {}),
              "channels": list(plan.names),
              "precision": str(dtype).replace("torch.", "") if dtype else "float32", "seed": seed,
              "level": "well+site" if site_level else "well", "screen_spec": _spec_record(screen)}
    compute = ModelFeatures(model, plan, block_list, pool, device=dev, dtype=dtype, batch_size=batch_size,
                            image_stats=image_stats)
    with _open_store(out_dir, config, overwrite, rank, world_size) as store:
        summary = _run(screen, store, prep=prep, compute=compute, blocks=block_list, site_level=site_level,
                       fields_per_batch=max(1, batch_size // tiles_per_field),
                       num_workers=_default_workers(num_workers), rank=rank, world_size=world_size,
                       progress=progress, pin_memory=dev.type == "cuda")
        if anndata and summary.manifest is not None:
            _export_anndata(out_dir, block_list)
    summary.extra |= {"screen_spec": note, "device": str(dev), "precision": config["precision"], "channels": list(plan.names),
                      "dropped_channels": list(plan.dropped), "tiles_per_field": tiles_per_field}
    return summary


def run_handcrafted(
    screen, out_dir: str | Path, *, channels: str | Sequence[str] | None = None, site_level: bool = False,
    anndata: bool = False, overwrite: bool = False, num_workers: int | None = None, layout: str = "auto",
    rank: int | None = None, world_size: int | None = None, progress: bool = True, screen_spec=None,
    reader_options: dict | None = None, cache_dir: str | Path | None = None,
) -> EmbedSummary:
    """Handcrafted features of every well into ``out_dir``/block00 (= RUN/embed/handcrafted)."""
    from cellmae.models.handcrafted import handcrafted_feature_names

    screen, note = open_any_screen(screen, layout, screen_spec=screen_spec, spec_overrides=reader_options,
                                   cache_dir=cache_dir)
    plan = plan_channels(screen.channels, None, requested=parse_channel_list(channels))
    dna = find_dna_channel(plan.names)
    config = {"source": {"kind": "handcrafted", "name": HANDCRAFTED}, "channels": list(plan.names),
              "dna_channel": plan.names[dna], "level": "well+site" if site_level else "well",
              "screen_spec": _spec_record(screen)}
    _check_counts(1, num_workers)
    names = handcrafted_feature_names(plan.names)
    with _open_store(Path(out_dir), config, overwrite, rank, world_size) as store:
        # One field per batch: there is no model to batch for, and plates then finish (and are
        # kept) field by field, so an unreadable file loses no finished plate.
        summary = _run(screen, store, prep=HandcraftedPrep(plan.indices, plan.names, dna),
                       compute=precomputed_features, blocks=[HANDCRAFTED_BLOCK], site_level=site_level,
                       fields_per_batch=1, num_workers=_default_workers(num_workers, model_in_main=False),
                       rank=rank, world_size=world_size, progress=progress, feature_names=names)
        if anndata and summary.manifest is not None:
            _export_anndata(Path(out_dir), [HANDCRAFTED_BLOCK], feature_names=names)
    summary.extra |= {"screen_spec": note, "channels": list(plan.names), "dna_channel": plan.names[dna]}
    return summary


def _export_anndata(out_dir: Path, blocks: Sequence[int], feature_names: list[str] | None = None) -> None:
    from cellmae.embed.io import write_anndata

    for b in blocks:
        write_anndata(out_dir / block_name(b), out_dir / layout.EMBED_ANNDATA_DIR / f"{block_name(b)}.h5ad", feature_names=feature_names)


def embed_screen(screen, model_source, out_dir: str | Path, **options) -> dict[int, Path]:
    """Featurize a screen; return {block: folder of its per-plate Parquet parts}.

    ``screen``: a screen folder (read with ``layout``) or an opened screen; ``model_source``: a
    checkpoint dir, an OpenPhenom file, ``timm:NAME[@WEIGHTS]``, ``random-init:PRESET|CKPT_DIR``,
    ``handcrafted`` or a model object with ``forward_features``. Options: ``blocks`` (None = last,
    "all", "auto", "6,8,12" or ints), ``tile`` (None = whole field), ``pool`` ("mean", "cls",
    "channel_concat"), ``image_stats`` (append per-channel tile mean and spread), ``batch_size`` (images per forward), ``device``, ``precision``, ``channels``
    (subset/order of screen channels), ``site_level``, ``anndata``, ``overwrite``, ``num_workers``,
    ``best_block_file``, ``seed``, ``rank``/``world_size`` (default: from torchrun/SLURM env),
    ``progress``; how a screen path is opened: ``layout``, ``screen_spec`` (a ScreenSpec or a spec
    file / shard / embed / training-run folder; default: the model's training run), ``reader_options``
    (ScreenSpec fields applied over it) and ``cache_dir``. Reruns skip finished plates.
    """
    return run_embedding(screen, model_source, out_dir, **options).paths


def embed_handcrafted(screen, out_dir: str | Path, **options) -> dict[int, Path]:
    """Handcrafted-feature baseline; returns {0: out_dir/block00}. Options as run_handcrafted."""
    return run_handcrafted(screen, out_dir, **options).paths
