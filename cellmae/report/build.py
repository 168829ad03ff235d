"""`build_report`: one self-contained HTML file from a run directory."""

from __future__ import annotations

from pathlib import Path

from cellmae import __version__
from cellmae.layout import RunDir
from cellmae.report.html import page_html
from cellmae.report.load import load_run
from cellmae.report.sections import all_sections
from cellmae.utils.atomic import write_text_atomic
from cellmae.utils.clock import now_utc


def report_html(run_dir: str | Path, *, title: str | None = None) -> str:
    """The report page for ``run_dir`` as an HTML string (figures embedded as data URIs)."""
    stamp = now_utc().strftime("%Y-%m-%d %H:%M UTC")
    run = load_run(run_dir)
    meta = f"run {Path(run_dir).resolve()} · generated {stamp} · cellmae {__version__}"
    return page_html(title or f"cellmae report · {Path(run_dir).resolve().name}", meta, all_sections(run),
                     version=__version__)


def build_report(run_dir: str | Path, out: str | Path | None = None, *, title: str | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``) atomically and return its path."""
    out = Path(out) if out is not None else RunDir(run_dir).report
    return write_text_atomic(out, report_html(run_dir, title=title))
