"""Trainer construction: strategy (auto / DDP / FSDP), devices, nodes, precision, loggers, callbacks.

Multi-process launch is Lightning's: run the same command under ``torchrun`` (TorchElastic env) or
``srun`` inside an ``sbatch`` job (SLURM env) and Lightning reads rank, world size and master address
from the environment; with neither, ``trainer.strategy=ddp trainer.devices=N`` makes Lightning start
the N processes itself. See docs/train.md for the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from torch import nn

from cellmae.layout import TRAIN_CHECKPOINT_DIR, TRAIN_METRICS_FILE, TRAIN_RECON_DIR
from cellmae.train.callbacks import MetricsCSV, ReconstructionFigures, RunProgressBar
from cellmae.train.checkpointing import AtomicCheckpointIO
from cellmae.train.config import TrainConfig
from cellmae.utils.device import lightning_precision


def transformer_block_classes(model: nn.Module) -> set[type[nn.Module]]:
    """Classes of the repeated blocks (timm ``Block`` / ``ParallelScalingBlock`` ...) to wrap or checkpoint."""
    from timm.models.vision_transformer import Block, ParallelScalingBlock

    found = {type(m) for m in model.modules() if isinstance(m, (Block, ParallelScalingBlock))}
    return found


def enable_grad_checkpointing(model: nn.Module) -> None:
    """Recompute activations of each block in backward: timm's ``set_grad_checkpointing`` when the model
    has it, else torch's ``apply_activation_checkpointing`` around every transformer block (its wrapper
    strips its own prefix from state-dict keys, so checkpoints and save_pretrained are unchanged)."""
    if callable(getattr(model, "set_grad_checkpointing", None)):
        model.set_grad_checkpointing(True)
        return
    blocks = transformer_block_classes(model)
    if not blocks:
        inner = [m for m in model.modules() if m is not model and callable(getattr(m, "set_grad_checkpointing", None))]
        if not inner:
            raise ValueError(f"model.grad_checkpointing: {type(model).__name__} has no transformer blocks and no "
                             "set_grad_checkpointing(); turn the option off for this model")
        for m in inner:
            m.set_grad_checkpointing(True)
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        apply_activation_checkpointing,
        checkpoint_wrapper,
    )

    def wrapper(m: nn.Module) -> nn.Module:
        return checkpoint_wrapper(m, checkpoint_impl=CheckpointImpl.NO_REENTRANT)

    apply_activation_checkpointing(model, checkpoint_wrapper_fn=wrapper,
                                   check_fn=lambda m: isinstance(m, tuple(blocks)))


def accelerator_device(cfg: TrainConfig) -> torch.device:
    """The device kind the run will use (for the precision choice)."""
    acc = cfg.trainer.accelerator
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def build_strategy(cfg: TrainConfig, model: nn.Module) -> Any:
    """Lightning strategy object (or name) for ``trainer.strategy``."""
    s = cfg.trainer.strategy
    if s == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=cfg.trainer.find_unused_parameters)
    if s == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        blocks = transformer_block_classes(model)
        if not blocks:
            raise ValueError(f"trainer.strategy=fsdp: {type(model).__name__} has no transformer blocks to shard; "
                             "use trainer.strategy=ddp")
        return FSDPStrategy(
            auto_wrap_policy=blocks,
            activation_checkpointing_policy=blocks if cfg.model.grad_checkpointing else None,
            state_dict_type="full",  # one rank-0 file, written through AtomicCheckpointIO
            use_orig_params=True,
        )
    if s == "single":
        return "auto"
    return s


def build_callbacks(cfg: TrainConfig, out_dir: Path, extra: list[Callback] = ()) -> tuple[list[Callback], MetricsCSV]:
    c = cfg.checkpoint
    from datetime import timedelta

    checkpoint = ModelCheckpoint(
        dirpath=out_dir / TRAIN_CHECKPOINT_DIR,
        filename="step{step:06d}",
        auto_insert_metric_name=False,
        every_n_train_steps=c.every_n_steps if c.every_n_minutes is None else None,
        train_time_interval=timedelta(minutes=c.every_n_minutes) if c.every_n_minutes else None,
        save_last=True,
        save_top_k=c.keep_last,
        monitor="step",
        mode="max",
        save_on_train_epoch_end=False,
    )
    metrics = MetricsCSV(out_dir / TRAIN_METRICS_FILE, extra_columns=("accuracy",) if cfg.task == "wsl" else ("mse", "fourier"))
    callbacks: list[Callback] = [checkpoint, metrics]
    if cfg.trainer.progress_bar:
        callbacks.append(RunProgressBar(metrics, leave=True))
    if cfg.logging.recon_every_n_steps > 0 and cfg.task == "mae":
        callbacks.append(ReconstructionFigures(out_dir / TRAIN_RECON_DIR, cfg.logging.recon_every_n_steps,
                                               cfg.logging.recon_num_images))
    if cfg.logging.tensorboard or cfg.logging.wandb:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    callbacks.extend(extra)
    return callbacks, metrics


def build_loggers(cfg: TrainConfig, out_dir: Path) -> list[Any]:
    loggers: list[Any] = []
    if cfg.logging.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir), name="tensorboard", version="", default_hp_metric=False))
    if cfg.logging.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError("logging.wandb=true needs the wandb package: pip install 'cellmae[wandb]'") from None
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=cfg.logging.wandb_project, save_dir=str(out_dir), name=out_dir.name))
    return loggers


def build_trainer(cfg: TrainConfig, out_dir: str | Path, model: nn.Module,
                  extra_callbacks: list[Callback] = ()) -> tuple[pl.Trainer, MetricsCSV]:
    """The Lightning Trainer for ``cfg`` writing into ``out_dir``; also returns the metrics callback."""
    out_dir = Path(out_dir)
    t = cfg.trainer
    callbacks, metrics = build_callbacks(cfg, out_dir, list(extra_callbacks))
    max_epochs = t.max_epochs if t.max_epochs is not None else -1  # -1: let max_steps / max_time stop the run
    trainer = pl.Trainer(
        accelerator="gpu" if t.accelerator == "cuda" else t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=build_strategy(cfg, model),
        precision=lightning_precision(accelerator_device(cfg), t.precision),
        max_steps=t.max_steps,
        max_epochs=max_epochs,
        max_time=t.max_time,
        gradient_clip_val=cfg.optim.grad_clip,
        gradient_clip_algorithm="norm",
        accumulate_grad_batches=cfg.optim.accumulate_grad_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=t.progress_bar,
        deterministic=t.deterministic,
        callbacks=callbacks,
        logger=build_loggers(cfg, out_dir) or False,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # LitData splits the stream per rank itself
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(out_dir),
    )
    return trainer, metrics
