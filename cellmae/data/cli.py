"""``cellmae shards``: build LitData training shards from a screen, and inspect screens or shard sets."""

from __future__ import annotations

import functools
import inspect as pyinspect  # `inspect` is a command below
import os
from dataclasses import dataclass
from pathlib import Path

import typer

from cellmae.layout import SHARDS_SKIPPED_FILE
from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker

shards_app = typer.Typer(
    name="shards",
    help="Turn a screen (RxRx, Cell Painting/JUMP load_data, TIFF/OME-TIFF/OME-Zarr folder) into training shards.",
    no_args_is_help=True,
)


def parse_channels(spec: str | None) -> dict[str, str] | list[str] | None:
    """``"D=DNA,F=FITC"`` -> {token: name}; ``"DNA,ER"`` -> [names]; None stays None."""
    if not spec:
        return None
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if all("=" in s for s in items):
        return dict(tuple(x.strip() for x in s.split("=", 1)) for s in items)
    if any("=" in s for s in items):
        raise typer.BadParameter(f"mix of 'token=name' and plain names in {spec!r}", param_hint="--channels")
    return items


def screen_spec(layout: str, channels: str | None, reader: ReaderOptions, base=None):
    """The ScreenSpec of the shared reader options (``shards build``/``inspect``, ``embed``): ``base``
    (a recorded spec) with every option given on the command line applied over it."""
    from cellmae.data.readers.storage import parse_storage_options
    from cellmae.data.spec import ScreenSpec

    return (base or ScreenSpec()).updated(
        layout=None if layout == "auto" else layout, channels=parse_channels(channels), pattern=reader.pattern,
        experiment=reader.experiment, plate=reader.plate, metadata_csv=reader.metadata_csv,
        perturbation_csv=reader.perturbation_csv or None, illum=reader.illum, low_pct=reader.low_pct,
        high_pct=reader.high_pct, rescale_uint8=reader.rescale_uint8,
        storage_options=parse_storage_options(reader.storage_option) or None,
    )


# The reader options, shared by `shards build`, `shards inspect` and `embed` (one set, one meaning).
LAYOUT_OPT = typer.Option("auto", "--layout", help="auto | rxrx | rxrx3-core | cellpainting | generic.")
PATTERN_OPT = typer.Option(None, help="Generic one-file-per-channel pattern, e.g. '{field}_{channel}.TIF'.")
CHANNELS_OPT = typer.Option(
    None, help="Channel names 'DNA,ER,...' or, with --pattern, token map 'D=DNA,F=FITC,R=Rhodamine'."
)
EXPERIMENT_OPT = typer.Option(None, help="Generic layout: Metadata_Experiment (default: folder name).")
PLATE_OPT = typer.Option(None, help="Generic layout: Metadata_Plate (default: 1).")
METADATA_CSV_OPT = typer.Option(
    None, "--metadata-csv",
    help="Generic: CSV with Metadata_Field + schema columns; RxRx / RxRx3-core: the metadata CSV (path or URL).",
)
PERT_CSV_OPT = typer.Option(
    None, "--perturbation-csv",
    help="Cell Painting: platemap or JUMP table (well.csv.gz, plate.csv.gz, crispr/orf/compound.csv.gz, "
    "perturbation_control.csv), path or URL; repeat for several.",
)
ILLUM_OPT = typer.Option(
    None, "--illum/--no-illum",
    help="Cell Painting: divide by the FileName_Illum*/PathName_Illum* functions (default: when the CSV has them).",
)
LOW_OPT = typer.Option(
    None, "--low-pct", help="Lower percentile mapped to 0 when scaling 16-bit/float images to 8 bit (default 0.1)."
)
HIGH_OPT = typer.Option(None, "--high-pct", help="Upper percentile mapped to 255 when scaling to 8 bit (default 99.9).")
RESCALE8_OPT = typer.Option(
    None, "--rescale-uint8/--no-rescale-uint8", help="Also percentile-scale images that are already 8-bit."
)
STORAGE_OPT = typer.Option(
    None, "--storage-option",
    help="fsspec option KEY=VALUE for s3:// gs:// https:// (repeatable): endpoint_url=..., anon=false, key=..., "
    "secret=...; s3 is anonymous by default. Credentials are never recorded.",
)
CACHE_DIR_OPT = typer.Option(None, "--cache-dir", help="Keep a local copy of remote image files here (fsspec filecache).")


