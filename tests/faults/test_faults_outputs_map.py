"""`cellmae map` and `cellmae bench` on killed, half-written, foreign and broken inputs (issue 17: 2, 8, 11)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.schema import PLATE, feature_columns
from cellmae.utils.manifest import output_lock, read_manifest
from tests.map.screen import synthetic_table

from .test_faults_outputs_support import leftovers, manifest_files, parquet_frames, run_cli, run_killed

# An uninterrupted map renames 5 times: aligned, aggregated, map.json, manifest.json, the folder.
RENAMES = 5
KILL_AT = sorted(random.Random(17).sample(range(1, RENAMES + 1), 3))


def _embeddings(root: Path, **kw) -> Path:
    table = synthetic_table(n_batches=2, n_genes=6, reps=3, n_controls=16, dim=6, **kw)
    for plate, part in table.groupby(PLATE):
        (root / f"plate={plate}").mkdir(parents=True)
        part.to_parquet(root / f"plate={plate}" / "part-0.parquet", index=False)
    return root


def _map(embed: Path, out: Path, align: str = "center_scale"):
    return CliRunner().invoke(app, ["map", str(embed), "--out", str(out), "--align", align])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(embeddings, their uninterrupted map)."""
    root = tmp_path_factory.mktemp("ref")
    embed = _embeddings(root / "embed")
    res = _map(embed, root / "map")
    assert res.exit_code == 0, res.stderr
    return embed, root / "map"


def _same_map(got: Path, ref: Path) -> None:
    assert manifest_files(got) == manifest_files(ref)  # checksums of both tables
    for name, frame in parquet_frames(ref).items():
        pd.testing.assert_frame_equal(parquet_frames(got)[name], frame)


@pytest.mark.parametrize("nth", KILL_AT)
def test_killed_map_reruns_to_identical_output(tmp_path, reference, nth):
    embed, ref = reference
    out = tmp_path / "map" / "block06"
    run_killed(["map", str(embed), "--out", str(out), "--align", "center_scale"], "os:replace", nth)
    assert not out.exists() or read_manifest(out, "map", rerun="x")  # nothing half-written is visible
    bench = CliRunner().invoke(app, ["bench", str(out), "--out", str(tmp_path / "bench")])
    assert bench.exit_code == 2 and str(out) in bench.stderr  # a clear refusal, never a score
    assert _map(embed, out).exit_code == 0
    _same_map(out, ref)
    assert leftovers(out) == []  # the rerun removed the killed run's temporary folder (item 11)


@pytest.mark.parametrize("nth", [RENAMES, RENAMES + 1])  # the old folder moved aside / the new one moved in
def test_killed_rewrite_leaves_the_old_map_or_none(tmp_path, reference, nth):
    embed, ref = reference
    out = tmp_path / "map"
    assert _map(embed, out, "tvn").exit_code == 0
    old = manifest_files(out)
    run_killed(["map", str(embed), "--out", str(out), "--align", "center_scale"], "os:replace", nth)
    if out.exists():  # still the old, complete map: tables and manifest agree
        assert read_manifest(out, "map", rerun="x", deep=True)["settings"]["align"] == "tvn"
        assert manifest_files(out) == old
    assert _map(embed, out).exit_code == 0
    _same_map(out, ref)
    assert leftovers(out) == []


def test_bench_refuses_a_map_without_its_manifest(tmp_path, reference):
    """Issue 17 item 2: a new aligned table beside an old aggregated one is refused, naming the folder."""
    embed, _ = reference
    out = tmp_path / "map"
    assert _map(embed, out).exit_code == 0
    other = tmp_path / "other"
    assert CliRunner().invoke(app, ["map", str(_embeddings(tmp_path / "e2", seed=5)), "--out", str(other),
                                    "--align", "center_scale"]).exit_code == 0
    shutil.copyfile(other / "aligned.parquet", out / "aligned.parquet")  # half a rewrite
    res = CliRunner().invoke(app, ["bench", str(out), "--out", str(tmp_path / "bench")])
    assert res.exit_code == 2 and str(out) in res.stderr and "aligned.parquet" in res.stderr
    assert not (tmp_path / "bench").exists()
    (out / "manifest.json").unlink()
    res = CliRunner().invoke(app, ["bench", str(out), "--out", str(tmp_path / "bench")])
    assert res.exit_code == 2 and "no manifest.json" in res.stderr and str(out) in res.stderr


