"""`build_report`: one self-contained HTML file from a run directory."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cellmae import __version__
from cellmae.layout import RunDir
from cellmae.report.html import page_html
from cellmae.report.load import load_run
from cellmae.report.sections import all_sections
from cellmae.utils.atomic import write_text_atomic
from cellmae.utils.errors import InputError


def generated_at() -> dt.datetime:
    """When the page says it was generated: now, or ``SOURCE_DATE_EPOCH`` where that is set.

    ``SOURCE_DATE_EPOCH`` is the reproducible-builds.org convention (seconds since 1970, UTC):
    with it, the same run gives a byte-identical report, so reports can be diffed and checksummed.
    """
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None:
        return dt.datetime.now(dt.UTC)
    try:
        return dt.datetime.fromtimestamp(int(raw), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise InputError(f"SOURCE_DATE_EPOCH={raw!r}: set it to whole seconds since 1970-01-01 UTC, "
                         "or unset it") from None


def report_html(run_dir: str | Path, *, title: str | None = None) -> str:
    """The report page for ``run_dir`` as an HTML string (figures embedded as data URIs)."""
    stamp = generated_at().strftime("%Y-%m-%d %H:%M UTC")
    run = load_run(run_dir)
    meta = f"run {Path(run_dir).resolve()} · generated {stamp} · cellmae {__version__}"
    return page_html(title or f"cellmae report · {Path(run_dir).resolve().name}", meta, all_sections(run),
                     version=__version__)


def build_report(run_dir: str | Path, out: str | Path | None = None, *, title: str | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``) atomically and return its path."""
    out = Path(out) if out is not None else RunDir(run_dir).report
    return write_text_atomic(out, report_html(run_dir, title=title))