@dataclass(frozen=True)
class ReaderOptions:
    """The values of the shared reader options, as one object handed to the command."""

    pattern: str | None = None
    experiment: str | None = None
    plate: str | None = None
    metadata_csv: str | None = None
    perturbation_csv: list[str] | None = None
    illum: bool | None = None
    low_pct: float | None = None
    high_pct: float | None = None
    rescale_uint8: bool | None = None
    storage_option: list[str] | None = None
    cache_dir: Path | None = None


_READER_OPTIONS = {  # name -> (type, option): declared once for every command that reads a screen
    "pattern": (str | None, PATTERN_OPT), "experiment": (str | None, EXPERIMENT_OPT), "plate": (str | None, PLATE_OPT),
    "metadata_csv": (str | None, METADATA_CSV_OPT), "perturbation_csv": (list[str] | None, PERT_CSV_OPT),
    "illum": (bool | None, ILLUM_OPT), "low_pct": (float | None, LOW_OPT), "high_pct": (float | None, HIGH_OPT),
    "rescale_uint8": (bool | None, RESCALE8_OPT), "storage_option": (list[str] | None, STORAGE_OPT),
    "cache_dir": (Path | None, CACHE_DIR_OPT),
}


def with_reader_options(command):
    """Give a typer command the shared reader options; it receives them as ``reader: ReaderOptions``.

    Typer builds a command's options from its signature and has no option groups, so without this
    every command that reads a screen would list the same eleven parameters again.
    """
    own = pyinspect.signature(command, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "reader"]
    params += [pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=opt, annotation=tp)
               for name, (tp, opt) in _READER_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        reader = ReaderOptions(**{name: kwargs.pop(name) for name in _READER_OPTIONS})
        return command(reader=reader, **kwargs)

    wrapper.__signature__ = own.replace(parameters=params)
    return wrapper


