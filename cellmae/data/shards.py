"""Training shards through LitData: write crops + metadata once, stream them to any number of GPUs.

On disk a shard set is a LitData dataset (``index.json`` + ``chunk-*.bin``) plus cellmae sidecars:
``cellmae_shards.json`` (channels, crop size, counts, build options), ``crops.parquet`` (one row per
crop: metadata and position), ``skipped.csv`` when fields were skipped, and ``manifest.json``
(every file with its size and checksum, written last). One build writes a folder at a time (a
lock beside it). Fields are written in parts under ``.<out>.partial/``, each part committed as a
unit with its own manifest, so a rerun after a crash keeps the complete parts and redoes the rest;
the parts are then merged into a temporary folder that is renamed onto ``<out>``: a shard set is
never half-written, and the parts stay intact until that rename has happened.

Reading (``cellmae.data.shard_reader``, re-exported here) refuses a folder whose manifest is
missing or does not match, then streams through ``litdata.StreamingDataset``/``StreamingDataLoader``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from cellmae import layout
from cellmae.data.crops import CROP_MODES, FieldCrops, crop_record, field_crops
from cellmae.data.qc import QCConfig
from cellmae.data.readers.base import ReadError, Screen
from cellmae.data.schema import SchemaError
from cellmae.data.shard_reader import (  # noqa: F401  (re-exported: the read side of this module's format)
    CROPS_FILE,
    FORMAT,
    INFO_FILE,
    MANIFEST_KIND,
    SKIPPED_FILE,
    ShardCollate,
    read_crops_table,
    read_shard_info,
    shard_dataloader,
    shard_dataset,
)
from cellmae.data.workers import die_with_parent, fault_point
from cellmae.utils.atomic import atomic_dir, atomic_path, write_text_atomic
from cellmae.utils.errors import InputError
from cellmae.utils.manifest import output_lock, read_manifest, remove_stale_temporaries, write_manifest

PART_FILE = layout.SHARDS_PART_FILE
BUILD_FILE = layout.SHARDS_BUILD_FILE
PART_KIND = "shards-part"
_COUNTS = ("fields", "fields_skipped", "crops_written", "qc_candidates", "qc_empty", "qc_out_of_focus")


@dataclass
class ShardReport:
    """What a build did: fields read/skipped, crops written, QC drops, and the skipped fields."""

    out_dir: str
    fields: int = 0
    fields_skipped: int = 0
    crops_written: int = 0
    qc_candidates: int = 0
    qc_empty: int = 0
    qc_out_of_focus: int = 0
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("skipped")
        return d


def _field_job(screen: Screen, i: int, kwargs: dict) -> FieldCrops | dict:
    """Crops of field i, or a skip record naming the file(s) and the error (runs in a worker)."""
    fault_point("worker-field")
    try:
        return field_crops(screen, i, **kwargs)
    except (ReadError, SchemaError, OSError, ValueError) as e:
        return {"field_index": i, "path": ";".join(map(str, screen.path(i))), "error": str(e)}


def _iter_fields(screen: Screen, fields: range, kwargs: dict, workers: int):
    """Field results in field order; ``workers`` > 0 decodes in processes, at most 2 x workers ahead."""
    if workers <= 0:
        for i in fields:
            yield _field_job(screen, i, kwargs)
        return
    try:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            pending: deque = deque()
            for i in fields:
                pending.append(pool.submit(_field_job, screen, i, kwargs))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    except BrokenProcessPool as e:
        raise InputError(f"{screen.source}: a --workers process died while decoding fields {fields.start}.."
                         f"{fields.stop - 1} (killed, or out of memory); rerun the same command (finished parts "
                         "are kept), with fewer --workers if memory is short") from e


def _write_part(screen: Screen, fields: range, part_dir: Path, kwargs: dict, opts: dict, advance) -> None:
    """Write the crops of ``fields`` as one complete LitData dataset + ``part.json``, committed as a unit."""
    from litdata.streaming.writer import BinaryWriter

    counts = dict.fromkeys(_COUNTS, 0)
    skipped: list[dict] = []
    rows: list[dict] = []
    remove_stale_temporaries(part_dir)
    with atomic_dir(part_dir) as tmp:
        writer = BinaryWriter(str(tmp), chunk_bytes=opts["chunk_bytes"], compression=opts["compression"])
        for res in _iter_fields(screen, fields, kwargs, opts["workers"]):
            advance()
            fault_point("field")
            if isinstance(res, dict):
                if not opts["skip_bad"]:
                    raise ReadError(res["error"])
                counts["fields_skipped"] += 1
                skipped.append(res)
                continue
            counts["fields"] += 1
            counts["qc_candidates"] += res.n_candidates
            counts["qc_empty"] += res.n_empty
            counts["qc_out_of_focus"] += res.n_out_of_focus
            for k in range(len(res.positions)):
                rec = crop_record(screen, res, k)
                writer.add_item(counts["crops_written"], rec)
                rows.append({key: v for key, v in rec.items() if key != "image"})
                counts["crops_written"] += 1
        if rows:
            writer.done()
            writer.merge(num_workers=1)
            _to_parquet(pd.DataFrame(rows), tmp / CROPS_FILE)
        (tmp / PART_FILE).write_text(json.dumps({**counts, "skipped": skipped}))
        write_manifest(tmp, PART_KIND, checksums=False)
    fault_point("part")


def _part_is_complete(part_dir: Path) -> bool:
    """True for a part an earlier run committed and nobody changed since; anything else is redone."""
    if not part_dir.is_dir():
        return False
    try:
        read_manifest(part_dir, PART_KIND, rerun="cellmae shards build")
        return True
    except InputError:
        shutil.rmtree(part_dir)
        return False


def _check_options(crop_size, crops_per_field, mode, part_fields, workers, chunk_bytes, compression) -> None:
    """Refuse impossible options up front, naming the command-line option (and the Python argument)."""
    from litdata.streaming.compression import _COMPRESSORS
    from litdata.utilities.format import _convert_bytes_to_int

    if mode not in CROP_MODES:
        raise InputError(f"--mode (mode): must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    for opt, val, low in (("--crop-size (crop_size)", crop_size, 1), ("--part-fields (part_fields)", part_fields, 1),
                          ("--workers (workers)", workers, 0),
                          ("--crops-per-field (crops_per_field)", 1 if crops_per_field is None else crops_per_field, 1)):
        if not isinstance(val, int) or val < low:
            raise InputError(f"{opt}: must be an integer >= {low}, got {val!r}")
    try:
        ok = isinstance(chunk_bytes, int) and chunk_bytes > 0 or _convert_bytes_to_int(str(chunk_bytes)) > 0
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise InputError(f"--chunk-bytes (chunk_bytes): expected a size such as 64MB, got {chunk_bytes!r}")
    if compression is not None and compression not in _COMPRESSORS:
        have = ", ".join(_COMPRESSORS) or "none installed (pip install zstandard for zstd)"
        raise InputError(f"--compression (compression): {compression!r} is not available (available: {have}); "
                         "omit it to write uncompressed chunks")


def build_shards(
    screen: Screen,
    out_dir: str | Path,
    *,
    crop_size: int = 256,
    crops_per_field: int | None = 8,
    mode: str = "random",
    seed: int = 0,
    qc: QCConfig | None = None,
    skip_bad: bool = False,
    report_path: str | Path | None = None,
    chunk_bytes: str = "64MB",
    compression: str | None = None,
    workers: int = 0,
    part_fields: int = 1024,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> ShardReport:
    """Cut crops from every field of ``screen`` and write them as a LitData shard set at ``out_dir``.

    ``mode="random"``: ``crops_per_field`` random crops per field (seeded by (seed, field));
    ``mode="grid"``: the field's grid of tiles (capped at ``crops_per_field`` unless None).
    ``qc``: drop empty / out-of-focus crops (counts in the report). ``skip_bad``: a field that
    cannot be read is skipped and listed in ``skipped.csv`` (and ``report_path``, CSV or JSON)
    instead of failing the build. ``workers``: processes decoding fields in parallel.
    ``compression``: LitData chunk compression (e.g. "zstd"), None for raw (fastest to read).

    Resumable: fields are written in parts of ``part_fields`` under ``.<out>.partial/``; a rerun
    with the same options (``resume=True``) keeps the finished parts. The parts are merged with
    ``litdata.merge_datasets`` into ``out_dir``, which appears only when complete (manifest last).
    Rerunning a build that already completed with the same options returns its report.
    """
    out_dir = Path(out_dir)
    _check_options(crop_size, crops_per_field, mode, part_fields, workers, chunk_bytes, compression)
    kwargs = {"crop_size": crop_size, "crops_per_field": crops_per_field, "mode": mode, "seed": seed, "qc": qc}
    opts = {"chunk_bytes": chunk_bytes, "compression": compression, "workers": workers, "skip_bad": skip_bad}
    config = {
        "source": str(screen.source),
        "fields": len(screen),
        "channels": list(screen.channels),
        **{k: v for k, v in kwargs.items() if k != "qc"},
        "qc": asdict(qc) if qc else None,
        **{k: v for k, v in opts.items() if k != "workers"},
        "part_fields": part_fields,
        "screen_spec": screen.spec.record() if getattr(screen, "spec", None) is not None else None,
    }
    if getattr(screen, "kept_wells", None) is not None:  # a curated subset: training checks it got these shards
        config["kept_wells"] = screen.kept_wells
    work = out_dir.parent / f".{out_dir.name}.partial"
    with output_lock(out_dir), _oserrors_name(out_dir):
        remove_stale_temporaries(out_dir)  # what a killed merge or replacement left beside out_dir
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
            done = _finished_report(out_dir, config)
            if done is not None:  # the same build completed before (e.g. killed while cleaning up)
                shutil.rmtree(work, ignore_errors=True)
                return _with_report_file(done, report_path)
            raise InputError(f"{out_dir}: already exists and is not empty; pass --overwrite (overwrite=True) "
                             "to replace it, or choose another --out")
        if not skip_bad:
            screen.check_files()  # fail before any work, naming the missing files
        report, part_dirs = _build_parts(screen, out_dir, work, kwargs, opts, config, resume, progress)
        with atomic_dir(out_dir) as tmp:
            _merge_parts(part_dirs, tmp)
            fault_point("merge")
            info = {
                "format": FORMAT,
                **config,
                "layout": screen.layout,
                "metadata_columns": [c for c in read_crops_table(tmp).columns if c.startswith("Metadata_")],
                # not out_dir: the folder may be moved, and a copy must stay byte-identical
                **{k: v for k, v in report.as_dict().items() if k != "out_dir"},
            }
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
            if report.skipped:
                pd.DataFrame(report.skipped).to_csv(tmp / SKIPPED_FILE, index=False)
            write_manifest(tmp, MANIFEST_KIND, settings=config, inputs={"screen": str(screen.source)})
            fault_point("commit")
        fault_point("committed")
        shutil.rmtree(work, ignore_errors=True)
    return _with_report_file(report, report_path)


@contextlib.contextmanager
def _oserrors_name(out_dir: Path):
    """Give a write failure that carries no file (LitData's and pyarrow's, e.g. a full disk) the output's name."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or isinstance(e, UnicodeError):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(out_dir)) from e


