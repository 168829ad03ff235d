"""A run killed with SIGKILL and resumed continues the uninterrupted run's loss curve exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from cellmae.train.run import run_training

from .conftest import tiny_overrides

STEPS, EVERY, KILL_AT = 10, 4, 7

KILL_SCRIPT = textwrap.dedent('''
    import json, os, signal, sys
    import lightning.pytorch as pl
    from cellmae.train.run import run_training

    class KillAt(pl.Callback):
        """SIGKILL this process right after optimizer step N: no cleanup, like an OOM kill or node loss."""
        def __init__(self, step):
            self.step = step
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

    shards, out, overrides, kill_at, resume = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    run_training("tiny-camae", shards, out, overrides=overrides, resume=resume,
                 callbacks=[KillAt(kill_at)] if kill_at > 0 else [])
''')


def _run(script: Path, shards: Path, out: Path, overrides: dict, kill_at: int, resume: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(shards), str(out), json.dumps(overrides), str(kill_at),
                           "1" if resume else "0"], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_sigkill_then_resume_continues_the_same_loss_curve(sim_shards: Path, tmp_path: Path) -> None:
    # Drop path on, so the per-step reseeding of torch's RNG is exercised too.
    overrides = tiny_overrides(**{"trainer.max_steps": STEPS, "checkpoint.every_n_steps": EVERY,
                                  "model.drop_path_rate": 0.1, "logging.recon_every_n_steps": 5})
    script = tmp_path / "train_kill.py"
    script.write_text(KILL_SCRIPT)

    ref = _run(script, sim_shards, tmp_path / "ref", overrides, 0, False)
    assert ref.returncode == 0, ref.stderr[-3000:]

    killed = _run(script, sim_shards, tmp_path / "run", overrides, KILL_AT, False)
    assert killed.returncode == -9, f"expected SIGKILL, got {killed.returncode}: {killed.stderr[-2000:]}"
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == EVERY  # killed between checkpoints: steps 5..7 must be redone
    assert not (tmp_path / "run" / "model.safetensors").exists()

    with pytest.raises(FileExistsError, match="--resume"):
        run_training("tiny-camae", sim_shards, tmp_path / "run", overrides=overrides)

    resumed = _run(script, sim_shards, tmp_path / "run", overrides, 0, True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = pd.read_csv(tmp_path / "ref" / "metrics.csv")
    b = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert a["step"].tolist() == list(range(1, STEPS + 1))
    assert b["step"].tolist() == list(range(1, STEPS + 1))  # rows of the redone steps replaced, not duplicated
    torch.testing.assert_close(torch.tensor(b["loss"].to_numpy()), torch.tensor(a["loss"].to_numpy()),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(b["lr"].to_numpy()), torch.tensor(a["lr"].to_numpy()))

    from safetensors.torch import load_file

    wa = load_file(tmp_path / "ref" / "model.safetensors")
    wb = load_file(tmp_path / "run" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-6, msg=k)
    assert (tmp_path / "run" / "recon" / "step_000010.png").is_file()


def test_resume_refuses_a_changed_config(sim_shards: Path, tmp_path: Path) -> None:
    from cellmae.train.config import ConfigError

    overrides = tiny_overrides(**{"trainer.max_steps": 2, "checkpoint.every_n_steps": 1})
    run_training("tiny-camae", sim_shards, tmp_path / "run", overrides=overrides)
    with pytest.raises(ConfigError, match="optim.lr"):
        run_training("tiny-camae", sim_shards, tmp_path / "run", overrides={**overrides, "optim.lr": 0.1},
                     resume=True)
    # Longer training is a resumable change: it continues from step 2.
    run_training("tiny-camae", sim_shards, tmp_path / "run", overrides={**overrides, "trainer.max_steps": 3},
                 resume=True)
    steps = pd.read_csv(tmp_path / "run" / "metrics.csv")["step"].tolist()
    assert steps == [1, 2, 3]
