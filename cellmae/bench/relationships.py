"""Known gene-gene relationship databases (CORUM, HuMAP, Reactome, SIGNOR, StringDB, ...).

Files are CSV with header ``entity1,entity2`` (DESIGN.md, "Data contracts"), plain or gzipped.
They are read the way EFAAR_benchmarking reads them (``pandas.read_csv`` defaults, then ``str()``
of every value), so that pair counts agree exactly with the public reference.

``builtin`` names the sets shipped in ``cellmae/data/relationships`` (HuMAP and StringDB, CC BY
4.0; Reactome, CC0; see ATTRIBUTION.txt there): the public map-benchmarking pair files, each pair
sorted, self pairs and duplicates dropped (what :func:`normalize_pairs` does anyway), gzipped.
CORUM and SIGNOR are licensed for non-commercial use only and are not shipped (docs/bench.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_SOURCES: tuple[str, ...] = ("CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB")
BUILTIN = "builtin"
BUILTIN_SOURCES: tuple[str, ...] = ("HuMAP", "Reactome", "StringDB")  # CC BY 4.0 / CC0: may ship
_SUFFIXES: tuple[str, ...] = (".txt", ".csv", ".csv.gz")


def builtin_dir() -> Path:
    """The folder of the shipped relationship sets (inside the installed package)."""
    from importlib import resources

    return Path(str(resources.files("cellmae.data") / "relationships"))


def resolve_sources(items: Iterable[str | Path]) -> list[Path]:
    """``--relationships`` values as paths: ``builtin`` becomes the shipped sets' files."""
    out: list[Path] = []
    for item in items:
        if str(item) == BUILTIN:
            out += [builtin_dir() / f"{n}.csv.gz" for n in BUILTIN_SOURCES]
        else:
            out.append(Path(item))
    return out


def _stem(path: Path) -> str:
    """``HuMAP.csv.gz`` -> ``HuMAP``; ``CORUM.txt`` -> ``CORUM``."""
    name = path.name
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def bundle(source_dir: str | Path, out_dir: str | Path, names: Sequence[str] = BUILTIN_SOURCES) -> dict[str, int]:
    """Write the shipped sets from the public pair files (a maintainer step): normalised, sorted,
    gzipped without a timestamp so the bytes are reproducible. Returns {name: pairs}."""
    import gzip

    out_dir = Path(out_dir)
    counts = {}
    for name, path in _files_in_directory(Path(source_dir), list(names)).items():
        pairs = normalize_pairs(_read_relationship_file(path)).sort_values(["entity1", "entity2"])
        with open(out_dir / f"{name}.csv.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(pairs.to_csv(index=False).encode())
        counts[name] = len(pairs)
    return counts


def _read_relationship_file(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types (ParserError, UnicodeDecodeError, ...)
        raise ValueError(f"{path}: cannot read as CSV: {exc}") from exc
    missing = [c for c in ("entity1", "entity2") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected header 'entity1,entity2', got {list(df.columns)}")
    out = df[["entity1", "entity2"]].copy()
    # str() of each value, exactly as the reference's sorted([e1, e2]) sees them after read_csv.
    out["entity1"] = [str(v) for v in out["entity1"].to_numpy()]
    out["entity2"] = [str(v) for v in out["entity2"].to_numpy()]
    return out


def _files_in_directory(directory: Path, names: Sequence[str] | None) -> dict[str, Path]:
    if names is None:
        candidates = sorted(p for p in directory.iterdir() if p.name.endswith(_SUFFIXES) and p.is_file())
        found: dict[str, Path] = {}
        for p in candidates:  # .txt wins over .csv of the same stem (sorted order puts .csv first)
            if _stem(p) not in found or p.suffix == ".txt":
                found[_stem(p)] = p
        known = [n for n in DEFAULT_SOURCES if n in found]
        # Only files that look like relationship tables: the default five if present, else every CSV/TXT.
        chosen = known or sorted(found)
        if not chosen:
            raise FileNotFoundError(f"{directory}: no relationship files (*.txt / *.csv with header entity1,entity2)")
        return {n: found[n] for n in chosen}
    out = {}
    for name in names:
        for suffix in _SUFFIXES:
            p = directory / f"{name}{suffix}"
            if p.is_file():
                out[name] = p
                break
        else:
            raise FileNotFoundError(f"{directory}: no relationship file {name}.txt, {name}.csv or {name}.csv.gz")
    return out


def load_relationships(
    source: str | Path | Sequence[str | Path], names: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Read relationship tables; return ``{name: DataFrame(entity1, entity2)}`` (raw, not normalised).

    ``source`` is a directory holding ``{CORUM,HuMAP,Reactome,SIGNOR,StringDB}.txt`` (or ``.csv``;
    ``names`` picks which, default: those five when present, else every ``*.txt``/``*.csv``), one
    CSV path, or a sequence of CSV paths. A file's name is its stem. Values are ``str()`` of what
    ``pandas.read_csv`` parsed, as in EFAAR_benchmarking.
    """
    paths: dict[str, Path]
    if str(source) == BUILTIN or (not isinstance(source, (str, Path)) and any(str(s) == BUILTIN for s in source)):
        source = resolve_sources([source] if isinstance(source, (str, Path)) else source)
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        paths = _files_in_directory(Path(source), names)
    else:
        items: Iterable[str | Path] = [source] if isinstance(source, (str, Path)) else source
        paths = {}
        for item in items:
            p = Path(item)
            if p.is_dir():
                paths.update(_files_in_directory(p, names))
                continue
            if not p.is_file():
                raise FileNotFoundError(f"relationship file not found: {p}")
            if _stem(p) in paths:
                raise ValueError(f"two relationship files share the name {_stem(p)!r}: {paths[_stem(p)]} and {p}")
            paths[_stem(p)] = p
        if names is not None:
            missing = [n for n in names if n not in paths]
            if missing:
                raise ValueError(f"relationship source(s) {missing} not among the given files {sorted(paths)}")
            paths = {n: paths[n] for n in names}
    if not paths:
        raise ValueError(f"no relationship files given in {source!r}")
    return {name: _read_relationship_file(p) for name, p in paths.items()}


def normalize_pairs(df: pd.DataFrame, universe: Iterable[str] | None = None) -> pd.DataFrame:
    """Known pairs normalised as the reference does: each pair sorted (entity1 < entity2),
    self pairs dropped, duplicates dropped, and (when ``universe`` is given) both members in it.

    Returns a fresh DataFrame with columns ``entity1, entity2`` and a 0..n-1 index, in first-seen order.
    """
    missing = [c for c in ("entity1", "entity2") if c not in df.columns]
    if missing:
        raise ValueError(f"relationship table lacks column(s) {missing}; has {list(df.columns)}")
    a = np.array([str(v) for v in df["entity1"].to_numpy()], dtype=object)
    b = np.array([str(v) for v in df["entity2"].to_numpy()], dtype=object)
    swap = a > b
    lo = np.where(swap, b, a)
    hi = np.where(swap, a, b)
    out = pd.DataFrame({"entity1": lo, "entity2": hi})
    out = out[out["entity1"] != out["entity2"]].drop_duplicates()
    if universe is not None:
        uni = set(map(str, universe))
        out = out[out["entity1"].isin(uni) & out["entity2"].isin(uni)]
    return out.reset_index(drop=True)
