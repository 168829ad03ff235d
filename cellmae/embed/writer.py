"""Resumable, atomic Parquet output: one ``part-0.parquet`` per plate and block, hive-partitioned.

Layout under ``OUT`` (= ``RUN/embed/<model>``), ``<P>`` = ``Metadata_Experiment=<exp>/Metadata_Plate=<plate>``::

    block06/<P>/part-0.parquet            one row per well (metadata + float32 feature_ columns)
    sites/block06/<P>/part-0.parquet      one row per site (only with site level on)
    _progress/<P with / as +>.json        written last: which blocks of this plate are complete
    embed_config.json                     what produced the embeddings (created once; every writer must match)
    manifest.json                         plates, wells, parts and their sizes, once every plate is done

The partition folders are named by their real columns, and the parts do not repeat those two
columns (the hive convention, as ``DataFrame.to_parquet(partition_cols=...)`` writes): reading a
block folder with pandas gives exactly the metadata columns back, and
:func:`cellmae.data.tables.read_parquet_parts` restores them as strings.

A plate is written by exactly one rank, under a fixed part name, so reruns and different world
sizes overwrite instead of duplicating; the ``_progress`` marker is written after the Parquet
files, so a kill at any point leaves the plate either complete or recomputed on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pandas as pd

from cellmae import layout
from cellmae.data.tables import PARTITION_COLUMNS, partition_dir
from cellmae.utils.atomic import atomic_path, write_text_atomic
from cellmae.utils.errors import InputError, writing
from cellmae.utils.manifest import MANIFEST_FILE, output_lock, write_manifest

PART_NAME = layout.EMBED_PART_FILE
PROGRESS_DIR = layout.EMBED_PROGRESS_DIR
CONFIG_FILE = layout.EMBED_CONFIG_FILE
FEATURE_NAMES_FILE = layout.FEATURE_NAMES_FILE
SITES_DIR = layout.EMBED_SITES_DIR
EMBED_KIND = "embed"  # the manifest kind of a `cellmae embed` output folder


def block_name(block: int) -> str:
    """Folder name of a block's feature set: ``block06``."""
    return f"block{int(block):02d}"


def plate_id(experiment: str, plate: str) -> str:
    """Id of a plate, unique across experiments (RxRx reuses plate numbers): its partition path
    ``Metadata_Experiment=<exp>/Metadata_Plate=<plate>`` under a block folder."""
    return partition_dir((experiment, plate))


