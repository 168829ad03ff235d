"""Training shards through LitData: write crops + metadata once, stream them to any number of GPUs.

On disk a shard set is a LitData dataset (``index.json`` + ``chunk-*.bin``) plus cellmae sidecars:
``cellmae_shards.json`` (channels, crop size, counts, build options), ``crops.parquet`` (one row per
crop: metadata and position) and, when fields were skipped, ``skipped.csv``. The whole folder is
written under a temporary name and renamed when complete, so a shard set is never half-written.

Reading uses ``litdata.StreamingDataset``/``StreamingDataLoader``: samples are split across ranks
(torch.distributed) and dataloader workers, shuffled deterministically by seed and epoch, and the
loader's ``state_dict()``/``load_state_dict()`` resume mid-epoch.
"""

from __future__ import annotations

import json
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from cellmae.data.crops import FieldCrops, crop_record, field_crops
from cellmae.data.qc import QCConfig
from cellmae.data.readers.base import ReadError, Screen
from cellmae.data.schema import SchemaError
from cellmae.utils.atomic import atomic_dir, atomic_path

INFO_FILE = "cellmae_shards.json"
CROPS_FILE = "crops.parquet"
SKIPPED_FILE = "skipped.csv"
FORMAT = "cellmae-shards/1"


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
    try:
        return field_crops(screen, i, **kwargs)
    except (ReadError, SchemaError, OSError, ValueError) as e:
        return {"field_index": i, "path": ";".join(map(str, screen.path(i))), "error": str(e)}


def _iter_fields(screen: Screen, kwargs: dict, workers: int):
    """Field results in field order; ``workers`` > 0 decodes in processes, at most 2 x workers ahead."""
    if workers <= 0:
        for i in range(len(screen)):
            yield _field_job(screen, i, kwargs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        nxt = 0
        while nxt < len(screen) or pending:
            while nxt < len(screen) and len(pending) < 2 * workers:
                pending.append(pool.submit(_field_job, screen, nxt, kwargs))
                nxt += 1
            yield pending.popleft().result()


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
    """
    from litdata.streaming.writer import BinaryWriter

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir}: already exists and is not empty (pass overwrite=True / --overwrite)"
        )
    if not skip_bad:
        screen.check_files()  # fail before any work, naming the first missing file
    kwargs = {
        "crop_size": crop_size,
        "crops_per_field": crops_per_field,
        "mode": mode,
        "seed": seed,
        "qc": qc,
    }
    report = ShardReport(out_dir=str(out_dir))
    rows: list[dict] = []
    with atomic_dir(out_dir) as tmp:
        writer = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes, compression=compression)
        with _progress(progress, len(screen), f"shards -> {out_dir.name}") as advance:
            for res in _iter_fields(screen, kwargs, workers):
                advance()
                if isinstance(res, dict):
                    if not skip_bad:
                        raise ReadError(res["error"])
                    report.fields_skipped += 1
                    report.skipped.append(res)
                    continue
                report.fields += 1
                report.qc_candidates += res.n_candidates
                report.qc_empty += res.n_empty
                report.qc_out_of_focus += res.n_out_of_focus
                for k in range(len(res.positions)):
                    rec = crop_record(screen, res, k)
                    writer.add_item(report.crops_written, rec)
                    rows.append({key: v for key, v in rec.items() if key != "image"})
                    report.crops_written += 1
        if report.crops_written == 0:
            raise ValueError(
                f"{screen.source}: no crops to write ({report.fields_skipped} field(s) skipped, QC dropped the rest)"
            )
        writer.done()
        writer.merge(num_workers=1)
        pd.DataFrame(rows).to_parquet(tmp / CROPS_FILE, index=False)
        info = {
            "format": FORMAT,
            "channels": list(screen.channels),
            "crop_size": crop_size,
            "crops_per_field": crops_per_field,
            "mode": mode,
            "seed": seed,
            "qc": asdict(qc) if qc else None,
            "source": str(screen.source),
            "layout": screen.layout,
            "metadata_columns": [c for c in rows[0] if c.startswith("Metadata_")],
            **report.as_dict(),
        }
        info["out_dir"] = str(out_dir)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
        if report.skipped:
            pd.DataFrame(report.skipped).to_csv(tmp / SKIPPED_FILE, index=False)
    if report_path is not None:
        write_report(report, report_path)
    return report


def write_report(report: ShardReport, path: str | Path) -> Path:
    """Write the build report: JSON (counts + skipped list) for ``.json``, else the skipped fields as CSV."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps({**report.as_dict(), "skipped": report.skipped}, indent=2))
        else:
            pd.DataFrame(report.skipped, columns=["field_index", "path", "error"]).to_csv(tmp, index=False)
    return path


def read_shard_info(shard_dir: str | Path) -> dict:
    """The ``cellmae_shards.json`` of a shard set (channels, crop size, counts)."""
    p = Path(shard_dir) / INFO_FILE
    if not p.is_file():
        raise ReadError(
            f"{p}: not a cellmae shard set (missing {INFO_FILE}; build it with `cellmae shards build`)"
        )
    return json.loads(p.read_text())


class ShardCollate:
    """Default collation plus the shard set's channel names (a picklable class, for worker processes)."""

    def __init__(self, channels: list[str]) -> None:
        self.channels = list(channels)

    def __call__(self, samples: list[dict]) -> dict:
        from torch.utils.data import default_collate

        batch = default_collate(samples)
        batch["channels"] = list(self.channels)
        return batch


def shard_dataset(
    shard_dir: str | Path, *, shuffle: bool = True, seed: int = 0, drop_last: bool | None = None
):
    """The shard set as a ``litdata.StreamingDataset`` (samples are dicts; ``image`` a uint8 numpy array)."""
    from litdata import StreamingDataset

    read_shard_info(shard_dir)
    return StreamingDataset(str(Path(shard_dir).resolve()), shuffle=shuffle, seed=seed, drop_last=drop_last)


def shard_dataloader(
    shard_dir: str | Path,
    *,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool | None = None,
    **loader_kwargs,
):
    """A ``litdata.StreamingDataLoader`` over a shard set.

    Batches: ``{"image": uint8 tensor (B, C, H, W), "channels": list[str], <Metadata_ columns>,
    "field_index", "crop_y", "crop_x"}``. ``drop_last=None`` keeps LitData's default (True under
    torch.distributed so that every rank gets as many batches). Extra kwargs go to the loader.
    """
    from litdata import StreamingDataLoader

    info = read_shard_info(shard_dir)
    ds = shard_dataset(shard_dir, shuffle=shuffle, seed=seed, drop_last=drop_last)
    loader_kwargs.setdefault("collate_fn", ShardCollate(info["channels"]))
    return StreamingDataLoader(ds, batch_size=batch_size, num_workers=num_workers, **loader_kwargs)


class _progress:
    """A rich progress bar (or nothing) as a context manager yielding an ``advance()`` callable."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label, self.bar = enabled, total, label, None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
