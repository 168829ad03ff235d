"""Two-process CPU DDP (gloo), launched by Lightning from the `cellmae train` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import set_options, tiny_overrides


@pytest.mark.slow
def test_two_process_cpu_ddp_splits_the_shards_per_rank(sim_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    overrides = tiny_overrides(**{"trainer.strategy": "ddp", "trainer.devices": 2, "trainer.accelerator": "cpu",
                                  "trainer.max_epochs": 1, "trainer.max_steps": -1, "checkpoint.every_n_steps": 4})
    cmd = [sys.executable, "-m", "cellmae.cli", "train", str(sim_shards), "--out", str(out), "--config", "tiny-camae",
           *set_options(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    crops = json.loads((sim_shards / "cellmae_shards.json").read_text())["crops_written"]
    expected_steps = crops // (2 * 8)  # each rank streams its half of the shards in one epoch
    m = pd.read_csv(out / "metrics.csv")
    assert m["step"].tolist() == list(range(1, expected_steps + 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["crops_seen"] == expected_steps * 16
    assert m["loss"].tail(3).mean() < m["loss"].head(3).mean()
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert proc.stdout.count("trained model written") == 1  # rank 0 reports once
