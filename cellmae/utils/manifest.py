"""Outputs committed as a unit: one writer per folder (a lock), a manifest written last.

A stage writes its whole output folder into a temporary sibling, lists every file with its
size and SHA-256 in ``manifest.json`` (with the settings and inputs that made it, and the
cellmae version), and renames the folder into place. The next stage reads through
:func:`read_manifest`, which refuses a folder whose manifest is missing, of another kind, or
whose files no longer match, and says which. The lock (``filelock``: an OS lock, released
when the holder dies, even by ``kill -9``) makes a second writer fail at once, naming the
holder, instead of interleaving its files with the first one's.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cellmae.layout import MANIFEST_FILE
from cellmae.utils.atomic import atomic_dir, write_text_atomic
from cellmae.utils.errors import InputError, OutputBusyError

MANIFEST_FORMAT = "cellmae-manifest/1"
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _data_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` except the manifest, lock files and hidden temporaries."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.as_posix() != MANIFEST_FILE and not any(p.startswith(".") for p in rel.parts):
            out.append(path)
    return out


def build_manifest(root: str | os.PathLike, kind: str, settings: Mapping[str, Any] | None = None,
                   inputs: Mapping[str, Any] | None = None, *, checksums: bool = True,
                   files: Iterable[str | os.PathLike] | None = None) -> dict:
    """The manifest of the files now under ``root`` (sizes, and SHA-256 unless ``checksums`` is off).

    ``files`` (paths under ``root``) restricts the listing, for folders that also hold files
    written after the manifest (exports) or rewritten by every run (progress markers).
    """
    from cellmae import __version__

    root = Path(root)
    chosen = _data_files(root) if files is None else sorted({root / Path(f) for f in files})
    files = {}
    for path in chosen:
        entry: dict[str, Any] = {"bytes": path.stat().st_size}
        if checksums:
            entry["sha256"] = sha256_file(path)
        files[path.relative_to(root).as_posix()] = entry
    return {"format": MANIFEST_FORMAT, "kind": kind, "cellmae_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": dict(settings or {}),
            "inputs": dict(inputs or {}), "files": files}


def write_manifest(root: str | os.PathLike, kind: str, settings: Mapping[str, Any] | None = None,
                   inputs: Mapping[str, Any] | None = None, *, checksums: bool = True,
                   extra: Mapping[str, Any] | None = None, files: Iterable[str | os.PathLike] | None = None) -> Path:
    """Write ``root/manifest.json`` atomically; call it after every other file is in place."""
    manifest = build_manifest(root, kind, settings, inputs, checksums=checksums, files=files)
    manifest.update(extra or {})
    return write_text_atomic(Path(root) / MANIFEST_FILE, json.dumps(manifest, indent=2, default=str) + "\n")


def read_manifest(root: str | os.PathLike, kind: str, *, rerun: str, deep: bool = False) -> dict:
    """The manifest of a complete ``kind`` folder, or an :class:`InputError` saying what is wrong.

    Sizes are always compared; ``deep`` also recomputes the checksums. ``rerun`` is the command
    that rewrites the folder, quoted in the message.
    """
    root = Path(root)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; run `{rerun}` first")
    if not path.is_file():
        raise InputError(f"{root}: no {MANIFEST_FILE}, so this {kind} output is incomplete (a run was "
                         f"interrupted or is still writing); rerun `{rerun}`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc}); rerun `{rerun}`") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a cellmae manifest ({MANIFEST_FORMAT}); rerun `{rerun}`")
    if manifest.get("kind") != kind:
        raise InputError(f"{root}: holds a {manifest.get('kind')!r} output, expected {kind!r}")
    problems = []
    for rel, entry in manifest.get("files", {}).items():
        f = root / rel
        if not f.is_file():
            problems.append(f"{rel} is missing")
        elif f.stat().st_size != entry.get("bytes"):
            problems.append(f"{rel} has {f.stat().st_size} bytes, the manifest says {entry.get('bytes')}")
        elif deep and entry.get("sha256") and sha256_file(f) != entry["sha256"]:
            problems.append(f"{rel} changed since it was written (checksum differs)")
    if problems:
        raise InputError(f"{root}: files do not match {MANIFEST_FILE} ({'; '.join(problems[:5])}"
                         f"{'; ...' if len(problems) > 5 else ''}); rerun `{rerun}`")
    return manifest


def _lock_path(folder: Path, part: str | None = None) -> Path:
    return folder.parent / (f".{folder.name}.{part}.lock" if part else f".{folder.name}.lock")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, part: str | None = None) -> Iterator[None]:
    """Hold the one-writer lock of ``folder`` (a sibling ``.NAME.lock``) for the block's duration.

    ``part`` names a share of the folder with its own lock (``.NAME.PART.lock``): the ranks of one
    distributed run write one folder together, each holding the lock of its own rank.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_file = _lock_path(folder, part)
    holder_file = lock_file.with_name(lock_file.name + ".holder")
    lock = FileLock(lock_file, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = json.loads(holder_file.read_text())
            who = f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}: {holder.get('command')}"
        except (OSError, ValueError):
            who = "holder unknown"
        share = f" ({part})" if part else ""
        raise OutputBusyError(f"{folder}{share} is being written by another cellmae process ({who}); wait for it "
                              "to finish or write to another --out") from None
    try:
        holder_file.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                           "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "command": " ".join(sys.argv)}))
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what killed writers of ``folder`` left beside it (call only while holding its lock)."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        return []
    gone = []
    name = glob.escape(folder.name)  # a name may hold [ ] * ?, which glob would read as a pattern
    for pattern in (f".{name}.*.tmp", f".{name}.old-*"):
        for stale in folder.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
            gone.append(stale)
    return gone


@contextlib.contextmanager
def committed_dir(final: str | os.PathLike, kind: str, settings: Mapping[str, Any] | None = None,
                  inputs: Mapping[str, Any] | None = None, *, checksums: bool = True) -> Iterator[Path]:
    """Write a whole output folder as a unit: lock, temp folder, manifest last, rename.

    Yields the temporary folder to write into. On success it holds a manifest and replaces
    ``final``; on any failure ``final`` keeps its previous complete content (or stays absent).
    """
    final = Path(final)
    with output_lock(final):
        remove_stale_temporaries(final)
        with atomic_dir(final) as tmp:
            yield tmp
            write_manifest(tmp, kind, settings, inputs, checksums=checksums)
