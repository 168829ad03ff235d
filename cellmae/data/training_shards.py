"""The shard set a training run reads: a shard set as given, or shards of a screen built for it.

Training itself takes shards only (``cellmae.train.run.run_training``); ``cellmae train SCREEN`` and the
scaling study compose building them with training through :func:`ensure_shards`.
"""

from __future__ import annotations

import time
from pathlib import Path

from cellmae import layout
from cellmae.data.shard_reader import is_shard_dir, read_shard_info
from cellmae.data.shards import build_shards
from cellmae.utils.errors import InputError


def ensure_shards(
    source: str | Path,
    shard_dir: str | Path,
    *,
    crop_size: int,
    crops_per_field: int | None,
    seed: int = 0,
    keep_wells: str | Path | None = None,
    progress: bool = True,
    wait_s: float = 3600.0,
) -> Path:
    """The shard set to train on: ``source`` itself when it is one, else shards of the screen folder ``source``
    (restricted to the wells listed in ``keep_wells``) built into ``shard_dir``.

    In a multi-process launch every process calls this: global rank 0 builds, the others wait for the
    finished folder (it appears only when complete). A shard set given with ``keep_wells`` must have been
    built from that list.
    """
    from cellmae.utils.ranks import rank_info

    source, shard_dir = Path(source), Path(shard_dir)
    if is_shard_dir(source):
        if keep_wells is not None:
            check_kept_wells(source, keep_wells)
        return source
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder (expected a shard set or a screen folder)")
    rank = rank_info().rank
    if rank != 0:
        deadline = time.monotonic() + wait_s
        while not (shard_dir / layout.MANIFEST_FILE).is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank}: {shard_dir} was not built by rank 0 within {wait_s:.0f}s")
            time.sleep(2.0)
        return shard_dir
    from cellmae.data.readers import open_screen

    screen = open_screen(source)
    if keep_wells is not None:
        from cellmae.data.readers.subset import read_well_list

        screen = screen.subset(read_well_list(keep_wells))
    build_shards(screen, shard_dir, crop_size=crop_size, crops_per_field=crops_per_field, seed=seed, progress=progress)
    return shard_dir


def check_kept_wells(shard_dir: str | Path, keep_wells: str | Path) -> None:
    """Refuse a shard set not built from the well list ``keep_wells`` (a curated training run must not
    silently train on every well)."""
    from cellmae.data.readers.subset import read_well_list, well_list_digest

    recorded = read_shard_info(shard_dir).get("kept_wells") or {}
    if recorded.get("sha256") != well_list_digest(read_well_list(keep_wells)):
        raise InputError(f"data.keep_wells={keep_wells}: the shard set {shard_dir} was not built from this well list; "
                         f"build it with `cellmae shards build SCREEN -o {shard_dir} --keep-wells {keep_wells}`, or give "
                         "`cellmae train` the screen folder so that it builds them into OUT/shards")
