"""The training config schema: a tree of small dataclasses with help texts and value checks.

Every field is declared with ``_opt(default, help, **checks)`` so that ``cellmae train --list-keys``
and the validator in ``config.py`` read one source of truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A training config is invalid; the message names the source (file or override) and the key."""


def _opt(default: Any, help: str = "", **checks: Any) -> Any:
    """A dataclass field with a help text and value checks (choices, ge, gt, le, lt)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


@dataclass
class ModelConfig:
    name: str = _opt("camae_vit_tiny_patch8_64", "model registry name (cellmae.models.list_models())")
    kwargs: dict = _opt({}, "extra keyword overrides passed to create_model")
    mask_ratio: float = _opt(0.75, "fraction of tokens masked (MAE tasks)", gt=0.0, lt=1.0)
    drop_path_rate: float | None = _opt(None, "stochastic depth rate; None keeps the preset's", ge=0.0, lt=1.0)
    grad_checkpointing: bool = _opt(False, "recompute activations in backward to save memory")
    compile: bool = _opt(False, "torch.compile the model (in place; state-dict keys unchanged)")


@dataclass
class DataConfig:
    batch_size: int = _opt(32, "crops per device per step", ge=1)
    num_workers: int = _opt(2, "data loader worker processes per device", ge=0)
    shuffle: bool = _opt(True, "shuffle crops (deterministic given seed and epoch)")
    drop_last: bool = _opt(True, "drop the last incomplete batch of an epoch")
    crop_size: int | None = _opt(None, "crop size when `cellmae train SCREEN` builds shards (None: the "
                                 "model's img_size)", ge=8)
    crops_per_field: int = _opt(16, "random crops per field when `cellmae train SCREEN` builds shards", ge=1)
    keep_wells: str | None = _opt(None, "kept_wells.csv from `cellmae curate`: train only on these wells "
                                  "(`cellmae train SCREEN` builds shards of them; a shard set must have been built from this list)")
    fraction: float = _opt(1.0, "fraction of the shard set to train on (data-size axis of scaling studies)",
                           gt=0.0, le=1.0)
    label_column: str = _opt("Metadata_Perturbation", "metadata column holding the class label (wsl task)")


@dataclass
class OptimConfig:
    name: str = _opt("adamw", "optimizer", choices=("adamw", "lion"))
    lr: float = _opt(1.5e-4, "peak learning rate (before batch scaling)", gt=0.0, le=10.0)
    scale_lr_with_batch: bool = _opt(False, "multiply lr by global_batch/256 (MAE's linear scaling rule)")
    weight_decay: float = _opt(0.05, "decoupled weight decay (never applied to norms, biases, embeddings)", ge=0.0)
    betas: list = _opt([0.9, 0.95], "(beta1, beta2) for AdamW and Lion")
    eps: float = _opt(1e-8, "AdamW epsilon", gt=0.0)
    grad_clip: float | None = _opt(1.0, "clip the global gradient norm to this (None: off)", gt=0.0)
    accumulate_grad_batches: int = _opt(1, "gradient accumulation steps", ge=1)


@dataclass
class ScheduleConfig:
    name: str = _opt("cosine", "learning-rate schedule", choices=("cosine", "onecycle", "constant"))
    warmup_steps: int | None = _opt(None, "linear warm-up steps (None: use warmup_fraction)", ge=0)
    warmup_fraction: float = _opt(0.05, "warm-up as a fraction of total steps", ge=0.0, lt=1.0)
    min_lr_ratio: float = _opt(0.0, "final lr as a fraction of peak lr (cosine)", ge=0.0, le=1.0)
    div_factor: float = _opt(25.0, "onecycle: initial lr = peak / div_factor", gt=1.0)
    final_div_factor: float = _opt(1e4, "onecycle: final lr = initial / final_div_factor", gt=0.0)


@dataclass
class TrainerConfig:
    max_steps: int = _opt(-1, "optimizer steps to train (-1: no step limit)", ge=-1)
    max_epochs: int | None = _opt(None, "epochs to train (None: no epoch limit)", ge=1)
    max_time: str | None = _opt(None, "wall-clock limit 'DD:HH:MM:SS' (checkpoint saved when reached)")
    accelerator: str = _opt("auto", "cpu | gpu | cuda | auto", choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = _opt("auto", "devices per node: 'auto', a count, or a list of indices")
    num_nodes: int = _opt(1, "nodes (multi-node via torchrun or SLURM)", ge=1)
    strategy: str = _opt("auto", "distribution strategy", choices=("auto", "ddp", "fsdp", "ddp_spawn", "single"))
    find_unused_parameters: bool = _opt(True, "DDP: allow parameters unused in a step (a CA-MAE's channel slots "
                                        "beyond the data's channels); false is faster for fixed-channel models")
    precision: str = _opt("auto", "auto (bf16-mixed where supported) | bf16 | fp16 | fp32",
                          choices=("auto", "bf16", "fp16", "fp32"))
    log_every_n_steps: int = _opt(10, "log metrics every N steps", ge=1)
    progress_bar: bool = _opt(True, "show the rich progress bar")
    deterministic: bool = _opt(False, "ask torch for deterministic kernels (slower on GPU)")


@dataclass
class CheckpointConfig:
    every_n_steps: int = _opt(500, "save a resumable checkpoint every N optimizer steps", ge=1)
    every_n_minutes: float | None = _opt(None, "also save every N minutes of training (preemptible nodes)", gt=0.0)
    keep_last: int = _opt(2, "periodic checkpoints to keep (checkpoints/last.ckpt is always kept)", ge=1)


@dataclass
class LoggingConfig:
    tensorboard: bool = _opt(True, "write TensorBoard logs to OUT/tensorboard")
    wandb: bool = _opt(False, "log to Weights & Biases (needs `pip install wandb`)")
    wandb_project: str = _opt("cellmae", "W&B project name")
    recon_every_n_steps: int = _opt(500, "write recon/step_XXXXXX.png every N steps (0: never)", ge=0)
    recon_num_images: int = _opt(2, "crops shown in each reconstruction figure", ge=1, le=16)


@dataclass
class TrainConfig:
    task: str = _opt("mae", "mae (MAE / CA-MAE / CNN-MAE pretraining) or wsl (weakly supervised classifier)",
                     choices=("mae", "wsl"))
    seed: int = _opt(0, "global seed: weights, data order, masks", ge=0)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)