def _build_parts(screen, out_dir: Path, work: Path, kwargs, opts, config, resume: bool,
                 progress: bool) -> tuple[ShardReport, list[Path]]:
    """Write every missing part under ``work``; the summed counts and the parts holding crops."""
    if work.exists() and (not resume or _json_or_none(work / BUILD_FILE) != config):
        shutil.rmtree(work)  # other options: the finished parts are not reusable
    work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(work / BUILD_FILE, json.dumps(config))
    n, size = len(screen), config["part_fields"]
    parts = [range(s, min(s + size, n)) for s in range(0, n, size)]
    part_dirs = [work / f"part-{p:05d}" for p in range(len(parts))]
    with _Progress(progress, n, f"shards -> {out_dir.name}") as advance:
        for fields, part_dir in zip(parts, part_dirs, strict=True):
            if resume and _part_is_complete(part_dir):  # committed by an earlier run
                for _ in fields:
                    advance()
                continue
            _write_part(screen, fields, part_dir, kwargs, opts, advance)
    report, nonempty = ShardReport(out_dir=str(out_dir)), []
    for d in part_dirs:
        summ = json.loads((d / PART_FILE).read_text())
        if summ["crops_written"]:
            nonempty.append(d)
        for key in _COUNTS:
            setattr(report, key, getattr(report, key) + summ[key])
        report.skipped.extend(summ["skipped"])
    if report.crops_written == 0:
        shutil.rmtree(work)
        raise InputError(f"{screen.source}: no crops to write ({report.fields_skipped} field(s) skipped, QC "
                         "dropped the rest); check the skipped files or loosen --min-foreground/--min-focus")
    return report, nonempty


