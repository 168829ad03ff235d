"""Learning-rate schedules per optimizer step: linear warm-up + cosine, one-cycle, constant.

Warm-up + cosine is a ``LambdaLR`` with the MAE recipe's closed form (facebookresearch/mae
``util/lr_sched.py``): torch's ``SequentialLR(LinearLR, CosineAnnealingLR)`` cannot start from 0
and emits warnings on resume. One-cycle is torch's ``OneCycleLR``.
"""

from __future__ import annotations

import math

import torch

from cellmae.train.config import ScheduleConfig


def warmup_steps_for(cfg: ScheduleConfig, total_steps: int) -> int:
    """Warm-up length in steps (explicit steps win over the fraction), never above total - 1."""
    steps = cfg.warmup_steps if cfg.warmup_steps is not None else int(round(cfg.warmup_fraction * total_steps))
    return max(0, min(steps, max(total_steps - 1, 0)))


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer ``step`` (0-based) for warm-up + cosine."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                     total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The configured schedule over ``total_steps`` optimizer steps (stepped once per step)."""
    if total_steps < 1:
        raise ValueError(f"schedule: total_steps must be >= 1, got {total_steps}")
    warmup = warmup_steps_for(cfg, total_steps)
    if cfg.name == "cosine":
        def factor(step: int) -> float:
            return lr_factor(step, total_steps=total_steps, warmup_steps=warmup, min_lr_ratio=cfg.min_lr_ratio)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.name == "constant":
        def factor_const(step: int) -> float:
            return (step + 1) / warmup if warmup and step < warmup else 1.0

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor_const)
    if cfg.name == "onecycle":
        peak = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak, total_steps=total_steps, pct_start=max(warmup / total_steps, 1e-6),
            div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor, anneal_strategy="cos",
            cycle_momentum=False,  # keep the configured betas (Lion/AdamW), change only the lr
        )
    raise ValueError(f"schedule.name: unknown schedule {cfg.name!r}; expected cosine, onecycle or constant")
