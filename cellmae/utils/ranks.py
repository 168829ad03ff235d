"""Which process of a multi-process job this is, from the launcher's environment.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; SLURM sets SLURM_PROCID / SLURM_NTASKS /
SLURM_LOCALID / SLURM_NTASKS_PER_NODE; Lightning's own launcher starts its extra processes with only
LOCAL_RANK set. Embedding splits plates by rank; building shards before training lets rank 0 work
while the others wait.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RankInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1


def rank_info(env: Mapping[str, str] | None = None) -> RankInfo:
    """This process's rank from torchrun or SLURM variables, or from Lightning's LOCAL_RANK alone (one
    machine); a single process when none is set."""
    env = os.environ if env is None else env
    for r, w, lr, lw in (
        ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ):
        if r in env and w in env:
            world = int(env[w])
            local_world = int(str(env.get(lw, world)).split("(")[0])
            info = RankInfo(int(env[r]), world, int(env.get(lr, 0)), local_world)
            if not 0 <= info.rank < info.world_size:
                raise ValueError(f"rank {info.rank} is outside world size {info.world_size} ({r}/{w})")
            return info
    if str(env.get("LOCAL_RANK", "")).isdigit():
        local = int(env["LOCAL_RANK"])
        world = int(env.get("WORLD_SIZE", local + 1))
        return RankInfo(local, world, local, world)
    return RankInfo()