def _finished_report(out_dir: Path, config: dict) -> ShardReport | None:
    """The report of a complete shard set at ``out_dir`` built with ``config``, else None."""
    try:
        manifest = read_manifest(out_dir, MANIFEST_KIND, rerun="")
    except InputError:
        return None
    if manifest.get("settings") != json.loads(json.dumps(config)):
        return None
    info = json.loads((out_dir / INFO_FILE).read_text())
    skipped = pd.read_csv(out_dir / SKIPPED_FILE).to_dict("records") if (out_dir / SKIPPED_FILE).is_file() else []
    return ShardReport(out_dir=str(out_dir), **{k: info[k] for k in _COUNTS}, skipped=skipped)


def _with_report_file(report: ShardReport, report_path: str | Path | None) -> ShardReport:
    if report_path is not None:
        write_report(report, report_path)
    return report


def _merge_parts(part_dirs: list[Path], out: Path) -> None:
    """One LitData dataset (+ crops.parquet) in ``out`` from the non-empty parts, in order.

    The parts are only read (linked or copied, never moved): if the merge fails or is killed, they
    are still complete and the rerun merges them again.
    """
    if len(part_dirs) == 1:  # litdata.merge_datasets needs two or more inputs; one part is the dataset
        for f in part_dirs[0].iterdir():
            if f.name not in (PART_FILE, layout.MANIFEST_FILE):
                _link_or_copy(f, out / f.name)
        return
    from litdata import merge_datasets

    merge_datasets([str(d) for d in part_dirs], str(out), max_workers=4)
    tables = [read_crops_table(d) for d in part_dirs]
    _to_parquet(pd.concat(tables, ignore_index=True), out / CROPS_FILE)


# pyarrow encodes path strings (even a handle's name) as UTF-8 and fails on a folder name that is not
# (a surrogate-escaped byte); Python's open() takes any name the file system does, so the small crop
# table goes through bytes in memory (read back with shard_reader.read_crops_table).
def _to_parquet(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    path.write_bytes(buf.getvalue())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same filesystem: no copy, and the part keeps its own name for the file
    except OSError:
        shutil.copy2(src, dst)


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_report(report: ShardReport, path: str | Path) -> Path:
    """Write the build report: JSON (counts + skipped list) for ``.json``, else the skipped fields as CSV."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps({**report.as_dict(), "skipped": report.skipped}, indent=2))
        else:
            pd.DataFrame(report.skipped, columns=["field_index", "path", "error"]).to_csv(tmp, index=False)
    return path


class _Progress:
    """A rich progress bar (or nothing) as a context manager yielding an ``advance()`` callable."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label, self.bar = enabled, total, label, None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.markup import escape
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        # A folder name is text, not markup; a non-UTF-8 byte in it must not stop the build.
        label = escape(self.label.encode("utf-8", "backslashreplace").decode("utf-8"))
        task = self.bar.add_task(label, total=self.total)
        self.bar.start()
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
