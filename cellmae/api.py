"""The notebook API: load a model, embed a screen, build a map, benchmark it, with DataFrames in and out.

Each function wraps the stage function the command line uses (``cellmae embed`` / ``map`` / ``bench``),
so results are the same; in-memory inputs are written to a temporary folder for the stage to read and
outputs are read back. Pass ``out=`` to keep a stage's folder (the usual RUN layout), else a temporary
folder is used and removed.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from cellmae.models.loader import load

load_model = load  # ``cellmae.load_model(spec)`` is the one model loader (see cellmae.models.loader)


@contextmanager
def _folder(out: str | Path | None, prefix: str) -> Iterator[Path]:
    """``out`` itself, or a temporary folder that is removed afterwards."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix=f"cellmae-{prefix}-") as tmp:
        yield Path(tmp) / prefix


def embed_screen(
    screen: Any,
    model: Any,
    out: str | Path | None = None,
    *,
    blocks: str | int | Sequence[int] | None = None,
    progress: bool = False,
    **options: Any,
) -> pd.DataFrame | dict[int, pd.DataFrame]:
    """Embed every well of ``screen`` with ``model``; one row per well (metadata + ``feature_`` columns).

    ``screen``: a screen folder or an opened screen (``cellmae.open_screen``). ``model``: a model from
    :func:`load_model` (or any object with ``forward_features``) or a spec string. ``blocks``: None (the
    last), an int, "all", or a list; one block gives a DataFrame, several a ``{block: DataFrame}`` dict.
    ``options`` are those of ``cellmae embed`` (``tile``, ``pool``, ``batch_size``, ``device``,
    ``precision``, ``channels``, ``num_workers``, ``site_level``, ``anndata``, ``seed``, ...).
    """
    from cellmae.embed.io import read_embeddings
    from cellmae.embed.pipeline import run_embedding

    with _folder(out, "embed") as folder:
        summary = run_embedding(screen, model, folder, blocks=blocks, progress=progress, **options)
        frames = {b: read_embeddings(p) for b, p in summary.paths.items()}
    return next(iter(frames.values())) if len(frames) == 1 else frames


class MapResult(NamedTuple):
    """``build_map``'s output: aligned wells, aggregated perturbation profiles, and the summary."""

    aligned: pd.DataFrame
    aggregated: pd.DataFrame
    summary: dict


def as_frame(data: Any) -> pd.DataFrame:
    """A well table from a DataFrame or an AnnData (obs = metadata, X = features under var_names)."""
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "obs") and hasattr(data, "X"):
        from cellmae.data.tables import anndata_frame

        return anndata_frame(data)[0]
    raise TypeError(f"expected a path, a DataFrame or an AnnData, got {type(data).__name__}")


def _read_frame(path: Path) -> pd.DataFrame:
    from cellmae.data.profiles import Profiles

    return Profiles.read(path, finite=False).to_frame()


def build_map(embeddings: Any, out: str | Path | None = None, **options: Any) -> MapResult:
    """Filter, align (``align="tvn"`` by default) and aggregate well embeddings into a map.

    ``embeddings``: a block folder (``RUN/embed/<model>/blockNN``), any profile table (Parquet, CSV/TSV,
    ``.h5ad``, zarr; the format is read from the content), a DataFrame (e.g. from :func:`embed_screen`)
    or an AnnData. ``options``: the fields of :class:`cellmae.profiles.pipeline.MapOptions` (``align``,
    ``agg``, ``batch_col``, ``features``, ``output_type``, ...).
    """
    from cellmae import layout
    from cellmae.profiles.pipeline import MapOptions
    from cellmae.profiles.pipeline import build_map as _build_map

    opts = _options(MapOptions, options, "build_map")
    with tempfile.TemporaryDirectory(prefix="cellmae-wells-") as tmp, _folder(out, "map") as folder:
        if isinstance(embeddings, str | Path):
            source = Path(embeddings)
        else:  # the map stage reads files: hand it the table as one Parquet file
            source = Path(tmp) / "wells.parquet"
            as_frame(embeddings).to_parquet(source, index=False)
            if opts.features is None and hasattr(embeddings, "var_names"):  # an AnnData's X is its features
                opts.features = [str(v) for v in embeddings.var_names]
        summary = _build_map(source, folder, opts)
        aligned, aggregated = layout.map_table_files(folder)
        return MapResult(_read_frame(aligned), _read_frame(aggregated), summary)


@dataclass
class BenchResult:
    """``run_bench``'s output: the summary and every benchmark table (empty when a benchmark was skipped)."""

    summary: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        """One table by name: "recall", "consistency", "map_copairs", "compound_gene" or "batch"."""
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; have {sorted(self.tables)}")
        return self.tables[name]

    def lines(self) -> list[str]:
        """The headline lines ``cellmae bench`` prints."""
        from cellmae.bench.benchmark import describe

        return describe(self.summary)


def run_bench(map_: Any, out: str | Path | None = None, *, relationships: Any = None, **options: Any) -> BenchResult:
    """Benchmark a map: known-relationship recall, replicate consistency, mAP, compound-gene, batch.

    ``map_``: a map folder (``RUN/map/<model>/<block>``), a :class:`MapResult` or an ``(aligned,
    aggregated)`` pair of DataFrames. ``relationships``: relationship files/folders, or a simulator's
    ``truth/`` folder. ``options``: the fields of :class:`cellmae.bench.benchmark.BenchOptions`
    (``n_null``, ``map_null_size``, ``seed``, ``embed_dir``, ...).
    """
    from cellmae.bench.benchmark import OUTPUT_FILES, BenchOptions
    from cellmae.bench.benchmark import run_bench as _run_bench
    from cellmae.profiles.io import AGGREGATED_FILE, ALIGNED_FILE, MAP_KIND, write_table
    from cellmae.utils.manifest import write_manifest

    opts = _options(BenchOptions, {"relationships": relationships, **options}, "run_bench")
    with tempfile.TemporaryDirectory(prefix="cellmae-map-") as tmp, _folder(out, "bench") as folder:
        if isinstance(map_, str | Path):
            map_dir = Path(map_)
        elif isinstance(map_, tuple) and len(map_) >= 2:
            map_dir = Path(tmp)
            write_table(as_frame(map_[0]), map_dir / ALIGNED_FILE)
            write_table(as_frame(map_[1]), map_dir / AGGREGATED_FILE)
            write_manifest(map_dir, MAP_KIND)  # tables handed over in memory are complete: commit them
        else:
            raise TypeError(f"run_bench needs a map folder, a MapResult or (aligned, aggregated); got {type(map_).__name__}")
        summary = _run_bench(map_dir, folder, opts)
        tables = {Path(n).stem: pd.read_csv(folder / n) for n in OUTPUT_FILES
                  if n.endswith(".csv") and (folder / n).is_file()}
    return BenchResult(summary, tables)


def _options(cls: type, given: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; valid: {sorted(known)}")
    return cls(**given)
