"""Where screens live: local paths and fsspec URLs (``s3://``, ``gs://``, ``https://``, ...).

A local path stays a :class:`pathlib.Path`; a URL becomes a ``universal_pathlib`` ``UPath``, which
gives the readers the same ``/``, ``exists()``, ``iterdir()`` and ``read_bytes()`` over any fsspec
file system, so one reader serves a folder on disk and a bucket alike. ``s3://`` is anonymous
unless credentials are given (public screens such as the Cell Painting Gallery need none).
Bytes of remote files can be kept in a local cache (fsspec's ``filecache``) with ``cache_dir``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

# Storage options whose values are credentials: used, never recorded (screen spec, manifests).
SECRET_OPTION_KEYS = frozenset({
    "key", "secret", "token", "password", "session_token", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "client_secret", "account_key", "sas_token", "connection_string", "credentials",
    "headers", "client_kwargs", "config_kwargs",
})
_S3_CREDENTIAL_KEYS = frozenset({"anon", "key", "secret", "token", "profile", "session_token",
                                 "aws_access_key_id", "aws_secret_access_key"})


class StorageError(ValueError):
    """A storage option or URL cannot be used; the message names it."""


def is_url(path: Any) -> bool:
    """Whether ``path`` names a file system other than the local one (``s3://...``, ``https://...``)."""
    if isinstance(path, PurePath):
        return False
    if not isinstance(path, str):
        return getattr(path, "protocol", "") not in ("", "file", "local")
    head, sep, _ = path.partition("://")
    return bool(sep) and head.lower() not in ("file", "local") and head.replace("+", "").isalnum()


def parse_storage_options(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["anon=false", "endpoint_url=http://..."]`` -> {"anon": False, "endpoint_url": "http://..."}.

    Values are read as JSON when they parse (true, 3, {"a": 1}), else kept as text.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise StorageError(f"--storage-option {item!r}: expected KEY=VALUE (e.g. endpoint_url=http://host:9000)")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def public_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The storage options safe to record: credential values are dropped (their names are not)."""
    return {k: v for k, v in (options or {}).items() if k.lower() not in SECRET_OPTION_KEYS}


def secret_option_names(options: Mapping[str, Any] | None) -> list[str]:
    """Names of the options :func:`public_options` leaves out (to say what a user must pass again)."""
    return sorted(k for k in (options or {}) if k.lower() in SECRET_OPTION_KEYS)


def _options_for(url: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = dict(options or {})
    protocol = url.partition("://")[0].lower()
    if protocol in ("s3", "s3a") and not (_S3_CREDENTIAL_KEYS & set(opts)):
        opts["anon"] = True  # public buckets need no credentials; pass anon=false to use yours
    return opts


def locate(path: Any, storage_options: Mapping[str, Any] | None = None):
    """A local :class:`Path` or, for a URL, a ``UPath`` carrying the storage options."""
    if isinstance(path, PurePath):
        return path
    if not isinstance(path, str):
        if hasattr(path, "protocol") or not isinstance(path, os.PathLike):
            return path  # already located (a UPath), or a reader's own handle (a Parquet member)
        path = os.fspath(path)
    text = path
    if not is_url(text):
        return Path(text.removeprefix("file://"))
    try:
        from upath import UPath

        located = UPath(text, **_options_for(text, storage_options))
        located.fs  # noqa: B018 - creates the file system now, so a missing fsspec package is named here
        return located
    except (ImportError, ValueError, TypeError) as e:  # an unknown protocol, or its fsspec package is missing
        raise StorageError(f"{text}: cannot open this URL ({type(e).__name__}: {e}); install the fsspec "
                           "package for its protocol (s3fs for s3://, gcsfs for gs://, aiohttp for https://)") from e


def child(base, *parts: str):
    """``base`` joined with ``parts``; a part that is itself a URL or absolute path replaces ``base``."""
    out = base
    for part in parts:
        if is_url(part):
            out = locate(part, getattr(out, "storage_options", None))
        elif Path(part).is_absolute() and not is_url(out):
            out = Path(part)
        else:
            out = out / part.lstrip("/") if is_url(out) else out / part
    return out


def with_options(path, storage_options: Mapping[str, Any] | None):
    """``path`` (local Path, URL text or UPath) located with ``storage_options``."""
    return locate(str(path) if is_url(path) else path, storage_options)


# Failures to reach a server, by class name (botocore / aiohttp / requests), so this module imports none of them.
_NETWORK_ERRORS = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "NoCredentialsError",
                             "ClientConnectorError", "ServerTimeoutError", "ClientOSError", "ConnectionError",
                             "ClientResponseError", "InvalidURL"})


def unreachable(path, exc: BaseException) -> str | None:
    """The message for a server that cannot be reached (None when ``exc`` is not such a failure)."""
    if not any(k.__name__ in _NETWORK_ERRORS for k in type(exc).__mro__):
        return None
    return (f"{path}: cannot reach the storage ({type(exc).__name__}: {exc}); check the URL, "
            "--storage-option endpoint_url=... and the network")


def denied(path) -> str:
    """The message for a remote file the server refuses to give."""
    return (f"{path}: access denied (s3:// is read anonymously unless credentials are given: pass --storage-option "
            "key=... --storage-option secret=..., or anon=false to use your AWS configuration)")


def read_bytes(path, cache_dir: str | os.PathLike | None = None) -> bytes:
    """The bytes of ``path``; remote files go through a local fsspec ``filecache`` when ``cache_dir`` is set.

    Raises FileNotFoundError (with the path) when it does not exist, as the local file system does.
    """
    if not is_url(path):
        return Path(path).read_bytes()
    if cache_dir is None:
        return filesystem_of(path).cat_file(path.path)
    # filecache downloads into the cache file in place: a second process (a DataLoader worker) fetching
    # the same URL at the same time truncates the file another is reading, which then fails to decode.
    # One lock per URL makes a download and its read one step for every process sharing the cache.
    import hashlib

    from filelock import FileLock

    locks = Path(cache_dir) / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".lock")):
        return filesystem_of(path, cache_dir).cat_file(path.path)


def filesystem_of(path, cache_dir: str | os.PathLike | None = None):
    """The fsspec file system of a located URL, for this process, optionally behind a local ``filecache``.

    Not ``path.fs``: that instance may come from the parent of a forked DataLoader worker, and an
    async file system (s3fs) refuses to run in a child ("not fork-safe"); ``fsspec.filesystem``
    makes one per process.
    """
    import fsspec

    fs = fsspec.filesystem(path.protocol, **path.storage_options)
    if cache_dir is None:
        return fs
    # filecache keeps whole files under cache_dir, keyed by URL: the second read is local.
    return fsspec.filesystem("filecache", fs=fs, cache_storage=os.fspath(cache_dir), same_names=False)


def compression_of(data: bytes) -> str | None:
    """pandas' ``compression`` for ``data``: gzip is recognised by its magic bytes, not the file name."""
    return "gzip" if data[:2] == b"\x1f\x8b" else None
