"""Issue 17 item 7: worker processes die with their parent, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import BUILD_ARGS, REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")


def _tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment holds ``tag`` (workers inherit it from the parent)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if tag.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie has exited; it only waits to be reaped
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _gone_within(tag: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _run_and_kill_itself(args: list[str], tag: str, env_extra: dict, tmp_path: Path) -> int:
    """Run ``python ARGS`` (it ends by killing itself) with output to a file, not a pipe: a surviving
    worker would hold a pipe open and stall the test instead of failing it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CELLMAE_TEST_TAG": tag, **env_extra}
    with open(tmp_path / "log.txt", "w") as log:
        return subprocess.run([sys.executable, *args], env=env, stdout=log, stderr=log, timeout=120).returncode


def test_shards_build_workers_die_when_the_build_is_killed(screen_dir, tmp_path) -> None:
    tag = uuid.uuid4().hex
    rc = _run_and_kill_itself(["-m", "cellmae.cli", "shards", "build", str(screen_dir), "--out", str(tmp_path / "s"),
                               *BUILD_ARGS, "--workers", "2"], tag, {"CELLMAE_FAULT_KILL": "field:2"}, tmp_path)
    assert rc == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
    leftover = _gone_within(f"CELLMAE_TEST_TAG={tag}", 3.0)
    for pid in leftover:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], f"{len(leftover)} worker(s) outlived the killed build"


# The pattern of embed's and training's loaders: workers busy in a slow item (a large field) when the
# parent dies. torch's own watchdog only looks at the parent between items.
SCRIPT = """
import os, signal, time
import torch
from cellmae.data.workers import worker_init_fn

class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        if i > 0:
            time.sleep(60)
        return i

it = iter(torch.utils.data.DataLoader(Slow(), num_workers=2, worker_init_fn=worker_init_fn()))
next(it)
time.sleep(0.5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_dataloader_workers_die_when_their_process_is_killed(tmp_path) -> None:
    tag = uuid.uuid4().hex
    rc = _run_and_kill_itself(["-c", SCRIPT], tag, {}, tmp_path)
    assert rc == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
    leftover = _gone_within(f"CELLMAE_TEST_TAG={tag}", 3.0)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], f"{len(leftover)} dataloader worker(s) outlived the killed process"


def test_stage_loaders_use_the_parent_death_init(tmp_path) -> None:
    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards, shard_dataloader
    from cellmae.data.workers import _init_loader_worker

    from .conftest import write_rxrx_screen

    screen = open_screen(write_rxrx_screen(tmp_path / "screen"))
    build_shards(screen, tmp_path / "s", crop_size=16, crops_per_field=1, progress=False)
    loader = shard_dataloader(tmp_path / "s", batch_size=2, num_workers=1)
    assert loader.worker_init_fn.func is _init_loader_worker
