"""``cellmae map``: embeddings folder -> filter -> align -> aggregate -> map folder."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae import layout
from cellmae.data.profiles import OUTPUT_TYPES, Profiles
from cellmae.data.schema import (
    EXPERIMENT,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    SchemaError,
    feature_column,
)
from cellmae.map.aggregate import AGG_METHODS, aggregate
from cellmae.map.align import ALIGN_METHODS, DEFAULT_ALIGN, align
from cellmae.map.filtering import filter_wells
from cellmae.map.io import MAP_KIND, SUMMARY_FILE, read_well_embeddings
from cellmae.utils.atomic import write_text_atomic
from cellmae.utils.errors import InputError, writing
from cellmae.utils.manifest import MANIFEST_FILE, committed_dir, sha256_file


@dataclass
class MapOptions:
    """Everything that decides a map (saved to ``map.json`` next to the tables)."""

    align: str = DEFAULT_ALIGN
    agg: str = "mean"
    batch_col: str = EXPERIMENT
    pca_components: int | float | None = None
    keep_types: tuple[str, ...] | None = None
    drop_perturbations: tuple[str, ...] | None = None
    min_replicates: int = 1
    drop_nonfinite: bool = True
    arm_correction: str | None = None  # gene -> chromosome arm table: centre gene profiles per arm
    features: tuple[str, ...] | str | None = None  # input feature columns (list or regex); None: inferred
    output_type: str = "parquet"  # or anndata_h5ad: aligned.h5ad + aggregated.h5ad

    def check(self) -> None:
        if self.align not in ALIGN_METHODS:
            raise ValueError(f"--align {self.align!r}: choose one of {list(ALIGN_METHODS)}")
        if self.agg not in AGG_METHODS:
            raise ValueError(f"--agg {self.agg!r}: choose one of {list(AGG_METHODS)}")
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(f"--output-type {self.output_type!r}: choose one of {list(OUTPUT_TYPES)}")
        if self.min_replicates < 1:
            raise ValueError(f"--min-replicates must be >= 1, got {self.min_replicates}")
        if self.arm_correction and self.arm_correction != "builtin" and not Path(self.arm_correction).is_file():
            raise ValueError(f"--arm-correction {self.arm_correction}: no such file; give a gene -> chromosome arm "
                             "table (CSV/TSV) or 'builtin'")


def check_not_constant(wells: Profiles, source: str | Path = "the embeddings") -> None:
    """Refuse features that do not vary across wells: alignment would turn them into zeros or fail."""
    x = wells.features.astype(np.float64)
    finite = np.isfinite(x).all(axis=1)
    if x.shape[1] and finite.sum() > 1 and np.all(np.ptp(x[finite], axis=0) == 0):
        raise InputError(f"{source}: all {x.shape[1]} feature columns are constant over {int(finite.sum())} wells, "
                         "so they hold no signal to map; check the model and the `cellmae embed` run that made them")


def map_tables(wells: Profiles | pd.DataFrame, opts: MapOptions, *, source: str | Path = "the embeddings",
               ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(aligned wells, aggregated profiles, summary) from well profiles (or a well table), in memory."""
    opts.check()
    if not isinstance(wells, Profiles):
        wells = Profiles.from_frame(wells, source=source, features=opts.features, wells=True, finite=False)
    check_not_constant(wells, source)
    if opts.batch_col not in wells.meta.columns:
        raise SchemaError(f"batch column {opts.batch_col!r} not in the embeddings; have {list(wells.meta.columns)[:12]}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    wells, report = filter_wells(
        wells,
        keep_types=opts.keep_types,
        drop_perturbations=opts.drop_perturbations,
        min_replicates=opts.min_replicates,
        drop_nonfinite=opts.drop_nonfinite,
    )
    if not len(wells):
        raise ValueError(f"no wells left after filtering: {report.as_dict()}")
    timings["filter_s"] = time.perf_counter() - t0
    meta = wells.meta
    x = wells.features
    t0 = time.perf_counter()
    aligned = align(
        x,
        meta[opts.batch_col].astype(str).to_numpy(),
        meta[IS_CONTROL].to_numpy(dtype=bool),
        opts.align,
        n_components=opts.pca_components,
    )
    timings["align_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    groups, profiles = aggregate(aligned, meta, opts.agg)
    timings["aggregate_s"] = time.perf_counter() - t0
    arm_report = None
    if opts.arm_correction:
        from cellmae.map.proximity import arm_center, read_arm_table

        # Only gene knockouts carry the cut-site effect: compound and control profiles stay as they are.
        ptype = groups[PERTURBATION_TYPE].astype(str).str.upper().to_numpy()
        genes = np.flatnonzero((ptype != "COMPOUND") & ~groups[IS_CONTROL].to_numpy(bool))
        profiles = profiles.copy()
        profiles[genes], arm_report = arm_center(profiles[genes], groups[PERTURBATION].to_numpy()[genes],
                                                 read_arm_table(opts.arm_correction))
    names = [feature_column(i) for i in range(aligned.shape[1])]
    aligned_table = pd.concat([meta.reset_index(drop=True), pd.DataFrame(aligned, columns=names)], axis=1)
    aggregated_table = pd.concat([groups, pd.DataFrame(profiles, columns=names)], axis=1)
    summary = {
        "options": asdict(opts),
        "filter": report.as_dict(),
        "wells": len(aligned_table),
        "control_wells": int(meta[IS_CONTROL].sum()),
        "batches": int(meta[opts.batch_col].nunique()),
        "input_dim": len(wells.feature_names),
        "input_features": list(wells.feature_names[:5]) + (["..."] if len(wells.feature_names) > 5 else []),
        "output_dim": aligned.shape[1],
        "profiles": len(aggregated_table),
        "arm_correction": arm_report,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    return aligned_table, aggregated_table, summary


def build_map(embed_dir: str | Path, out_dir: str | Path, opts: MapOptions | None = None) -> dict:
    """Read ``embed_dir``, build the map and commit ``aligned.parquet``, ``aggregated.parquet`` and
    ``map.json`` into ``out_dir`` as a unit (a temporary folder, ``manifest.json`` last, renamed
    into place): a reader sees the old complete map or the new one, never a mix. Returns the summary."""
    from cellmae.embed.io import check_complete_block

    opts = opts or MapOptions()
    opts.check()
    embed_dir, out_dir = Path(embed_dir), Path(out_dir)
    embed_manifest = check_complete_block(embed_dir)  # None: the user's own embeddings
    wells = read_well_embeddings(embed_dir, features=opts.features)
    aligned, aggregated, summary = map_tables(wells, opts, source=embed_dir)
    summary["input"] = str(embed_dir)
    summary["provenance"] = wells.provenance
    inputs = {"embeddings": str(embed_dir),
              "embed_manifest_sha256": embed_manifest_digest(embed_dir) if embed_manifest else None}
    names = layout.MAP_TABLE_FILES[opts.output_type]
    provenance = {**wells.provenance, "map": json.dumps(asdict(opts), default=str)}
    with writing(out_dir), committed_dir(out_dir, MAP_KIND, settings=asdict(opts), inputs=inputs) as tmp:
        for table, name in zip((aligned, aggregated), names, strict=True):
            Profiles.from_frame(table, source=name, finite=False, provenance=provenance).write(
                tmp / name, opts.output_type)
        write_text_atomic(tmp / SUMMARY_FILE, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def embed_manifest_digest(block_dir: Path) -> str | None:
    """SHA-256 of the embed manifest behind a block folder (which embed run a map was made from)."""
    from cellmae.embed.io import embed_root_of

    root = embed_root_of(block_dir)
    return sha256_file(root / MANIFEST_FILE) if root is not None and (root / MANIFEST_FILE).is_file() else None
