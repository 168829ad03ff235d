"""Training takes shards; `cellmae train SCREEN` composes building them (of the ``data.keep_wells`` wells
when set) with training, and a shard set that was not built from the curated list is refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data import schema
from cellmae.utils.errors import InputError

from .conftest import set_options, tiny_overrides

runner = CliRunner()


def _some_wells(screen_dir: Path, path: Path, n: int = 4) -> set[tuple[str, ...]]:
    from cellmae.data.readers import open_screen

    wells = open_screen(screen_dir).metadata[list(schema.WELL_KEYS)].astype(str).drop_duplicates().head(n)
    wells.to_csv(path, index=False)
    return set(map(tuple, wells.to_numpy()))


def _wells_of(shard_dir: Path) -> set[tuple[str, ...]]:
    crops = pd.read_parquet(shard_dir / "crops.parquet")
    return set(map(tuple, crops[list(schema.WELL_KEYS)].astype(str).to_numpy()))


def test_train_on_a_screen_builds_curated_shards_then_trains(sim_shards: Path, tmp_path: Path) -> None:
    screen_dir = sim_shards.parent / "screen"
    kept = _some_wells(screen_dir, tmp_path / "kept_wells.csv")
    overrides = tiny_overrides(**{"trainer.max_steps": 1, "data.crops_per_field": 2,
                                  "data.keep_wells": str(tmp_path / "kept_wells.csv")})
    res = runner.invoke(app, ["train", str(screen_dir), "-o", str(tmp_path / "run"), "-q", *set_options(overrides)])
    assert res.exit_code == 0, res.stderr
    assert _wells_of(tmp_path / "run" / "shards") == kept
    assert (tmp_path / "run" / "model.safetensors").is_file()

    # the same shards built by hand (`shards build --keep-wells`) are accepted with the same list
    res = runner.invoke(app, ["shards", "build", str(screen_dir), "-o", str(tmp_path / "curated"), "--crop-size", "32",
                              "--crops-per-field", "2", "--keep-wells", str(tmp_path / "kept_wells.csv"), "-q"])
    assert res.exit_code == 0, res.stderr
    assert _wells_of(tmp_path / "curated") == kept
    from cellmae.train.run import run_training

    run_training("tiny-camae", tmp_path / "curated", tmp_path / "run2", overrides=overrides)
    assert (tmp_path / "run2" / "model.safetensors").is_file()


def test_shards_not_built_from_the_curated_list_are_refused(sim_shards: Path, tmp_path: Path) -> None:
    from cellmae.train.run import run_training

    screen_dir = sim_shards.parent / "screen"
    _some_wells(screen_dir, tmp_path / "kept_wells.csv")
    overrides = tiny_overrides(**{"trainer.max_steps": 1, "data.keep_wells": str(tmp_path / "kept_wells.csv")})
    with pytest.raises(InputError, match=rf"the shard set {sim_shards} was not built from this well list; build it "
                                         r"with `cellmae shards build SCREEN"):
        run_training("tiny-camae", sim_shards, tmp_path / "other", overrides=overrides)
    res = runner.invoke(app, ["train", str(sim_shards), "-o", str(tmp_path / "other"), *set_options(overrides)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "other" / "model.safetensors").exists()


def test_run_training_takes_shards_only_and_says_how_to_build_them(sim_shards: Path, tmp_path: Path) -> None:
    from cellmae.train.run import run_training

    screen_dir = sim_shards.parent / "screen"
    with pytest.raises(InputError, match=rf"{screen_dir}: not a shard set .* `cellmae shards build {screen_dir} -o "
                                         r"RUN/shards`, or give the screen folder to `cellmae train`"):
        run_training("tiny-camae", screen_dir, tmp_path / "run", overrides=tiny_overrides(**{"trainer.max_steps": 1}))
    assert not (tmp_path / "run" / "shards").exists()


def test_other_ranks_wait_for_rank_zero_to_build_the_shards(sim_shards: Path, tmp_path: Path, monkeypatch) -> None:
    from cellmae.data.training_shards import ensure_shards
    from cellmae.utils.ranks import rank_info

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    screen_dir = sim_shards.parent / "screen"
    with pytest.raises(TimeoutError, match=r"rank 1: .*pending was not built by rank 0 within 0s"):
        ensure_shards(screen_dir, tmp_path / "pending", crop_size=32, crops_per_field=2, wait_s=0)
    assert not (tmp_path / "pending").exists()  # a waiting rank writes nothing
    # a finished shard set (manifest last) is what a waiting rank takes
    assert ensure_shards(screen_dir, sim_shards, crop_size=32, crops_per_field=2, wait_s=0) == sim_shards
    # Lightning's own launcher gives its extra processes LOCAL_RANK only
    assert rank_info({"LOCAL_RANK": "1"}).rank == 1 and rank_info({}).rank == 0