def test_rerun_removes_what_an_old_killed_map_left(tmp_path, reference):
    """Issue 17 item 11: `.aligned.parquet.*.tmp` inside the folder and temp folders beside it go."""
    embed, ref = reference
    out = tmp_path / "map"
    out.mkdir()
    (out / ".aligned.parquet.x1y2.tmp").write_bytes(b"PAR1 half")
    stale = tmp_path / ".map.abc123.tmp"
    stale.mkdir()
    (stale / "aligned.parquet").write_bytes(b"PAR1")
    assert _map(embed, out).exit_code == 0
    assert leftovers(out) == [] and sorted(p.name for p in out.iterdir()) == sorted(
        ["aligned.parquet", "aggregated.parquet", "map.json", "manifest.json"])
    _same_map(out, ref)


def test_second_map_writer_is_refused_naming_the_holder(tmp_path, reference):
    embed, _ = reference
    out = tmp_path / "map"
    with output_lock(out):  # this test process is the first writer
        res = run_cli(["map", str(embed), "--out", str(out)])
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert f"pid {os.getpid()}" in res.stderr and str(out) in res.stderr
    assert not out.exists()


def test_map_and_bench_name_a_truncated_parquet_part(tmp_path, reference):
    embed = _embeddings(tmp_path / "embed")
    part = sorted(embed.rglob("*.parquet"))[1]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    res = _map(embed, tmp_path / "map")
    assert res.exit_code == 2 and str(part) in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "map").exists()
    # bench's raw embeddings (--embed-dir) too
    _, ref = reference
    res = CliRunner().invoke(app, ["bench", str(ref), "--out", str(tmp_path / "bench"), "--embed-dir", str(embed)])
    assert res.exit_code == 2 and str(embed) in res.stderr and res.stderr.count("\n") == 1


def test_map_refuses_constant_features(tmp_path):
    embed = _embeddings(tmp_path / "embed")
    for part in embed.rglob("*.parquet"):
        df = pd.read_parquet(part)
        df[feature_columns(df)] = np.float32(0.5)
        df.to_parquet(part, index=False)
    for align in ("center_scale", "tvn"):
        res = _map(embed, tmp_path / "map", align)
        assert res.exit_code == 2 and str(embed) in res.stderr and "constant" in res.stderr


def _mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root")
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")


def test_full_disk_during_map_is_one_line_and_keeps_the_old_map(tmp_path, reference):
    embed, _ = reference
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "256k")
    try:
        out = disk / "map"
        assert _map(embed, out, "tvn").exit_code == 0
        before = manifest_files(out)
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - 8192))  # leave less than one new table needs
        res = _map(embed, out)
        assert res.exit_code == 2 and res.stderr.count("\n") == 1
        assert res.stderr.startswith("error: ") and "disk is full" in res.stderr and str(out) in res.stderr
        assert read_manifest(out, "map", rerun="x", deep=True)["settings"]["align"] == "tvn"  # old map intact
        assert manifest_files(out) == before and leftovers(out) == []
    finally:
        # lazy: the failed write's traceback (kept by CliRunner) may still hold a file open there
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_map_json_and_manifest_record_the_same_options(tmp_path, reference):
    _, ref = reference
    manifest = json.loads((ref / "manifest.json").read_text())
    assert json.loads((ref / "map.json").read_text())["options"] == manifest["settings"]
