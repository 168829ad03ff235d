"""`cellmae models`: list the model presets and published models with parameter counts and input spec."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to ``app``."""

    @app.command("models")
    def models(
        family: str = typer.Option(None, "--family", help="Only this family: mae, cnn_mae or wsl."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    ) -> None:
        """List model presets (for `cellmae train`/`embed`) with parameter counts and the input they take.

        Counts are computed on torch's 'meta' device, so even ViT-G/8 is listed without allocating it.
        Channel-agnostic (CA-MAE) models take any subset of up to N named channels in any order;
        fixed-channel models need exactly the listed channels in that order. Images are uint8
        (B, C, H, W) crops of the listed size; models self-standardize them.
        """
        import json

        from rich.console import Console
        from rich.table import Table

        from cellmae.models.registry import PUBLISHED, list_models, model_summary, published_summary

        names = list_models(family)
        if not names:
            raise typer.BadParameter(f"no presets in family {family!r}", param_hint="--family")
        rows = [{**model_summary(n), "source": "preset"} for n in names]
        if family in (None, "mae"):  # published weights, loaded with --model SOURCE (or the file / folder)
            rows += [published_summary(n) for n in PUBLISHED]
        if as_json:
            for r in rows:
                typer.echo(json.dumps(r))
            return
        table = Table(title="cellmae model presets")
        for col in ("name", "source", "family", "params", "encoder", "input", "patch", "channels", "blocks", "dim"):
            right = col in ("params", "encoder", "patch", "blocks", "dim")
            table.add_column(col, justify="right" if right else "left", no_wrap=col != "source",
                             overflow="fold" if col == "source" else "ellipsis")
        for r in rows:
            table.add_row(
                r["name"], r["source"], r["family"], f"{r['params'] / 1e6:,.1f}M", f"{r['encoder_params'] / 1e6:,.1f}M",
                f"{r['img_size']}x{r['img_size']}", str(r["patch_size"] or "-"), _short_channels(r["channels"]),
                str(r["num_blocks"]), str(r["embed_dim"]),
            )
        import sys

        Console(width=None if sys.stdout.isatty() else 140).print(table)  # pipes default to 80 columns
        typer.echo("Input: uint8 (B, C, H, W) crops, self-standardized inside the model. --json gives full channel lists.")
        typer.echo("source 'preset': random init, for `cellmae train`; hf:... : published weights for `cellmae embed "
                   "--model` (also the downloaded folder or file).")


def _short_channels(spec: str) -> str:
    """'any (<= 11)' stays; a fixed list shows as '6 fixed'."""
    return spec if spec.startswith("any") else f"{len(spec.split(','))} fixed"
