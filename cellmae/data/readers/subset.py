"""A screen restricted to listed wells (a curated training set), and the well-list file it reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.data import schema
from cellmae.data.readers.base import Screen


def read_well_list(path: str | Path) -> set[tuple[str, str, str]]:
    """(experiment, plate, well) keys listed in a CSV such as ``cellmae curate``'s ``kept_wells.csv``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such well list (data.keep_wells / --keep-wells); write one with `cellmae curate`")
    df = pd.read_csv(path, dtype=str)
    missing = [c for c in schema.WELL_KEYS if c not in df.columns]
    if missing:
        raise schema.SchemaError(f"{path}: missing column(s) {missing}")
    return set(map(tuple, df[list(schema.WELL_KEYS)].to_numpy()))


def well_list_digest(wells: Iterable[tuple[str, str, str]]) -> str:
    """SHA-256 of a well list, independent of its order: what a shard set built from a subset records, so that
    training can check it was given the shards of its ``data.keep_wells`` list."""
    text = "\n".join("\t".join(map(str, k)) for k in sorted(set(map(tuple, wells))))
    return hashlib.sha256(text.encode()).hexdigest()


class WellSubsetScreen(Screen):
    """The fields of a parent screen whose (experiment, plate, well) is listed, read through the parent."""

    def __init__(self, parent: Screen, wells: Iterable[tuple[str, str, str]]):
        wanted = set(map(tuple, wells))
        keys = parent.metadata[list(schema.WELL_KEYS)].astype(str).to_numpy()
        self.indices = [i for i, k in enumerate(map(tuple, keys)) if k in wanted]
        if not self.indices:
            raise ValueError(f"none of the {len(wanted)} wells of the well list (data.keep_wells / --keep-wells) "
                             f"are in {parent.source}; was the list written for another screen?")
        self.parent = parent
        self.layout = parent.layout
        super().__init__(parent.metadata.iloc[self.indices], parent.channels, [parent.path(i) for i in self.indices],
                         source=parent.source, low_pct=parent.low_pct, high_pct=parent.high_pct,
                         rescale_uint8=parent.rescale_uint8, cache_dir=parent.cache_dir)
        self.spec = parent.spec
        self.kept_wells = {"wells": len(wanted), "sha256": well_list_digest(wanted)}

    def _read_raw(self, i: int) -> np.ndarray:
        return self.parent.read_raw(self.indices[i])
