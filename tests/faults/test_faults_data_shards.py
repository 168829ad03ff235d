"""``kill -9`` anywhere in ``cellmae shards build``, then the same command again: the output is the
uninterrupted run's, byte for byte, and nothing is left beside it. A full disk: one line, exit 2."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellmae.utils.manifest import read_manifest

from .conftest import BUILD_ARGS, REPO, cellmae, file_digests, leftovers


@pytest.fixture(scope="module")
def reference(screen_dir: Path, tmp_path_factory) -> tuple[dict[str, str], float]:
    """Digests of an uninterrupted build, and how long it took."""
    out = tmp_path_factory.mktemp("reference") / "shards"
    t0 = time.monotonic()
    res = cellmae("shards", "build", str(screen_dir), "--out", str(out), *BUILD_ARGS)
    assert res.returncode == 0, res.stderr
    return file_digests(out), time.monotonic() - t0


def _build(screen_dir: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return cellmae("shards", "build", str(screen_dir), "--out", str(out), *BUILD_ARGS, *extra, env=env)


def _assert_complete_like(out: Path, reference) -> None:
    read_manifest(out, "shards", rerun="-", deep=True)
    assert file_digests(out) == reference[0]
    assert leftovers(out) == []


# Named points in cellmae.data.shards: after a field (mid-part), after a part's commit, in the merge
# (files linked, no manifest yet), after the manifest (before the rename), after the rename.
@pytest.mark.parametrize("point,workers", [("field:6", "0"), ("field:3", "2"), ("part:1", "0"), ("merge", "0"),
                                           ("commit", "0"), ("committed", "0")])
def test_kill_at_each_stage_then_rerun_gives_the_uninterrupted_output(point, workers, screen_dir, reference,
                                                                      tmp_path) -> None:
    out = tmp_path / "shards"
    killed = _build(screen_dir, out, "--workers", workers, env={"CELLMAE_FAULT_KILL": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert point == "committed" or not out.exists()
    rerun = _build(screen_dir, out, "--workers", workers)
    assert rerun.returncode == 0, rerun.stderr
    _assert_complete_like(out, reference)


def test_kill_at_random_times_then_rerun_gives_the_uninterrupted_output(screen_dir, reference, tmp_path) -> None:
    rng = random.Random(17)  # fixed kill times (as fractions of the measured build time)
    for k in range(2):
        out = tmp_path / f"shards{k}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("CELLMAE_FAULT_KILL", None)
        proc = subprocess.Popen([sys.executable, "-m", "cellmae.cli", "shards", "build", str(screen_dir), "--out",
                                 str(out), *BUILD_ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * reference[1])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        rerun = _build(screen_dir, out)
        assert rerun.returncode == 0, rerun.stderr
        _assert_complete_like(out, reference)


def test_a_failed_single_part_merge_is_resumed_by_a_plain_rerun(screen_dir, tmp_path, monkeypatch) -> None:
    """Issue 17 item 5: the merge used to move the part's files into the temp folder it then deleted."""
    import errno

    from cellmae.data import shards
    from cellmae.data.readers import open_screen

    opts = {"crop_size": 16, "crops_per_field": 2, "seed": 3, "progress": False}  # one part of 12 fields
    real = Path.write_text

    def disk_full_in_the_merge(self, *args, **kwargs):
        if self.name == shards.INFO_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_in_the_merge)
    with pytest.raises(OSError, match="No space left"):
        shards.build_shards(open_screen(screen_dir), tmp_path / "out", **opts)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(Path, "write_text", real)
    shards.build_shards(open_screen(screen_dir), tmp_path / "out", **opts)  # no --no-resume needed
    shards.build_shards(open_screen(screen_dir), tmp_path / "fresh", **opts)
    assert file_digests(tmp_path / "out") == file_digests(tmp_path / "fresh")
    assert leftovers(tmp_path / "out") == []


def test_a_stale_temp_folder_of_a_killed_merge_is_removed_by_the_rerun(screen_dir, reference, tmp_path) -> None:
    """Issue 17 item 11: `.OUT.*.tmp` folders of killed merges used to stay forever."""
    out = tmp_path / "shards[b]"  # brackets: neither a glob pattern nor rich markup
    stale = tmp_path / ".shards[b].k3j2h.tmp"
    stale.mkdir()
    (stale / "chunk-0-0.bin").write_bytes(b"half")
    res = _build(screen_dir, out)
    assert res.returncode == 0, res.stderr
    assert not stale.exists()
    _assert_complete_like(out, reference)


def test_a_full_disk_is_one_line_exit_2_and_leaves_no_output(screen_dir, tmp_path) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs as a full disk")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        out = disk / "shards"
        res = _build(screen_dir, out, "--crop-size", "32", "--crops-per-field", "4")
        assert res.returncode == 2, res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last == f"error: {out}: the disk is full: free space or write to another --out"
        assert not out.exists()
        # only the one-writer lock and the resumable parts folder (reused once there is space) remain
        assert leftovers(out) in ([], [".shards.partial"])
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_killed_worker_is_one_line_and_the_rerun_completes(screen_dir, reference, tmp_path) -> None:
    out = tmp_path / "shards"
    res = _build(screen_dir, out, "--workers", "2", env={"CELLMAE_FAULT_KILL": "worker-field:2"})
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {screen_dir / 'metadata.csv'}: a --workers process died while decoding fields")
    assert "rerun the same command" in last and not out.exists()
    rerun = _build(screen_dir, out, "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    _assert_complete_like(out, reference)


def test_a_second_writer_is_refused_naming_the_holder(screen_dir, tmp_path) -> None:
    from cellmae.utils.manifest import output_lock

    out = tmp_path / "shards"
    with output_lock(out):  # this process is writing `out`
        res = _build(screen_dir, out)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {out} is being written by another cellmae process (pid {os.getpid()} ")
    assert not out.exists()
