from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.schema import CONCENTRATION, EXPERIMENT, IS_CONTROL, PERTURBATION, PLATE, feature_columns
from cellmae.map.filtering import filter_wells

from .screen import synthetic_table


def write_embedding_dataset(table: pd.DataFrame, root: Path) -> Path:
    """The embed stage's layout: <block>/plate=<id>/part-0.parquet."""
    for plate, part in table.groupby(PLATE):
        folder = root / f"plate={plate}"
        folder.mkdir(parents=True)
        part.to_parquet(folder / "part-0.parquet", index=False)
    return root


@pytest.mark.parametrize("align", ["tvn-batch-centered", "tvn", "center_scale"])
def test_map_cli_end_to_end(tmp_path: Path, align: str) -> None:
    table = synthetic_table(n_batches=2, n_genes=6, reps=3, n_controls=16, dim=6)
    embed = write_embedding_dataset(table, tmp_path / "embed" / "block06")
    out = tmp_path / "map"
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(out), "--align", align, "--agg", "median"])
    assert res.exit_code == 0, res.output
    aligned = pd.read_parquet(out / "aligned.parquet")
    aggregated = pd.read_parquet(out / "aggregated.parquet")
    assert len(aligned) == len(table)
    assert aligned[IS_CONTROL].sum() == table[IS_CONTROL].sum()
    # 6 genes + 2 compounds x 2 doses; controls excluded
    assert len(aggregated) == 10 and not aggregated[IS_CONTROL].any()
    cpd = aggregated[aggregated[PERTURBATION] == "CPD0"]
    assert sorted(cpd[CONCENTRATION]) == [0.1, 1.0]
    feats = feature_columns(aggregated)
    assert feats == feature_columns(aligned) and len(feats) == 6
    assert aggregated[feats].dtypes.eq(np.float32).all() and np.isfinite(aggregated[feats].to_numpy()).all()
    summary = json.loads((out / "map.json").read_text())
    assert summary["options"]["align"] == align and summary["profiles"] == 10 and summary["batches"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_map_cli_errors(tmp_path: Path) -> None:
    table = synthetic_table(n_batches=2, n_genes=4, reps=2, n_controls=1, dim=4)
    embed = write_embedding_dataset(table, tmp_path / "embed")
    out = tmp_path / "map"
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(out), "--align", "bogus"])
    assert res.exit_code != 0 and "bogus" in res.output
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(out)])
    assert res.exit_code == 2 and "EXP0" in res.output  # one control per batch: TVN cannot whiten
    assert not out.exists() or not any(out.iterdir())
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(out), "--batch-col", "Metadata_Nope"])
    assert res.exit_code == 2 and "Metadata_Nope" in res.output
    res = CliRunner().invoke(app, ["map", str(tmp_path / "missing"), "--out", str(out)])
    assert res.exit_code == 2 and "missing" in res.output


def test_filter_wells() -> None:
    table = synthetic_table(n_batches=1, n_genes=4, reps=2, n_controls=4, dim=3)
    table.loc[0, "feature_0001"] = np.nan
    out, report = filter_wells(table, keep_types=["CRISPR"], min_replicates=2)
    assert report.dropped["nonfinite"] == 1
    assert report.dropped["type"] == 8  # compound wells
    assert report.dropped["too_few_replicates"] == 1  # GENE0 lost a replicate to the NaN
    assert set(out[PERTURBATION]) == {"GENE1", "GENE2", "GENE3", "EMPTY"}
    assert out[EXPERIMENT].nunique() == 1 and report.n_out == len(out)
    with pytest.raises(ValueError, match="row 1"):
        filter_wells(table, drop_nonfinite=False)


def test_map_default_alignment_is_stated() -> None:
    import typer.main

    from cellmae.map.align import DEFAULT_ALIGN
    from cellmae.map.pipeline import MapOptions

    command = typer.main.get_command(app).commands["map"]
    option = next(p for p in command.params if p.name == "align")
    assert option.default == DEFAULT_ALIGN == MapOptions().align == "tvn-batch-centered"
    assert f"default {DEFAULT_ALIGN}" in option.help
