"""Well filtering before alignment (EFAAR "filter").

Embeddings from a model have no CellProfiler QC columns to filter on, so filtering here is about
what enters the map: wells with non-finite features (a failed tile), perturbation types or names
the user keeps or drops, and perturbations with too few replicate wells to aggregate. Control
wells are never dropped by the perturbation filters: alignment is fitted on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cellmae.data.profiles import Profiles, perturbation_key
from cellmae.data.schema import IS_CONTROL, PERTURBATION, PERTURBATION_TYPE


@dataclass
class FilterReport:
    """How many wells each filter removed (in the order applied)."""

    n_in: int
    n_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"wells_in": self.n_in, "wells_out": self.n_out, "dropped": dict(self.dropped)}


def filter_wells(
    wells: Profiles | pd.DataFrame,
    *,
    keep_types: Iterable[str] | None = None,
    keep_perturbations: Iterable[str] | None = None,
    drop_perturbations: Iterable[str] | None = None,
    min_replicates: int = 1,
    drop_nonfinite: bool = True,
) -> tuple[Profiles | pd.DataFrame, FilterReport]:
    """Filtered copy of a well table (:class:`Profiles`, or a DataFrame with ``feature_`` columns:
    the same kind comes back) and a report.

    ``keep_types``: perturbation types to keep (case-insensitive; controls always kept).
    ``keep_perturbations`` / ``drop_perturbations``: names to keep / drop (controls always kept).
    ``min_replicates``: drop treated perturbations (x concentration) with fewer wells.
    ``drop_nonfinite``: drop wells with a NaN/inf feature; if False such wells raise ValueError.
    """
    prof = wells if isinstance(wells, Profiles) else Profiles.from_frame(wells, finite=False)
    table = prof.meta
    report = FilterReport(n_in=len(table))
    keep = np.ones(len(table), dtype=bool)
    control = table[IS_CONTROL].to_numpy(dtype=bool)

    def apply(name: str, mask: np.ndarray) -> None:
        report.dropped[name] = int(np.count_nonzero(keep & ~mask))
        keep[:] &= mask

    finite = np.isfinite(prof.features).all(axis=1)
    if not finite.all() and not drop_nonfinite:
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"well row {row + 1} has NaN or infinite features (use drop_nonfinite to skip such wells)")
    apply("nonfinite", finite)
    if keep_types is not None:
        wanted = {str(t).upper() for t in keep_types}
        apply("type", control | table[PERTURBATION_TYPE].astype(str).str.upper().isin(wanted).to_numpy())
    names = table[PERTURBATION].astype(str)
    if keep_perturbations is not None:
        apply("not_kept", control | names.isin(set(map(str, keep_perturbations))).to_numpy())
    if drop_perturbations is not None:
        apply("dropped_by_name", control | ~names.isin(set(map(str, drop_perturbations))).to_numpy())
    if min_replicates > 1:
        key = perturbation_key(table)
        counts = key[keep].value_counts()
        enough = key.map(counts).fillna(0).to_numpy() >= min_replicates
        apply("too_few_replicates", control | enough)
    out = prof.subset(keep)
    report.n_out = len(out)
    return (out if isinstance(wells, Profiles) else out.to_frame()), report
