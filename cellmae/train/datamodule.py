"""Training data: the data layer's LitData shards, split per rank, resumable mid-epoch.

``shard_dataloader`` returns a ``litdata.StreamingDataLoader``; Lightning's fit loop stores its
``state_dict()`` in every checkpoint and restores it on resume, so a resumed run continues with
the very next batch of the interrupted epoch.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from cellmae.data.shard_reader import (
    CROPS_FILE,
    read_crops_table,
    read_shard_info,
    shard_dataloader,
)
from cellmae.train.config import TrainConfig


class ShardDataModule(pl.LightningDataModule):
    """Train batches ``{"image": uint8 (B, C, H, W), "channels": [...], Metadata_...}`` from a shard set."""

    def __init__(self, shard_dir: str | Path, cfg: TrainConfig):
        super().__init__()
        self.shard_dir = Path(shard_dir)
        self.cfg = cfg
        self.info = read_shard_info(self.shard_dir)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.info["channels"])

    @property
    def crop_size(self) -> int:
        return int(self.info["crop_size"])

    @property
    def num_crops(self) -> int:
        return int(self.info["crops_written"])

    def classes(self, column: str) -> list[str]:
        """Sorted distinct values of ``column`` over all crops (the WSL label set)."""
        crops = read_crops_table(self.shard_dir)
        if column not in crops.columns:
            raise KeyError(f"{self.shard_dir / CROPS_FILE}: no column {column!r} for data.label_column "
                           f"(have: {', '.join(c for c in crops.columns if c.startswith('Metadata_'))})")
        return sorted(crops[column].astype(str).unique().tolist())

    def train_dataloader(self) -> Any:
        d = self.cfg.data
        kwargs: dict[str, Any] = {"persistent_workers": d.num_workers > 0}
        if int(os.environ.get("PL_SEED_WORKERS", 0)):
            # Lightning seeds workers only when a loader has no worker_init_fn, and ours has one (it ties
            # the workers to this process), so add Lightning's seeding to it.
            from lightning.fabric.utilities.seed import pl_worker_init_function

            rank = self.trainer.global_rank if self.trainer is not None else 0
            kwargs["worker_init_fn"] = functools.partial(pl_worker_init_function, rank=rank)
        return shard_dataloader(self.shard_dir, batch_size=d.batch_size, num_workers=d.num_workers,
                                shuffle=d.shuffle, seed=self.cfg.seed, drop_last=d.drop_last,
                                subsample=float(d.fraction), **kwargs)

    def preview_batch(self, n: int) -> dict[str, Any]:
        """The first ``n`` crops of the unshuffled shards as one batch (fixed reconstruction examples)."""
        loader = shard_dataloader(self.shard_dir, batch_size=n, num_workers=0, shuffle=False, seed=0)
        return next(iter(loader))
