"""``cellmae shards``: build LitData training shards from a screen, and inspect screens or shard sets."""

from __future__ import annotations

import os
from pathlib import Path

import typer

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


def _screen_options(
    pattern,
    channels,
    experiment,
    plate,
    metadata_csv,
    perturbation_csv,
    low_pct,
    high_pct,
    rescale_uint8,
    layout,
):
    opts: dict = {"low_pct": low_pct, "high_pct": high_pct, "rescale_uint8": rescale_uint8}
    chans = parse_channels(channels)
    if chans is not None:
        opts["channels"] = chans
    for key, val, layouts in (
        ("pattern", pattern, ("generic",)),
        ("experiment", experiment, ("generic",)),
        ("plate", plate, ("generic",)),
        ("metadata_csv", metadata_csv, ("generic", "rxrx")),
        ("perturbation_csv", perturbation_csv, ("cellpainting",)),
    ):
        if val is not None:
            if layout not in (*layouts, "auto"):
                raise typer.BadParameter(
                    f"only for layout(s) {layouts}, not {layout!r}", param_hint=f"--{key.replace('_', '-')}"
                )
            opts[key] = val
    return opts


_LAYOUT = typer.Option("auto", "--layout", help="auto | rxrx | cellpainting | generic.")
_PATTERN = typer.Option(None, help="Generic one-file-per-channel pattern, e.g. '{field}_{channel}.TIF'.")
_CHANNELS = typer.Option(
    None, help="Channel names 'DNA,ER,...' or, with --pattern, token map 'D=DNA,F=FITC,R=Rhodamine'."
)
_EXPERIMENT = typer.Option(None, help="Generic layout: Metadata_Experiment (default: folder name).")
_PLATE = typer.Option(None, help="Generic layout: Metadata_Plate (default: 1).")
_METADATA_CSV = typer.Option(
    None, "--metadata-csv", help="Generic: CSV with Metadata_Field + schema columns; RxRx: the metadata CSV."
)
_PERT_CSV = typer.Option(
    None, "--perturbation-csv", help="Cell Painting: platemap CSV joined on Metadata_Plate/Metadata_Well."
)
_LOW = typer.Option(
    0.1, "--low-pct", help="Lower percentile mapped to 0 when scaling 16-bit/float images to 8 bit."
)
_HIGH = typer.Option(99.9, "--high-pct", help="Upper percentile mapped to 255 when scaling to 8 bit.")
_RESCALE8 = typer.Option(
    False, "--rescale-uint8", help="Also percentile-scale images that are already 8-bit."
)


@shards_app.command("build")
def build(
    screen_path: Path = typer.Argument(..., help="Screen folder or CSV (RxRx metadata.csv / load_data.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output shard folder (written atomically)."),
    layout: str = _LAYOUT,
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing shard folder."),
    part_fields: int = typer.Option(1024, help="Fields per resumable part (a rerun keeps finished parts)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Reuse finished parts of an interrupted build."),
    pattern: str | None = _PATTERN,
    channels: str | None = _CHANNELS,
    experiment: str | None = _EXPERIMENT,
    plate: str | None = _PLATE,
    metadata_csv: Path | None = _METADATA_CSV,
    perturbation_csv: Path | None = _PERT_CSV,
    low_pct: float = _LOW,
    high_pct: float = _HIGH,
    rescale_uint8: bool = _RESCALE8,
) -> None:
    """Cut crops from every field of a screen and write them, with metadata, as LitData shards."""
    import json

    from cellmae.data.qc import QCConfig
    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards

    opts = _screen_options(
        pattern,
        channels,
        experiment,
        plate,
        metadata_csv,
        perturbation_csv,
        low_pct,
        high_pct,
        rescale_uint8,
        layout,
    )
    # Failures (ReadError, SchemaError, OSError ...) leave through the CLI's one error path.
    screen = open_screen(screen_path, layout=layout, **opts)
    qc_cfg = QCConfig(channel=qc_channel, min_foreground=min_foreground, min_focus=min_focus) if qc else None
    rep = build_shards(
        screen, out, crop_size=crop_size, crops_per_field=crops_per_field or None, mode=mode, seed=seed, qc=qc_cfg,
        skip_bad=skip_bad, report_path=report, workers=workers, chunk_bytes=chunk_bytes, compression=compression,
        overwrite=overwrite, part_fields=part_fields, resume=resume,
    )  # fmt: skip
    typer.echo(json.dumps(rep.as_dict(), indent=2, default=str))
    if rep.fields_skipped:
        where = os.fsencode(out / "skipped.csv").decode("utf-8", "backslashreplace")  # any byte in a name prints
        typer.echo(f"{rep.fields_skipped} field(s) skipped, listed in {where}", err=True)


@shards_app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="A shard folder, or a screen folder / CSV."),
    layout: str = _LAYOUT,
    pattern: str | None = _PATTERN,
    channels: str | None = _CHANNELS,
    experiment: str | None = _EXPERIMENT,
    plate: str | None = _PLATE,
    metadata_csv: Path | None = _METADATA_CSV,
    perturbation_csv: Path | None = _PERT_CSV,
    check_files: bool = typer.Option(
        False, "--check-files", help="Screens: also list metadata rows whose image files are missing."
    ),
) -> None:
    """Print the summary of a shard set (channels, crops, QC) or of a screen (fields, wells, channels)."""
    import json

    from cellmae.data.shard_reader import INFO_FILE, read_shard_info

    if (path / INFO_FILE).is_file():  # a shard set: refused when its manifest is missing or stale
        typer.echo(json.dumps(read_shard_info(path), indent=2))
        return
    from cellmae.data.readers import open_screen

    opts = _screen_options(pattern, channels, experiment, plate, metadata_csv, perturbation_csv, 0.1, 99.9, False, layout)
    screen = open_screen(path, layout=layout, **opts)
    typer.echo(json.dumps(screen.summary(), indent=2, default=str))
    if check_files:
        missing = screen.missing_files()  # every one: a user fixes them from this list
        typer.echo(f"{len(missing)} missing file(s)" + "".join(f"\n  row {i + 1}: {p}" for i, p in missing))


def register(app: typer.Typer) -> None:
    """Add ``cellmae shards build|inspect`` to ``app``."""
    app.add_typer(shards_app, name="shards")