@shards_app.command("build")
@with_reader_options
def build(
    screen_path: str = typer.Argument(
        ..., help="Screen folder or CSV (RxRx metadata.csv / load_data.csv / RxRx3-core shards); a path or URL."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output shard folder (written atomically)."),
    layout: str = LAYOUT_OPT,
    crop_size: int = typer.Option(256, help="Crop side in pixels."),
    crops_per_field: int = typer.Option(
        8, help="Random crops per field (grid mode: max tiles per field, 0 = all)."
    ),
    mode: str = typer.Option("random", help="random (training crops) | grid (non-overlapping tiles)."),
    seed: int = typer.Option(0, help="Seed of the random crops (per field: (seed, field index))."),
    qc: bool = typer.Option(
        False, "--qc/--no-qc", help="Drop empty and out-of-focus crops (counts in the report)."
    ),
    qc_channel: str = typer.Option("DNA", help="Channel QC measures (falls back to the first channel)."),
    min_foreground: float = typer.Option(
        0.02, help="QC: minimum share of pixels above the field's Otsu threshold."
    ),
    min_focus: float = typer.Option(
        0.008, help="QC: minimum var(Laplacian)/var(crop); 0 disables the focus check."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip unreadable fields and list them in skipped.csv / --report."
    ),
    report: Path | None = typer.Option(
        None, help="Also write the build report here (.json: counts + skipped; else skipped CSV)."
    ),
    workers: int = typer.Option(0, help="Processes decoding fields in parallel (0 = in this process)."),
    chunk_bytes: str = typer.Option("64MB", help="LitData chunk size."),
    compression: str | None = typer.Option(
        None, help="LitData chunk compression, e.g. zstd (default: none)."
    ),
    keep_wells: Path | None = typer.Option(
        None, "--keep-wells", help="CSV of (experiment, plate, well) keys, e.g. `cellmae curate`'s kept_wells.csv: "
        "shard only these wells (train with the same file as data.keep_wells)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing shard folder."),
    part_fields: int = typer.Option(1024, help="Fields per resumable part (a rerun keeps finished parts)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Reuse finished parts of an interrupted build."),
    channels: str | None = CHANNELS_OPT,
    progress: bool = PROGRESS,
    quiet: bool = QUIET,
    as_json: bool = JSON,
    reader: ReaderOptions = None,
) -> None:
    """Cut crops from every field of a screen and write them, with metadata, as LitData shards.

    The reader options (layout, channels, percentiles, platemaps, illumination, storage options) are
    recorded in the shard set as its screen spec; `cellmae embed` reuses them.
    """
    from cellmae.data.qc import QCConfig
    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards

    spec = screen_spec(layout, channels, reader)
    # Failures (ReadError, SchemaError, OSError ...) leave through the CLI's one error path.
    screen = open_screen(screen_path, spec=spec, cache_dir=reader.cache_dir)
    if keep_wells is not None:
        from cellmae.data.readers.subset import read_well_list

        screen = screen.subset(read_well_list(keep_wells))
    qc_cfg = QCConfig(channel=qc_channel, min_foreground=min_foreground, min_focus=min_focus) if qc else None
    rep = build_shards(
        screen, out, crop_size=crop_size, crops_per_field=crops_per_field or None, mode=mode, seed=seed, qc=qc_cfg,
        skip_bad=skip_bad, report_path=report, workers=workers, chunk_bytes=chunk_bytes, compression=compression,
        overwrite=overwrite, part_fields=part_fields, resume=resume, progress=progress and not (quiet or as_json),
    )  # fmt: skip
    record = rep.as_dict()
    speaker = Speaker(quiet=quiet, as_json=as_json)
    if rep.fields_skipped:
        where = os.fsencode(out / SHARDS_SKIPPED_FILE).decode("utf-8", "backslashreplace")  # any byte in a name prints
        speaker.say(f"{rep.fields_skipped} field(s) skipped, listed in {where}")
    speaker.summary(record, *_summary_lines(record))


@shards_app.command("inspect")
@with_reader_options
def inspect(
    path: str = typer.Argument(..., help="A shard folder, or a screen folder / CSV (a path or URL)."),
    layout: str = LAYOUT_OPT,
    channels: str | None = CHANNELS_OPT,
    check_files: bool = typer.Option(
        False, "--check-files", help="Screens: also list metadata rows whose image files are missing."
    ),
    as_json: bool = JSON,
    reader: ReaderOptions = None,
) -> None:
    """Print the summary of a shard set (channels, crops, QC) or of a screen (fields, wells, channels)."""
    from cellmae.data.readers.storage import is_url
    from cellmae.data.shard_reader import INFO_FILE, read_shard_info

    speaker = Speaker(as_json=as_json)
    if not is_url(path) and (Path(path) / INFO_FILE).is_file():  # a shard set: refused when its manifest is stale
        info = read_shard_info(path)
        speaker.summary(info, *_summary_lines(info))
        return
    from cellmae.data.readers import open_screen

    spec = screen_spec(layout, channels, reader)
    screen = open_screen(path, spec=spec, cache_dir=reader.cache_dir)
    summary = screen.summary()
    lines = _summary_lines(summary)
    if check_files:
        missing = screen.missing_files()  # every one: a user fixes them from this list
        summary["missing_files"] = [{"row": i + 1, "file": str(p)} for i, p in missing]
        lines += [f"{len(missing)} missing file(s)", *(f"  row {i + 1}: {p}" for i, p in missing)]
    speaker.summary(summary, *lines)


def _summary_lines(record: dict) -> list[str]:
    """``key: value`` lines of a summary (nested values as compact JSON), for a reader, not a parser."""
    import json

    def shown(v) -> str:
        text = v if isinstance(v, str) else str(v) if isinstance(v, int | float | bool) or v is None \
            else json.dumps(v, default=str)
        # a path that is not valid UTF-8 (surrogate-escaped bytes) prints with its bytes escaped
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    return [f"{k}: {shown(v)}" for k, v in record.items()]


def register(app: typer.Typer) -> None:
    """Add ``cellmae shards build|inspect`` to ``app``."""
    app.add_typer(shards_app, name="shards")
