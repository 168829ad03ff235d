"""One error path: expected failures become one line that names the file, row or option.

Stages raise ``ValueError`` subclasses (``ReadError``, ``SchemaError``, ``ConfigError``,
``InputError`` ...) whose message already names the file and says what to do. Library
exceptions that carry no path (``OSError`` from a full disk, ``SafetensorError``, pyarrow's
``ArrowInvalid``, torch's unpickling refusal) are either wrapped where the file is known
(:func:`reading`) or turned into a line here (:func:`one_line`). The CLI prints that line,
literally (no markup, no wrapping) and exits with :data:`EXIT_USER_ERROR`; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

EXIT_USER_ERROR = 2


class InputError(ValueError):
    """Bad or incomplete input: the message names the file, row or option and what to do."""


class OutputBusyError(RuntimeError):
    """Another cellmae process is writing the same output folder."""


_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write to another --out",
    errno.EDQUOT: "the disk quota is exceeded: free space or write to another --out",
    errno.EACCES: "permission denied: check the file's permissions or choose another path",
    errno.EPERM: "operation not permitted: check the file's permissions or choose another path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EROFS: "read-only file system: write to another --out",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is not a folder",
}

# Library messages that name a way around a safety check rather than the problem.
_TORCH_PICKLE_HINT = "weights_only"


def _oserror_line(exc: OSError) -> str:
    where = " -> ".join(os.fsdecode(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = _ERRNO_HINTS.get(exc.errno or -1) or (exc.strerror or str(exc))
    return f"{where}: {what}" if where else f"{what} ({exc.__class__.__name__})"


def is_expected(exc: BaseException) -> bool:
    """Failures a user can fix (bad input, full disk, busy folder); anything else is a bug."""
    if isinstance(exc, ValueError | OSError | OutputBusyError | UnicodeError):
        return True
    name = type(exc).__name__
    # Readers' own exception types, matched by name so this module imports no heavy library.
    return name in {"SafetensorError", "ArrowInvalid", "ArrowIOError", "UnpicklingError", "ParserError",
                    "EmptyDataError", "YAMLError", "ScannerError", "BadZipFile",
                    "ReadError", "TiffFileError", "UnidentifiedImageError", "DecompressionBombError"}


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line (paths kept whole) for the CLI."""
    if isinstance(exc, OSError) and not isinstance(exc, UnicodeError) and (exc.errno or exc.filename):
        text = _oserror_line(exc)
    else:
        text = str(exc) or type(exc).__name__
        if type(exc).__name__ == "UnpicklingError" or _TORCH_PICKLE_HINT in text:
            text = ("the file holds pickled Python objects that cellmae refuses to load (it never unpickles "
                    "code); use a safetensors checkpoint or a plain state_dict of tensors")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "file", hint: str = "") -> Iterator[None]:
    """Re-raise a library's failure to read ``path`` as an :class:`InputError` naming it.

    For exceptions that do not carry the file (safetensors, pyarrow, PIL, tifffile, torch).
    ``OSError`` with its own filename passes through unchanged: it already names the file.
    """
    try:
        yield
    except Exception as exc:
        named = os.fspath(path) in str(exc) or (isinstance(exc, OSError) and exc.filename is not None)
        if named or not is_expected(exc) or (isinstance(exc, OSError) and exc.errno in _ERRNO_HINTS):
            raise
        tail = f"; {hint}" if hint else ""
        raise InputError(f"{os.fspath(path)}: cannot read this {what} ({one_line(exc)}){tail}") from exc
