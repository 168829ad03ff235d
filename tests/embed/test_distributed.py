"""Ranks split plates deterministically and their part files add up to a single-process run."""

from __future__ import annotations

import numpy as np
import pytest

from cellmae.data.schema import feature_columns
from cellmae.embed import read_embeddings, run_embedding
from cellmae.embed.distributed import plates_for_rank, rank_info


def test_plates_for_rank_partitions_and_balances():
    sizes = {f"P{i}": s for i, s in enumerate([40, 10, 30, 20, 25, 5, 35])}
    shares = [plates_for_rank(sizes, r, 3) for r in range(3)]
    flat = [p for s in shares for p in s]
    assert sorted(flat) == sorted(sizes) and len(flat) == len(set(flat))
    loads = [sum(sizes[p] for p in s) for s in shares]
    assert max(loads) - min(loads) <= max(sizes.values()) / 2
    assert shares == [plates_for_rank(sizes, r, 3) for r in range(3)]  # deterministic
    assert plates_for_rank(sizes, 0, 1) == sorted(sizes)
    with pytest.raises(ValueError, match="outside world size"):
        plates_for_rank(sizes, 3, 3)


def test_rank_info_from_torchrun_and_slurm():
    assert rank_info({}).world_size == 1
    info = rank_info({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (3, 8, 1, 4)
    info = rank_info({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2(x3)"})
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (5, 6, 1, 2)


def test_two_ranks_write_their_shares_and_match_one_process(small_screen, camae4, tmp_path):
    opts = {"blocks": [2], "precision": "fp32", "num_workers": 0, "progress": False}
    r0 = run_embedding(small_screen, camae4, tmp_path / "ddp", rank=0, world_size=2, **opts)
    assert r0.plates_done == 1 and r0.manifest is None  # rank 1's plate is not there yet
    r1 = run_embedding(small_screen, camae4, tmp_path / "ddp", rank=1, world_size=2, **opts)
    assert r1.plates_done == 1 and r1.manifest is not None
    run_embedding(small_screen, camae4, tmp_path / "single", **opts)
    a, b = read_embeddings(tmp_path / "ddp" / "block02"), read_embeddings(tmp_path / "single" / "block02")
    np.testing.assert_allclose(a[feature_columns(a)].to_numpy(), b[feature_columns(b)].to_numpy(), rtol=1e-5, atol=1e-6)
    assert list(a["Metadata_Well"]) == list(b["Metadata_Well"])


def test_overwrite_with_several_ranks_is_refused(small_screen, camae4, tmp_path):
    with pytest.raises(ValueError, match="unsafe"):
        run_embedding(small_screen, camae4, tmp_path / "o", blocks=[1], rank=0, world_size=2, overwrite=True,
                      num_workers=0, progress=False)
