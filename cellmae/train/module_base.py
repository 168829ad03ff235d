"""What every cellmae LightningModule shares: optimizer + schedule, per-step seeding, NaN/inf guard.

Subclasses implement ``compute_loss(batch) -> (loss, extra_metrics)``; the model itself comes from
``cellmae.models`` (this package never reimplements model code).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from cellmae.data import schema
from cellmae.layout import TRAIN_LAST_CHECKPOINT
from cellmae.train.config import TrainConfig
from cellmae.train.optim import create_optimizer, effective_lr, no_decay_parameter_names, param_groups
from cellmae.train.schedules import create_scheduler


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the message names the step, the batch and the saved checkpoint."""


def step_seed(seed: int, batch_counter: int, rank: int) -> int:
    """A 63-bit seed for one micro-batch on one rank, a pure function of (seed, batch, rank).

    Reseeding torch from it every step makes masks, drop path and dropout identical after a resume
    without saving per-rank generator states (which Lightning's rank-0 checkpoint cannot hold).
    """
    return int(np.random.SeedSequence([seed, batch_counter, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def batch_channels(batch: dict[str, Any]) -> tuple[str, ...] | None:
    """Channel names of a collated batch, whatever shape collation gave them (shared by all crops)."""
    ch = batch.get("channels")
    if ch is None:
        return None
    if isinstance(ch, str):
        return tuple(ch.split(","))
    ch = list(ch)
    if ch and all(isinstance(c, str) for c in ch):
        return tuple(ch)
    # default_collate of per-sample lists gives one list per channel position, each of batch size
    if ch and all(isinstance(c, (list, tuple)) for c in ch):
        return tuple(c[0] for c in ch)
    raise ValueError(f"batch['channels'] has an unexpected form: {ch!r:.200}")


def describe_batch(batch: dict[str, Any], limit: int = 4) -> str:
    """Which crops a batch holds (plate/well/site of the first few), for error messages."""
    keys = [k for k in (schema.EXPERIMENT, schema.PLATE, schema.WELL, schema.SITE) if k in batch]
    if not keys:
        return "no well metadata in the batch"
    n = len(batch[keys[0]])
    items = []
    for i in range(min(n, limit)):
        items.append("/".join(str(_item(batch[k], i)) for k in keys))
    more = f" and {n - limit} more" if n > limit else ""
    return f"crops {', '.join(items)}{more} ({'/'.join(k.removeprefix('Metadata_') for k in keys)})"


def _item(values: Any, i: int) -> Any:
    v = values[i]
    return v.item() if isinstance(v, torch.Tensor) else v


class TrainModule(pl.LightningModule):
    """Base module: holds ``self.model``, builds AdamW/Lion + schedule, seeds and guards each step."""

    def __init__(self, cfg: TrainConfig, model: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.model = model
        # Plain dict: checkpoints stay loadable with torch.load(weights_only=True).
        self.save_hyperparameters({"train_config": cfg.to_dict()})
        # Decided on the unwrapped model (FSDP flattens parameters into 1-D shards later).
        self._no_decay = no_decay_parameter_names(model)

    # ------------------------------------------------------------------ subclass API
    def compute_loss(self, batch: dict[str, Any], seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        counter = self.trainer.fit_loop.epoch_loop.total_batch_idx
        seed = step_seed(self.cfg.seed, counter, self.global_rank)
        torch.manual_seed(seed)  # drop path / dropout draw the same numbers after a resume
        loss, extra = self.compute_loss(batch, seed)
        losses = self.all_gather(loss.detach().float()).reshape(-1)  # one collective: NaN flag + logged mean
        if not torch.isfinite(losses).all():
            self._stop_on_nonfinite(losses, batch, batch_idx)
        crops = int(batch["image"].shape[0]) * self.trainer.world_size
        self.log("loss", losses.mean(), prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True,
                 batch_size=batch["image"].shape[0])
        for k, v in extra.items():
            self.log(k, v, on_step=True, on_epoch=False, batch_size=batch["image"].shape[0])
        return {"loss": loss, "loss_all_ranks": losses.mean(), "crops_all_ranks": crops,
                "extra_metrics": {k: float(v) for k, v in extra.items()}}

    def _stop_on_nonfinite(self, losses: torch.Tensor, batch: dict[str, Any], batch_idx: int) -> None:
        """Save the pre-step state as checkpoints/last.ckpt and stop with the step and batch named."""
        step = self.global_step + 1
        saved = ""
        ckpt_cb = self.trainer.checkpoint_callback
        if ckpt_cb is not None and getattr(ckpt_cb, "dirpath", None):
            path = Path(ckpt_cb.dirpath) / TRAIN_LAST_CHECKPOINT
            # The optimizer has not stepped yet: these weights are the last good ones.
            self.trainer.save_checkpoint(path, weights_only=False)
            saved = f" The last good state (weights before this step) was saved to {path}; --resume continues " \
                    f"from it with the next batch. Consider a lower optim.lr, optim.grad_clip or trainer.precision=fp32."
        per_rank = ", ".join(f"rank {r}: {v:.4g}" for r, v in enumerate(losses.tolist()))
        raise NonFiniteLossError(
            f"non-finite loss at optimizer step {step} (epoch {self.current_epoch}, batch {batch_idx} of the epoch; "
            f"{per_rank}); this rank's batch: {describe_batch(batch)}.{saved}"
        )

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.trainer
        global_batch = self.cfg.data.batch_size * t.world_size * self.cfg.optim.accumulate_grad_batches
        lr = effective_lr(self.cfg.optim, global_batch)
        groups = param_groups(self.named_parameters(), {f"model.{n}" for n in self._no_decay}, self.cfg.optim.weight_decay)
        optimizer = create_optimizer(groups, self.cfg.optim, lr)
        total = t.estimated_stepping_batches
        if total == float("inf"):
            if self.cfg.schedule.name != "constant":
                raise ValueError(f"schedule.name={self.cfg.schedule.name!r} needs a known length: set "
                                 "trainer.max_steps or trainer.max_epochs (or use schedule.name=constant)")
            total = 1 << 62
        scheduler = create_scheduler(optimizer, self.cfg.schedule, int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.global_step % self.cfg.trainer.log_every_n_steps == 0:
            norms = [p.grad.detach().float().norm() for p in self.parameters() if p.grad is not None]
            if norms:
                self.log("grad_norm", torch.stack(norms).norm(), on_step=True, on_epoch=False)


def images_and_channels(batch: dict[str, Any]) -> tuple[torch.Tensor, Sequence[str] | None]:
    """The image tensor and channel names of a data-layer batch, with a clear error when malformed."""
    if "image" not in batch:
        raise KeyError(f"batch has no 'image' entry (keys: {sorted(batch)}); is this a cellmae shard folder?")
    return batch["image"], batch_channels(batch)
