"""The time outputs quote: now, or ``SOURCE_DATE_EPOCH`` where that is set.

``SOURCE_DATE_EPOCH`` is the reproducible-builds.org convention (whole seconds since 1970, UTC):
with it set, the same inputs give byte-identical outputs, which can be diffed and checksummed.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from cellmae.utils.errors import EXIT_USER_ERROR, InputError

SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"


def now_utc() -> dt.datetime:
    """The current time in UTC, or the time ``SOURCE_DATE_EPOCH`` names."""
    raw = os.environ.get(SOURCE_DATE_EPOCH)
    if raw is None:
        return dt.datetime.now(dt.UTC)
    try:
        return dt.datetime.fromtimestamp(int(raw), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise InputError(f"{SOURCE_DATE_EPOCH}={raw!r}: set it to whole seconds since 1970-01-01 UTC, "
                         "or unset it") from None


def exit_on_bad_source_date_epoch() -> None:
    """Refuse a bad ``SOURCE_DATE_EPOCH`` in one line, for the CLI before it imports scipy.

    numpy.f2py, which scipy imports, calls ``int()`` on the variable at import time: a bad value
    would otherwise end in numpy's traceback before any command could name it.
    """
    try:
        now_utc()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
