"""``cellmae embed``: featurize a whole screen with a model (or the handcrafted baseline)."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae.data.cli import ReaderOptions, with_reader_options
from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker

_MODEL_HELP = (
    "What to embed with: a cellmae checkpoint dir (model.safetensors + config.json), an OpenPhenom "
    "file or folder (FILE, DIR, openphenom:FILE), hf:ORG/NAME[@REVISION] (Hugging Face hub cache, e.g. "
    "hf:recursionpharma/OpenPhenom), timm:NAME or timm:NAME@LOCAL_WEIGHTS_FILE (natural-image baseline, never "
    "downloads), "
    "random-init:PRESET or random-init:CHECKPOINT_DIR (untrained baseline), or 'handcrafted'."
)


@with_reader_options
def embed(
    screen: str = typer.Argument(
        ..., help="Screen folder or CSV (RxRx, RxRx3-core, Cell Painting/JUMP, generic; see --layout); a path or URL."
    ),
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder, by convention RUN/embed/<model-name>."),
    blocks: str = typer.Option(
        "last", "--blocks", "--block",
        help="Blocks to embed in one pass: 'last', 'all', 'auto' (best_block.json of `cellmae bench`) or a list like 6,8,12. "
        "Each block is written as its own feature set OUT/blockNN.",
    ),
    tile: str = typer.Option("auto", help="Tile size: each field is cut into a grid of tiles; 'auto' = the model's input size, 'full' = whole fields."),
    pool: str = typer.Option("mean", help="Token pooling: mean, cls or channel_concat (CA-MAE: one vector per channel, concatenated)."),
    image_stats: bool = typer.Option(False, "--image-stats", help="Append each channel's tile mean and standard deviation "
                                     "(what self-standardization removes) to every block's embedding."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images (tiles) per forward pass."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", help="auto (bf16 where supported), bf16, fp16 (CUDA) or fp32."),
    layout: str = typer.Option("auto", help="Screen layout: auto, rxrx, rxrx3-core, cellpainting or generic."),
    channels: str = typer.Option(None, help="Comma-separated screen channels to use, in order (default: all, mapped by "
                                 "name); a token map 'D=DNA,F=FITC' names the files of a --pattern instead."),
    site_level: bool = typer.Option(False, "--site-level", help="Also write one row per site under OUT/sites/blockNN."),
    anndata: bool = typer.Option(False, "--anndata", help="Also export OUT/anndata/blockNN.h5ad once all plates are done."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete OUT first instead of resuming."),
    num_workers: int = typer.Option(None, "--num-workers", help="DataLoader workers reading and tiling fields (default: cores - 1, at most 4; handcrafted: cores, at most 4)."),
    processes: int = typer.Option(1, "--processes", help="Local processes (one per GPU, or CPU shares); for clusters launch with torchrun/srun instead."),
    best_block: Path = typer.Option(None, "--best-block", help="best_block.json for --blocks auto (default RUN/bench/<model>/best_block.json)."),
    seed: int = typer.Option(0, help="Seed of random-init baselines."),
    screen_spec: str = typer.Option(
        None, "--screen-spec",
        help="Reader options recorded by a shard build, an embed run or a training run: a spec JSON, a shard folder, "
        "an embed folder or a model/training folder (default: the --model's training run, when it records one).",
    ),
    progress: bool = PROGRESS,
    quiet: bool = QUIET,
    as_json: bool = JSON,
    reader: ReaderOptions = None,
) -> None:
    """Featurize every well of SCREEN: tiles -> model block(s) -> pooled -> averaged per site and well.

    Writes OUT/blockNN/plate=<id>/part-0.parquet (Metadata_ columns + float32 feature_ columns, one
    row per well). Reruns skip finished plates, so a killed run is resumed by running it again. Under
    torchrun or SLURM each rank takes its share of the plates and writes their parts.

    Example: cellmae embed RUN/screen --model RUN/train/camae --out RUN/embed/camae --blocks 4,8,12
    """
    from cellmae.data.cli import parse_channels
    from cellmae.data.readers.storage import parse_storage_options
    from cellmae.embed.distributed import launch_local, rank_info
    from cellmae.embed.pipeline import run_embedding

    if tile not in ("auto", "full") and not tile.isdigit():
        raise typer.BadParameter(f"--tile {tile!r}: expected a number of pixels, 'auto' or 'full'")
    token_map = channels is not None and "=" in channels  # names the reader's files; a plain list picks channels
    # The reader options given here apply over the screen spec (--screen-spec, or the training run's).
    overrides = dict(channels=parse_channels(channels) if token_map else None, pattern=reader.pattern,
                     experiment=reader.experiment, plate=reader.plate, metadata_csv=reader.metadata_csv,
                     perturbation_csv=reader.perturbation_csv or None, illum=reader.illum, low_pct=reader.low_pct,
                     high_pct=reader.high_pct, rescale_uint8=reader.rescale_uint8,
                     storage_options=parse_storage_options(reader.storage_option))
    options = dict(
        blocks=blocks, tile=tile if tile in ("auto", "full") else int(tile), pool=pool, image_stats=image_stats, batch_size=batch_size, device=device, precision=precision,
        layout=layout, channels=None if token_map else channels, site_level=site_level, anndata=anndata, overwrite=overwrite,
        num_workers=num_workers, best_block_file=best_block, seed=seed, screen_spec=screen_spec,
        reader_options=overrides, cache_dir=reader.cache_dir,
    )
    speaker = Speaker(quiet=quiet, as_json=as_json)
    if processes > 1:
        if overwrite:  # clear once here: ranks must not delete each other's fresh parts
            import shutil

            from cellmae.embed.writer import embedding_lock

            with embedding_lock(out, 0):  # not while another run writes there
                shutil.rmtree(out, ignore_errors=True)
            options["overwrite"] = False
        launch_local(_embed_rank, {"screen": str(screen), "model": model, "out": str(out), "options": options}, processes)
        from cellmae.utils.manifest import MANIFEST_FILE

        speaker.summary({"processes": processes, "out_dir": str(out), "manifest": str(out / MANIFEST_FILE)},
                        f"done: {processes} processes -> {out} (manifest: {out / MANIFEST_FILE})")
        return
    summary = run_embedding(str(screen), model, out, progress=rank_info().rank == 0 and progress and speaker.chatty,
                            **options)
    if summary.extra.get("screen_spec"):
        speaker.say(str(summary.extra["screen_spec"]))
    lines = [summary.line()]
    if summary.manifest is None:
        lines.append("other ranks are still writing their plates; the manifest appears when all are done")
    speaker.summary(summary_dict(summary), *lines)


def summary_dict(summary) -> dict:
    """An EmbedSummary as JSON-ready data (`--json`)."""
    return {"out_dir": str(summary.out_dir), "blocks": {str(b): str(p) for b, p in summary.paths.items()},
            "plates_done": summary.plates_done, "plates_skipped": summary.plates_skipped, "wells": summary.wells,
            "sites": summary.sites, "images": summary.images, "seconds": round(summary.seconds, 3),
            "manifest": str(summary.manifest) if summary.manifest else None, **summary.extra}


def _embed_rank(screen: str, model: str, out: str, options: dict, *, rank: int, world_size: int, progress: bool) -> None:
    from cellmae.embed.pipeline import run_embedding

    summary = run_embedding(screen, model, out, rank=rank, world_size=world_size, progress=progress, **options)
    if rank == 0:
        print(summary.line())


def register(app: typer.Typer) -> None:
    """Add ``cellmae embed``."""
    app.command("embed")(embed)
