"""`cellmae embed` killed, run twice at once, given bad files; `cellmae map` on what it left (issue 17: 3, 4, 8)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.embed.pipeline import run_embedding
from cellmae.embed.writer import EmbeddingStore
from cellmae.utils.errors import InputError
from tests.embed.conftest import write_rxrx_screen

from .test_faults_outputs_support import leftovers, parquet_frames, run_cli, run_killed, start_paused

PLATES = 3
# (point, call, before/after): inside a plate, between a plate's part and its marker, after the
# last plate but before the manifest, and on the manifest's own rename.
POINTS = [
    ("cellmae.embed.writer:EmbeddingStore.write_part", 2, "after"),
    ("cellmae.embed.writer:EmbeddingStore.mark_done", 2, "before"),
    ("cellmae.embed.writer:EmbeddingStore.mark_done", PLATES, "after"),
    ("cellmae.embed.writer:write_manifest", 1, "before"),
]
KILL_AT = sorted(random.Random(17).sample(POINTS, 3))


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> Path:
    return write_rxrx_screen(tmp_path_factory.mktemp("screen"), plates=PLATES, wells=2, sites=1, size=64, seed=2)


def _args(screen: Path, out: Path, *extra: str) -> list[str]:
    return ["embed", str(screen), "--model", "handcrafted", "--out", str(out), "--num-workers", "0", *extra]


@pytest.fixture(scope="module")
def reference(screen, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "handcrafted"
    run_embedding(screen, "handcrafted", out, num_workers=0, progress=False)
    return out


def _manifest_view(out: Path) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    return {k: m[k] for k in ("kind", "settings", "files", "blocks", "plates", "wells")}


@pytest.mark.parametrize("point,nth,when", KILL_AT)
def test_killed_embed_is_refused_by_map_then_resumes_to_identical_output(tmp_path, screen, reference, point, nth, when):
    out = tmp_path / "embed" / "handcrafted"
    run_killed(_args(screen, out), point, nth, when)
    assert not (out / "manifest.json").exists()
    res = CliRunner().invoke(app, ["map", str(out / "block00"), "--out", str(tmp_path / "map")])
    assert res.exit_code == 2 and str(out) in res.stderr and "manifest.json" in res.stderr  # item 3
    assert not (tmp_path / "map").exists()
    res = CliRunner().invoke(app, _args(screen, out))
    assert res.exit_code == 0, res.stderr
    assert _manifest_view(out) == _manifest_view(reference)
    got, ref = parquet_frames(out / "block00"), parquet_frames(reference / "block00")
    assert list(got) == list(ref)
    for name in ref:
        pd.testing.assert_frame_equal(got[name], ref[name])
    assert leftovers(out) == []
    assert CliRunner().invoke(app, ["map", str(out / "block00"), "--out", str(tmp_path / "map"),
                                    "--align", "center_scale"]).exit_code == 0


def test_map_refuses_blocks_that_do_not_match_the_embed_manifest(tmp_path, reference):
    out = tmp_path / "handcrafted"
    shutil.copytree(reference, out)
    res = CliRunner().invoke(app, ["map", str(out), "--out", str(tmp_path / "map")])
    assert res.exit_code == 2 and str(out / "block00") in res.stderr  # the root: name the block to pass
    plate = next((out / "block00").glob("Metadata_Experiment=*/Metadata_Plate=*"))
    shutil.copytree(plate, plate.parent / "Metadata_Plate=OTHER_9")  # a plate from another screen's run
    res = CliRunner().invoke(app, ["map", str(out / "block00"), "--out", str(tmp_path / "map")])
    assert res.exit_code == 2 and "OTHER_9" in res.stderr and str(out / "block00") in res.stderr
    shutil.rmtree(plate.parent / "Metadata_Plate=OTHER_9")
    shutil.copytree(out / "block00", out / "block03")  # a block the manifest does not list
    res = CliRunner().invoke(app, ["map", str(out / "block03"), "--out", str(tmp_path / "map")])
    assert res.exit_code == 2 and "block03" in res.stderr
    assert not (tmp_path / "map").exists()


def test_second_embed_into_one_out_is_refused_naming_the_holder(tmp_path, screen):
    from cellmae.embed.writer import embedding_lock

    out = tmp_path / "handcrafted"
    with embedding_lock(out, 0):  # this test process is a running embed (rank 0)
        res = run_cli(_args(screen, out))
        assert res.returncode == 2 and res.stderr.count("\n") == 1
        assert f"pid {os.getpid()}" in res.stderr and str(out) in res.stderr
        assert not out.exists()
        # the other ranks of the same distributed run are not blocked: each holds its own rank's lock
        summary = run_embedding(screen, "handcrafted", out, num_workers=0, progress=False, rank=1, world_size=2)
        assert summary.plates_done >= 1 and summary.manifest is None


def test_two_embed_processes_with_other_settings_do_not_mix(tmp_path, screen):
    """Issue 17 item 4: the second run stops naming the first, the first finishes alone."""
    out = tmp_path / "handcrafted"
    first = start_paused(_args(screen, out), "cellmae.embed.writer:EmbeddingStore.mark_done", 1,
                         tmp_path / "paused")
    try:
        second = run_cli(_args(screen, out, "--site-level"))
        assert second.returncode == 2 and second.stderr.count("\n") == 1
        assert f"pid {first.pid}" in second.stderr and str(out) in second.stderr
    finally:
        first.kill()
        first.wait()
    res = CliRunner().invoke(app, _args(screen, out, "--site-level"))  # refused: the first run's settings stay
    assert res.exit_code == 2 and "other settings" in res.stderr
    assert CliRunner().invoke(app, _args(screen, out)).exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["level"] == "well"


def test_full_disk_during_embed_is_one_line_naming_the_output(tmp_path, screen):
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        out = disk / "handcrafted"
        (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 12 * 1024))
        res = CliRunner().invoke(app, _args(screen, out))
        assert res.exit_code == 2 and res.stderr.count("\n") == 1
        assert "disk is full" in res.stderr and str(out) in res.stderr
        assert not (out / "manifest.json").exists() and leftovers(out) == []
    finally:
        # lazy: the failed write's traceback (kept by CliRunner) may still hold a file open there
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_settings_record_is_created_once_and_every_writer_must_match(tmp_path, screen):
    out = tmp_path / "e"
    EmbeddingStore(out, {"pool": "cls"})
    with pytest.raises(InputError, match="other settings.*pool"):  # even before any plate finished
        EmbeddingStore(out, {"pool": "mean"})
    assert json.loads((out / "embed_config.json").read_text()) == {"pool": "cls"}
    # a run killed before its first plate, resumed with other settings: refused, not mixed
    hc = tmp_path / "handcrafted"
    run_killed(_args(screen, hc), "cellmae.embed.writer:EmbeddingStore.write_part", 1, "after")
    res = CliRunner().invoke(app, _args(screen, hc, "--site-level"))
    assert res.exit_code == 2 and "other settings" in res.stderr and "level" in res.stderr
    res = CliRunner().invoke(app, _args(screen, hc))
    assert res.exit_code == 0, res.stderr
    manifest = json.loads((hc / "manifest.json").read_text())
    assert manifest["settings"] == json.loads((hc / "embed_config.json").read_text())


def _broken_screen(tmp_path: Path, screen: Path) -> tuple[Path, Path]:
    copy = tmp_path / "screen"
    shutil.copytree(screen, copy)
    return copy, sorted(copy.rglob("*_w2.png"))[-1]  # a plane of the last plate


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_unreadable_plane_in_a_worker_is_one_line_naming_the_file(tmp_path, screen, damage):
    copy, png = _broken_screen(tmp_path, screen)
    if damage == "garbage":
        png.write_bytes(b"not a png at all")
    elif damage == "truncated":
        png.write_bytes(png.read_bytes()[:60])
    else:
        png.unlink()
    out = tmp_path / "out"
    args = ["embed", str(copy), "--model", "handcrafted", "--out", str(out), "--num-workers", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert png.name in res.stderr and str(png.parent) in res.stderr


def test_batch_size_zero_names_the_option(tmp_path, screen):
    res = CliRunner().invoke(app, ["embed", str(screen), "--model", "random-init:mae_vit_tiny_patch8_64",
                                   "--out", str(tmp_path / "o"), "--batch-size", "0", "--num-workers", "0"])
    assert res.exit_code == 2 and "--batch-size 0" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()
