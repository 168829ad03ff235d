"""Fault injection: a tiny screen on disk, the CLI run as a real process, and output comparison."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

# The checkout whose code the subprocesses run (CELLMAE_CODE: another checkout, to show a test fails there).
REPO = Path(os.environ.get("CELLMAE_CODE") or Path(__file__).resolve().parents[2])
# Options of every shards build here: 12 fields in 3 parts of 4, so kills land in, between and after parts.
BUILD_ARGS = ["--crop-size", "16", "--crops-per-field", "2", "--seed", "3", "--part-fields", "4"]


def write_rxrx_screen(root: Path, *, channels: int = 3, size: int = 40) -> Path:
    """6 wells x 2 sites of random uint8 PNGs in the RxRx layout, with channels.json."""
    rng = np.random.default_rng(0)
    rows = []
    for well in ("B02", "B03", "B04", "C02", "C03", "C04"):
        for site in (1, 2):
            rows.append({"well_id": f"E_1_{well}", "experiment": "E", "plate": 1, "well": well, "site": site,
                         "gene": "EMPTY" if well == "B02" else f"G{well}", "perturbation_type":
                         "CONTROL" if well == "B02" else "CRISPR",
                         "well_type": "negative_control" if well == "B02" else "treatment"})
            for k in range(1, channels + 1):
                path = root / "E" / "Plate1" / f"{well}_s{site}_w{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    (root / "channels.json").write_text(json.dumps({"channels": ["DNA", "ER", "Mito"][:channels]}))
    return root


@pytest.fixture(scope="module")
def screen_dir(tmp_path_factory) -> Path:
    return write_rxrx_screen(tmp_path_factory.mktemp("screen") / "screen")


def cellmae(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``cellmae ARGS`` in a fresh process running this checkout's code (at the caller's terminal width)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("CELLMAE_FAULT_KILL", None) if "CELLMAE_FAULT_KILL" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "cellmae.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=str(REPO))


def _content(path: Path) -> bytes:
    if path.name == "index.json":  # LitData stamps its index with the writing time; everything else is content
        index = json.loads(path.read_text())
        index.pop("updated_at", None)
        return json.dumps(index, sort_keys=True).encode()
    return path.read_bytes()


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except the manifest (it holds a timestamp)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(_content(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def leftovers(out: Path) -> list[str]:
    """What a writer of ``out`` may leave beside it: temp folders, replaced copies, the resumable parts."""
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name.startswith(f".{out.name}.") and not p.name.endswith((".lock", ".lock.holder")))
