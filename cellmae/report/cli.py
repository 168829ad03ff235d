"""`cellmae report RUN_DIR`: the self-contained HTML report of a run."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae.utils.cli_options import JSON, QUIET, Speaker


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., help="Run directory holding train/, embed/, map/, bench/ (and transfer/)."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Output HTML file (default: RUN_DIR/report.html)."),
        title: str | None = typer.Option(None, "--title", help="Page title (default: the run folder name)."),
        quiet: bool = QUIET,
        as_json: bool = JSON,
    ) -> None:
        """Build one self-contained HTML report (figures embedded, works offline) from a run directory.

        Reads only what the other stages wrote: training curves and reconstructions, well embeddings before/after alignment, recall per database and method, block probes, similarity of the best-recalled complexes, replicate consistency, channel transfer (RUN_DIR/transfer) and every number of summary.json. Missing stages are named in the page, not fatal.
        """
        from cellmae.report.build import build_report

        path = build_report(run_dir, out, title=title)
        size = path.stat().st_size
        Speaker(quiet=quiet, as_json=as_json).summary({"report": str(path), "bytes": size},
                                                      f"report written to {path} ({size / 1e6:.1f} MB)")