class EmbeddingStore:
    """The output folder of one model: per-plate Parquet parts, progress markers, config, manifest.

    Create it inside :func:`embedding_lock` (one writer per rank and folder).
    """

    def __init__(self, root: str | Path, config: Mapping, *, overwrite: bool = False, check: bool = True):
        self.root = Path(root)
        self.config = dict(config)
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if check:
            self._check_config()
            self._check_layout()

    def _check_layout(self) -> None:
        # Before the hive layout, parts sat in plate=<id> folders: resuming such a folder would write
        # every plate again beside the old parts, which no manifest would then describe.
        old = next((p for pattern in ("*/plate=*", f"{SITES_DIR}/*/plate=*") for p in self.root.glob(pattern)), None)
        if old is not None:
            raise InputError(f"{old}: embeddings in the folder layout of an older cellmae (plate=<id>); "
                             f"write to another folder or pass --overwrite to replace {self.root}")

    def _check_config(self) -> None:
        # One settings record per folder, created once: every writer (each rank of a run, a
        # rerun, a second run started by mistake) must match it exactly. Mixing tiles, pools or
        # models inside one feature set would corrupt every downstream benchmark, and a record
        # rewritten by a later run would disagree with parts and a manifest made by the first.
        path = self.root / CONFIG_FILE
        _create_once(path, json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({exc}); delete {self.root} or pass --overwrite") from exc
        keys = sorted(set(old) | set(self.config))
        diff = {k: (old.get(k), self.config.get(k)) for k in keys if old.get(k) != self.config.get(k)}
        if diff:
            lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise InputError(
                f"{self.root} holds embeddings made with other settings ({lines}); "
                "write to another folder or pass --overwrite"
            )

    # ---- paths ---------------------------------------------------------------------------
    def block_dir(self, block: int, *, level: str = "well") -> Path:
        base = self.root / SITES_DIR if level == "site" else self.root
        return base / block_name(block)

    def part_path(self, block: int, pid: str, *, level: str = "well") -> Path:
        return self.block_dir(block, level=level) / pid / PART_NAME

    def _progress_path(self, pid: str) -> Path:
        # One flat file per plate: values are URI-quoted, so "+" appears only where "/" was.
        return self.root / PROGRESS_DIR / f"{pid.replace('/', '+')}.json"

    # ---- resume --------------------------------------------------------------------------
    def done_blocks(self, pid: str, *, levels: Iterable[str] = ("well",)) -> set[int]:
        """Blocks of plate ``pid`` already complete (marker present and every part file there)."""
        path = self._progress_path(pid)
        if not path.exists():
            return set()
        marker = json.loads(path.read_text())
        return {
            int(b)
            for b in marker.get("blocks", [])
            if all(self.part_path(int(b), pid, level=lv).exists() for lv in levels)
        }

    def pending_blocks(self, pid: str, blocks: Iterable[int], *, levels: Iterable[str] = ("well",)) -> list[int]:
        done = self.done_blocks(pid, levels=levels)
        return [b for b in blocks if b not in done]

    # ---- writing -------------------------------------------------------------------------
    def write_part(self, frame: pd.DataFrame, block: int, pid: str, *, level: str = "well") -> Path:
        """Write one plate's table for one block atomically (a reader never sees half a file)."""
        final = self.part_path(block, pid, level=level)
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{PART_NAME}.*.tmp"):  # left by a killed run on this plate
            stale.unlink(missing_ok=True)
        frame = frame.drop(columns=[c for c in PARTITION_COLUMNS if c in frame.columns])  # in the folder name
        with writing(final), atomic_path(final) as tmp:  # a full disk names the part, not a temp file
            frame.to_parquet(tmp, index=False, engine="pyarrow")
        return final

    def mark_done(self, pid: str, blocks: Iterable[int], info: Mapping) -> None:
        """Record ``blocks`` of plate ``pid`` as complete (merged with blocks done before)."""
        path = self._progress_path(pid)
        old = json.loads(path.read_text()) if path.exists() else {}
        merged = sorted(set(old.get("blocks", [])) | {int(b) for b in blocks})
        marker = {**old, **info, "plate": pid, "blocks": merged, "time": time.time()}
        with writing(path):
            write_text_atomic(path, json.dumps(marker, sort_keys=True) + "\n")

    def write_manifest(self, plates: Iterable[str], blocks: Iterable[int], *, levels: Iterable[str]) -> Path | None:
        """Write ``manifest.json`` when every plate has every block; return its path (else None).

        Built only from the progress markers and the files on disk, so whichever rank finishes
        last writes the same file. It lists every part (sizes; checksums would reread gigabytes)
        and the settings of ``embed_config.json``, so the two cannot disagree.
        """
        plates, levels = sorted(plates), list(levels)
        entries = []
        common: set[int] | None = None  # blocks complete on every plate (earlier runs' blocks included)
        for pid in plates:
            done = self.done_blocks(pid, levels=levels)
            if set(blocks) - done:
                return None
            common = done if common is None else common & done
            marker = json.loads(self._progress_path(pid).read_text())
            entries.append({"plate": pid, "wells": marker.get("wells"), "sites": marker.get("sites")})
        blocks = sorted(common or blocks)
        files = [self.part_path(b, pid, level=lv) for b in blocks for pid in plates for lv in levels]
        files += [self.root / f for f in (CONFIG_FILE, FEATURE_NAMES_FILE) if (self.root / f).is_file()]
        extra = {
            "blocks": {block_name(b): str(self.block_dir(b).relative_to(self.root)) for b in blocks},
            "levels": levels,
            "plates": entries,
            "wells": int(sum(e["wells"] or 0 for e in entries)),
            "sites": int(sum(e["sites"] or 0 for e in entries)),
        }
        with writing(self.root / MANIFEST_FILE):
            return write_manifest(self.root, EMBED_KIND, self.config, checksums=False, extra=extra,
                                  files=[f.relative_to(self.root) for f in files])


@contextlib.contextmanager
def embedding_lock(root: str | Path, rank: int = 0) -> Iterator[None]:
    """This rank's lock on ``root``: a second run into the same folder fails at once, naming the holder.

    Ranks of one distributed run share the folder by design (each writes its own plates), so the
    lock is per rank; two runs always collide on rank 0, and :class:`EmbeddingStore`'s settings
    check refuses any writer whose settings differ.
    """
    with output_lock(root, part=f"rank{int(rank)}"):
        yield


def _create_once(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` only if it does not exist, atomically.

    Written by hand: no library offers create-if-absent with the full content at once. The text
    goes to a temporary file that is then hard-linked to ``path``; ``link`` fails when ``path``
    exists, so of two writers racing, exactly one record survives and both compare against it.
    """
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
