"""``cellmae map``: align and aggregate well embeddings into a map of perturbations."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker


def register(app: typer.Typer) -> None:
    """Add ``cellmae map`` to ``app``."""

    @app.command("map")
    def map_command(
        embed_dir: Path = typer.Argument(
            ..., help="Well profiles: a `cellmae embed` block folder, or any table of wells: Parquet (file or "
            "folder), CSV/TSV or AnnData (.h5ad, zarr); the format is read from the content."
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder: aligned.parquet, aggregated.parquet, map.json."),
        align: str = typer.Option(
            "tvn-batch-centered", "--align",
            help="Batch alignment (default tvn-batch-centered): tvn-batch-centered (center-scale each batch, then TVN on "
            "controls) | tvn (EFAAR's tvn_on_controls exactly, no batch centering) | pca_center_scale | center_scale | none.",
        ),
        agg: str = typer.Option("mean", "--agg", help="mean | median over a perturbation's wells (x concentration for compounds)."),
        batch_col: str = typer.Option(
            "Metadata_Experiment", "--batch-col", help="Batch column for alignment, e.g. Metadata_Experiment or Metadata_Plate."
        ),
        pca_components: float = typer.Option(
            0, "--pca-components", help="pca_center_scale only: components to keep (int), a variance share in (0,1), or 0 for all."
        ),
        types: str = typer.Option(
            "", "--types", help="Comma-separated perturbation types to keep (e.g. CRISPR,COMPOUND); controls always kept. Default: all."
        ),
        drop: str = typer.Option("", "--drop", help="Comma-separated perturbation names to leave out of the map."),
        min_replicates: int = typer.Option(1, "--min-replicates", help="Drop perturbations with fewer wells than this."),
        features: str = typer.Option(
            "", "--features", help="Feature columns: a comma-separated list or a regular expression "
            "(e.g. 'Cells_.*|Nuclei_.*'). Default: feature_* columns, else CellProfiler Cells*/Cytoplasm*/Nuclei* "
            "columns (as pycytominer's infer_cp_features), else an AnnData's X."),
        output_type: str = typer.Option(
            "parquet", "--output-type", help="parquet (aligned.parquet, aggregated.parquet) | anndata_h5ad "
            "(aligned.h5ad, aggregated.h5ad: well ids as obs_names, provenance in uns)."),
        arm_correction: str = typer.Option(
            None, "--arm-correction", help="Proximity-bias correction: 'builtin' (NCBI Gene map locations shipped with "
            "cellmae, public domain) or a gene -> chromosome arm table (CSV/TSV with gene/symbol and chromosome_arm or "
            "location columns, e.g. HGNC's complete set); gene profiles are centred per arm after aggregation. "
            "Default: off."),
        progress: bool = PROGRESS,
        quiet: bool = QUIET,
        as_json: bool = JSON,
    ) -> None:
        """Filter, align (TVN / PCA + center-scale / center-scale per batch) and aggregate well embeddings.

        Writes aligned.parquet (one row per well), aggregated.parquet (one row per perturbation, or
        perturbation x concentration for compounds; controls excluded) and map.json (options, counts).
        """
        from rich.console import Console

        from cellmae.data.profiles import parse_features
        from cellmae.map.pipeline import MapOptions, build_map

        comps: int | float | None
        if pca_components == 0:
            comps = None
        elif 0 < pca_components < 1:
            comps = float(pca_components)
        elif pca_components >= 1 and float(pca_components).is_integer():
            comps = int(pca_components)
        else:
            raise typer.BadParameter(f"{pca_components}: give an integer >= 1, a share in (0, 1), or 0", param_hint="--pca-components")
        opts = MapOptions(
            align=align,
            agg=agg,
            batch_col=batch_col,
            pca_components=comps,
            keep_types=tuple(t.strip() for t in types.split(",") if t.strip()) or None,
            drop_perturbations=tuple(t.strip() for t in drop.split(",") if t.strip()) or None,
            min_replicates=min_replicates,
            arm_correction=arm_correction or None,
            features=parse_features(features),
            output_type=output_type,
        )
        try:
            opts.check()
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        speaker = Speaker(quiet=quiet, as_json=as_json)
        status = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, quiet=not (progress and speaker.chatty))
        with status.status(f"building map from {embed_dir} ({align}, {agg})"):
            summary = build_map(embed_dir, out, opts)
        speaker.summary(
            {"out": str(out), **summary},
            f"map written to {out}: {summary['wells']} wells ({summary['control_wells']} controls, "
            f"{summary['batches']} batches) -> {summary['profiles']} profiles x {summary['output_dim']} dims",
        )
