"""Fault injection for the embed -> map -> bench -> report side: run a `cellmae` command in a
subprocess that SIGKILLs itself at a named point, then check what the next run does.

A kill point is ``module:attribute`` (a function or a method looked up at call time), the call
number and ``before`` or ``after`` that call: deterministic, unlike a kill after a random delay,
so every test kills exactly where it says. No test function lives here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]

_RUNNER = r"""
import importlib, os, signal, sys
spec, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
module, attr = spec.split(":")
owner = importlib.import_module(module)
*parents, name = attr.split(".")
for p in parents:
    owner = getattr(owner, p)
original = getattr(owner, name)
calls = 0
def killing(*args, **kwargs):
    global calls
    calls += 1
    if calls == nth and when == "pause":  # hold everything (locks included) until killed
        open(os.environ["CELLMAE_TEST_PAUSED"], "w").close()
        while True:
            signal.pause()
    if calls == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    out = original(*args, **kwargs)
    if calls == nth and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return out
setattr(owner, name, killing)
from cellmae.cli import app
app(sys.argv[4:], prog_name="cellmae")
"""


def cli_env() -> dict[str, str]:
    """The environment of a subprocess that runs this checkout's code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "COLUMNS": "80"}


def run_killed(args: list[str], point: str, nth: int = 1, when: str = "before") -> subprocess.CompletedProcess:
    """Run ``cellmae ARGS`` and SIGKILL it at call ``nth`` of ``point``; assert that it was killed there."""
    res = subprocess.run([sys.executable, "-c", _RUNNER, point, str(nth), when, *args], env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, (
        f"expected a kill at {point} call {nth} ({when}); exit {res.returncode}: {res.stderr[-2000:]}")
    return res


def start_paused(args: list[str], point: str, nth: int, marker: Path) -> subprocess.Popen:
    """Start ``cellmae ARGS`` and wait until it stops at call ``nth`` of ``point`` (still running)."""
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, point, str(nth), "pause", *args],
                            env={**cli_env(), "CELLMAE_TEST_PAUSED": str(marker)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited before {point} call {nth}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"never reached {point} call {nth}"
        time.sleep(0.02)
    return proc


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``cellmae ARGS`` in a subprocess (for concurrent writers)."""
    return subprocess.run([sys.executable, "-m", "cellmae.cli", *args], env=cli_env(), capture_output=True,
                          text=True, timeout=300)


def manifest_files(folder: Path) -> dict:
    """The ``files`` of ``folder/manifest.json`` without the entries that hold timings."""
    files = json.loads((folder / "manifest.json").read_text())["files"]
    return {k: v for k, v in files.items() if k not in ("map.json", "summary.json")}


def leftovers(folder: Path) -> list[Path]:
    """Temporaries a killed writer could leave beside or inside ``folder``."""
    return sorted(p for p in folder.parent.rglob("*") if p.name.endswith(".tmp") or ".old-" in p.name)


def parquet_frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.relative_to(folder).as_posix(): pd.read_parquet(p) for p in sorted(folder.rglob("*.parquet"))
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)}
