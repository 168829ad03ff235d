"""Kill -9 mid-run, rerun: the final output equals an uninterrupted run, no well missing or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

from cellmae.data.schema import WELL_KEYS, feature_columns
from cellmae.embed import read_embeddings, run_embedding
from cellmae.models import create_model, save_pretrained

from .conftest import write_rxrx_screen

PLATES = 5


def test_killed_run_resumes_to_identical_output(tmp_path):
    screen = write_rxrx_screen(tmp_path / "screen", plates=PLATES, wells=2, sites=2, size=64, seed=3)
    torch.manual_seed(0)
    ckpt = save_pretrained(create_model("camae_vit_tiny_patch8_64", depth=2, decoder_depth=1), tmp_path / "ckpt")
    out = tmp_path / "embed" / "camae"
    # batch size is not part of the output's settings: the in-process runs use bigger batches
    opts = {"blocks": "1,2", "precision": "fp32", "batch_size": 16, "num_workers": 0}
    cmd = [sys.executable, "-m", "cellmae.cli", "embed", str(screen), "--model", str(ckpt), "--out", str(out),
           "--blocks", "1,2", "--precision", "fp32", "--batch-size", "1", "--num-workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
    progress = out / "_progress"
    deadline = time.monotonic() + 120
    try:
        while not (progress.is_dir() and any(progress.glob("*.json"))):
            assert proc.poll() is None, f"embed exited early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no plate finished within 120 s"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_at_kill = len(list(progress.glob("*.json")))
    assert 1 <= done_at_kill < PLATES, "the kill must land mid-run for this test to mean anything"
    assert not (out / "manifest.json").exists()

    rerun = run_embedding(screen, str(ckpt), out, progress=False, **opts)
    assert rerun.plates_skipped >= done_at_kill and rerun.plates_done == PLATES - rerun.plates_skipped
    assert (out / "manifest.json").exists()

    reference = run_embedding(screen, str(ckpt), tmp_path / "reference", progress=False, **opts)
    assert reference.wells == 2 * PLATES
    for block in ("block01", "block02"):
        got, ref = read_embeddings(out / block), read_embeddings(tmp_path / "reference" / block)
        assert not got.duplicated(list(WELL_KEYS)).any() and len(got) == len(ref) == 2 * PLATES
        pd.testing.assert_frame_equal(got.drop(columns=feature_columns(got)), ref.drop(columns=feature_columns(ref)))
        np.testing.assert_allclose(got[feature_columns(got)].to_numpy(), ref[feature_columns(ref)].to_numpy(),
                                   rtol=1e-5, atol=1e-6)
        # a plain directory read sees exactly the same rows (no stray temporaries from the kill)
        assert len(pd.read_parquet(out / block)) == 2 * PLATES
