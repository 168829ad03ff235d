"""`cellmae bench` killed and rerun, resumed over a changed map; the report on incomplete folders (issue 17)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.schema import PLATE
from cellmae.utils.manifest import read_manifest
from tests.map.screen import synthetic_table

from .test_faults_outputs_support import leftovers, manifest_files, run_killed

FAST = ["--map-null-size", "200", "--null-size", "200"]
# An uninterrupted bench renames 3 times: summary.json, manifest.json, the folder.
KILL_AT = sorted(random.Random(17).sample(range(1, 4), 2))


def _map(root: Path, seed: int = 0) -> Path:
    embed = root / f"embed{seed}"
    table = synthetic_table(n_batches=2, n_genes=6, reps=3, n_controls=16, dim=6, seed=seed)
    for plate, part in table.groupby(PLATE):
        (embed / f"plate={plate}").mkdir(parents=True)
        part.to_parquet(embed / f"plate={plate}" / "part-0.parquet", index=False)
    out = root / "map" / "m" / "block01"
    res = CliRunner().invoke(app, ["map", str(embed), "--out", str(out), "--align", "center_scale"])
    assert res.exit_code == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """RUN with a committed map of model m, block01, and its uninterrupted bench."""
    root = tmp_path_factory.mktemp("run")
    map_dir = _map(root)
    res = CliRunner().invoke(app, ["bench", str(map_dir), "--out", str(root / "bench" / "m" / "block01"), *FAST])
    assert res.exit_code == 0, res.stderr
    return root


def _bench_frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}


@pytest.mark.parametrize("nth", KILL_AT)
def test_killed_bench_leaves_nothing_readable_and_reruns_to_identical_output(tmp_path, run_dir, nth):
    map_dir, ref = run_dir / "map" / "m" / "block01", run_dir / "bench" / "m" / "block01"
    out = tmp_path / "bench" / "m" / "block01"
    run_killed(["bench", str(map_dir), "--out", str(out), *FAST], "os:replace", nth)
    assert not out.exists()
    assert CliRunner().invoke(app, ["bench", str(map_dir), "--out", str(out), *FAST]).exit_code == 0
    assert manifest_files(out) == manifest_files(ref)
    assert json.loads((out / "summary.json").read_text()) == json.loads((ref / "summary.json").read_text())
    for name, frame in _bench_frames(ref).items():
        pd.testing.assert_frame_equal(_bench_frames(out)[name], frame)
    assert leftovers(out) == []


def test_killed_rewrite_keeps_the_old_bench_complete_or_absent(tmp_path, run_dir):
    map_dir = run_dir / "map" / "m" / "block01"
    out = tmp_path / "bench"
    shutil.copytree(run_dir / "bench" / "m" / "block01", out)
    run_killed(["bench", str(map_dir), "--out", str(out), *FAST, "--seed", "3"], "os:replace", 4)
    assert not out.exists() or read_manifest(out, "bench", rerun="x", deep=True)["settings"]["seed"] == 0
    assert CliRunner().invoke(app, ["bench", str(map_dir), "--out", str(out), *FAST, "--seed", "3"]).exit_code == 0
    assert read_manifest(out, "bench", rerun="x", deep=True)["settings"]["seed"] == 3 and leftovers(out) == []


def test_folder_of_blocks_rebenchmarks_a_block_whose_map_changed(tmp_path):
    root = tmp_path / "RUN"
    _map(root)
    args = ["bench", str(root / "map" / "m"), "--out", str(root / "bench" / "m"), *FAST]
    shutil.copytree(root / "map" / "m" / "block01", root / "map" / "m" / "block02")
    assert CliRunner().invoke(app, args).exit_code == 0
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and res.stderr.count("already benchmarked") == 2
    shutil.rmtree(root / "map" / "m" / "block02")
    shutil.copytree(_map(tmp_path / "other", seed=4), root / "map" / "m" / "block02")  # block02 remapped
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and res.stderr.count("already benchmarked") == 1
    summary = read_manifest(root / "bench" / "m" / "block02", "bench", rerun="x")
    assert summary["inputs"]["map_manifest_sha256"] != read_manifest(
        root / "bench" / "m" / "block01", "bench", rerun="x")["inputs"]["map_manifest_sha256"]


def test_report_lists_incomplete_map_and_bench_folders_instead_of_reading_them(tmp_path, run_dir):
    run = tmp_path / "RUN"
    shutil.copytree(run_dir, run)
    bench = run / "bench" / "m" / "block01"
    recall = pd.DataFrame({"null_distribution_size": [10], "query_distribution_size": [5],
                           "recall_0.05_0.95": [0.987654], "recall_0.1_0.9": [0.99], "source": ["CORUM"]})
    recall.to_csv(bench / "recall.csv", index=False)  # changed after the bench committed it
    (run / "map" / "m" / "block01" / "manifest.json").unlink()  # a map folder never committed
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    html = out.read_text()
    assert "Incomplete bench output of m" in html and "Incomplete map output of m" in html
    assert "recall.csv" in html and "0.988" not in html  # named, not shown
