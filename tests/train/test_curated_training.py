"""Training on a curated well list (``data.keep_wells``): shards hold those wells only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cellmae.data import schema


def test_training_on_curated_wells_builds_shards_of_those_wells_only(sim_shards: Path, tmp_path: Path) -> None:
    from cellmae.data.readers import open_screen
    from cellmae.train.run import run_training

    from .conftest import tiny_overrides

    screen_dir = sim_shards.parent / "screen"
    meta = open_screen(screen_dir).metadata
    wells = meta[list(schema.WELL_KEYS)].astype(str).drop_duplicates().head(4)
    wells.to_csv(tmp_path / "kept_wells.csv", index=False)
    out = run_training("tiny-camae", screen_dir, tmp_path / "run",
                       overrides=tiny_overrides(**{"trainer.max_steps": 1, "data.crops_per_field": 2,
                                                   "data.keep_wells": str(tmp_path / "kept_wells.csv")}))
    crops = pd.read_parquet(out / "shards" / "crops.parquet")
    assert set(map(tuple, crops[list(schema.WELL_KEYS)].astype(str).to_numpy())) == set(map(tuple, wells.to_numpy()))
    from cellmae.train.config import ConfigError

    with pytest.raises(ConfigError, match="keep_wells needs a screen folder"):
        run_training("tiny-camae", sim_shards, tmp_path / "other",
                     overrides=tiny_overrides(**{"trainer.max_steps": 1,
                                                 "data.keep_wells": str(tmp_path / "kept_wells.csv")}))
