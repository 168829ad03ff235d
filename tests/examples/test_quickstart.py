"""examples/quickstart.py (screen -> model -> embed -> map -> bench through the Python API) runs as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_runs_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py"), str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "96 fields" in out and "(1, 192)" in out and "(48, 200)" in out and "16 perturbation profiles" in out
    assert "recall relationships" in out and "compound-gene" in out
    for stage in ("model/README.md", "embed/tiny/manifest.json", "map/tiny/map.json", "bench/tiny/summary.json"):
        assert (tmp_path / "work" / stage).is_file(), stage
