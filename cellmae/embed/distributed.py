"""Many processes, many GPUs: split a screen's plates across ranks; each rank writes its own parts.

Featurization needs no gradient exchange, so ranks do not talk to each other: each takes a
deterministic, size-balanced share of the plates and writes those plates' part files; the
manifest is rebuilt from the per-plate progress markers by whichever rank finishes last. Ranks
come from the launcher's environment (torchrun: RANK / WORLD_SIZE / LOCAL_RANK; SLURM:
SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID), or from ``launch_local`` on one machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cellmae.utils.ranks import RankInfo, rank_info

__all__ = ["RankInfo", "device_for_rank", "launch_local", "plates_for_rank", "rank_info"]


def plates_for_rank(plate_sizes: Mapping[str, int], rank: int, world_size: int) -> list[str]:
    """The plates rank ``rank`` featurizes: greedy longest-first balancing of site counts.

    Deterministic (ties broken by plate id), so every rank computes the same split without
    communicating, and every plate belongs to exactly one rank.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    loads = [0] * world_size
    owner: dict[str, int] = {}
    for pid in sorted(plate_sizes, key=lambda p: (-plate_sizes[p], p)):
        r = min(range(world_size), key=lambda k: (loads[k], k))
        owner[pid] = r
        loads[r] += plate_sizes[pid]
    return sorted(p for p, r in owner.items() if r == rank)


def device_for_rank(preference: str, info: RankInfo) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when several ranks share a CUDA machine."""
    from cellmae.utils.device import select_device

    device = select_device(preference)
    if device.type == "cuda" and device.index is None and info.local_world_size > 1:
        device = torch.device("cuda", info.local_rank % max(1, torch.cuda.device_count()))
    return device


def _local_worker(rank: int, world_size: int, fn: Callable[..., Any], kwargs: dict) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world_size)}
    )
    # CPU ranks on one machine share its cores; oversubscribing threads slows every rank down.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    fn(**kwargs, rank=rank, world_size=world_size, progress=rank == 0)


def launch_local(fn: Callable[..., Any], kwargs: dict, processes: int) -> None:
    """Run ``fn(**kwargs, rank=r, world_size=processes)`` in ``processes`` spawned processes."""
    import torch.multiprocessing as mp

    mp.start_processes(_local_worker, args=(processes, fn, kwargs), nprocs=processes, join=True, start_method="spawn")
