"""``run_training``: one call from a config and a data folder to a trained model folder.

``OUT/`` receives ``model.safetensors`` + ``config.json`` (final weights, via the models package's
``save_pretrained``), ``train_config.yaml`` (the resolved config), ``checkpoints/`` (resumable
Lightning state), ``metrics.csv``, ``tensorboard/``, ``recon/step_XXXXXX.png`` and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cellmae.layout import (
    MODEL_CARD_FILE,
    MODEL_CONFIG_FILE,
    MODEL_WEIGHTS_FILE,
    SHARDS_INFO_FILE,
    TRAIN_CHECKPOINT_DIR,
    TRAIN_CONFIG_FILE,
    TRAIN_LAST_CHECKPOINT,
    TRAIN_METRICS_FILE,
    TRAIN_SUMMARY_FILE,
)
from cellmae.train.config import (
    ConfigError,
    TrainConfig,
    config_differences,
    config_to_yaml,
    load_config,
)
from cellmae.utils.errors import InputError

# Keys that may change between a run and its resume (how long / on what hardware / what is logged).
RESUMABLE_CHANGES = (
    "trainer.max_steps", "trainer.max_epochs", "trainer.max_time", "trainer.devices", "trainer.num_nodes",
    "trainer.accelerator", "trainer.progress_bar", "trainer.log_every_n_steps", "data.num_workers",
    "checkpoint.every_n_steps", "checkpoint.every_n_minutes", "checkpoint.keep_last",
    "logging.tensorboard", "logging.wandb", "logging.wandb_project", "logging.recon_every_n_steps",
    "logging.recon_num_images", "model.compile",
)


def checked_shard_dir(shards_dir: str | Path, cfg: TrainConfig) -> Path:
    """``shards_dir`` when it is a shard set (of the ``data.keep_wells`` list when one is set), else a one-line
    error saying how to build one."""
    from cellmae.data.shard_reader import is_shard_dir
    from cellmae.data.training_shards import check_kept_wells

    shard_dir = Path(shards_dir)
    if not shard_dir.exists():
        raise FileNotFoundError(f"{shard_dir}: no such shard folder")
    if not is_shard_dir(shard_dir):
        raise InputError(f"{shard_dir}: not a shard set (no {SHARDS_INFO_FILE}); build one with `cellmae shards build "
                         f"{shard_dir} -o RUN/shards`, or give the screen folder to `cellmae train`, which builds its "
                         "shards into OUT/shards")
    if cfg.data.keep_wells:
        check_kept_wells(shard_dir, cfg.data.keep_wells)
    return shard_dir


def training_crop_size(cfg: TrainConfig) -> int:
    """The crop side shards for ``cfg`` are cut at: ``data.crop_size``, else the model's input size, else 64."""
    return cfg.data.crop_size or model_img_size(cfg) or 64


def build_model(cfg: TrainConfig, *, channels: tuple[str, ...] | None = None, num_classes: int | None = None):
    """The ``cellmae.models`` preset of ``cfg.model`` with the run's overrides.

    A fixed-channel model (standard MAE, CNN-MAE, WSL) takes the shard set's channel names unless the
    config sets ``model.kwargs.channels``; the channel-agnostic CA-MAE needs nothing.
    """
    from cellmae.models import create_model
    from cellmae.models.registry import preset_config

    overrides: dict[str, Any] = dict(cfg.model.kwargs)
    if cfg.model.drop_path_rate is not None:
        overrides["drop_path_rate"] = cfg.model.drop_path_rate
    try:
        preset = preset_config(cfg.model.name)
    except ValueError as e:
        raise ConfigError(f"model.name: {e}") from None
    if channels is not None and preset.get("channels") is not None and "channels" not in overrides:
        overrides["channels"] = list(channels)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if "mask_ratio" in preset:
        overrides.setdefault("mask_ratio", cfg.model.mask_ratio)
    try:
        return create_model(cfg.model.name, **overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model: cannot build {cfg.model.name!r} with {overrides}: {e}") from None


def model_img_size(cfg: TrainConfig) -> int | None:
    from cellmae.models.registry import preset_config

    try:
        return {**preset_config(cfg.model.name), **cfg.model.kwargs}.get("img_size")
    except ValueError as e:
        raise ConfigError(f"model.name: {e}") from None


def check_out_dir(out_dir: Path, cfg: TrainConfig, resume: bool) -> Path | None:
    """Refuse to clobber a previous run; on resume check the config matches and find the checkpoint."""
    from cellmae.train.checkpointing import find_resume_checkpoint

    ckpt = find_resume_checkpoint(out_dir / TRAIN_CHECKPOINT_DIR)
    saved = out_dir / TRAIN_CONFIG_FILE
    if not resume:
        if ckpt is not None or (out_dir / MODEL_WEIGHTS_FILE).exists():
            raise FileExistsError(f"{out_dir}: holds a previous run ({ckpt or MODEL_WEIGHTS_FILE}); pass --resume "
                                  "to continue it or choose another --out")
        return None
    if ckpt is None:
        return None  # nothing to resume yet (e.g. first start of a requeued SLURM job): start fresh
    if saved.is_file():
        before = load_config(saved)
        diffs = config_differences(before, cfg, ignore=RESUMABLE_CHANGES)
        if diffs:
            raise ConfigError(f"--resume: the config differs from the run in {out_dir} in keys that change the "
                              "training itself:\n  " + "\n  ".join(diffs))
    return ckpt


def run_training(
    config: str | Path | Mapping[str, Any] | TrainConfig,
    shards_dir: str | Path,
    out_dir: str | Path,
    *,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    resume: bool = False,
    callbacks: Iterable[Any] = (),
) -> Path:
    """Train per ``config`` (preset name, YAML path, dict or TrainConfig) + ``overrides`` on the shard set
    ``shards_dir``; return ``out_dir``. Shards of a screen come from ``cellmae shards build`` or
    :func:`cellmae.data.training_shards.ensure_shards` (what ``cellmae train SCREEN`` does); a shard set trained with
    ``data.keep_wells`` must have been built from that well list.

    ``resume=True`` continues from ``OUT/checkpoints/last.ckpt`` (model, optimizer, schedule, step,
    data position) when it exists and starts fresh otherwise. Raises ConfigError for a bad config,
    ``NonFiniteLossError`` when the loss turns NaN/inf (after saving the last good checkpoint).
    """
    import lightning.pytorch as pl

    from cellmae.train.callbacks import write_run_summary
    from cellmae.train.datamodule import ShardDataModule
    from cellmae.train.launch import build_trainer, enable_grad_checkpointing
    from cellmae.train.module_mae import MAEPretrainModule
    from cellmae.train.module_wsl import WSLClassifierModule
    from cellmae.utils.atomic import write_text_atomic

    cfg = load_config(config, overrides)
    out_dir = Path(out_dir)
    ckpt = check_out_dir(out_dir, cfg, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    img_size = model_img_size(cfg)
    shard_dir = checked_shard_dir(shards_dir, cfg)
    data = ShardDataModule(shard_dir, cfg)
    if img_size is not None and data.crop_size != img_size:
        raise ConfigError(f"{shard_dir}: crops are {data.crop_size}px but model {cfg.model.name!r} takes {img_size}px; "
                          f"set model.kwargs.img_size={data.crop_size} or build shards with crop size {img_size}")

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    classes = data.classes(cfg.data.label_column) if cfg.task == "wsl" else None
    model = build_model(cfg, channels=data.channels, num_classes=len(classes) if classes else None)
    if cfg.model.grad_checkpointing and cfg.trainer.strategy != "fsdp":
        enable_grad_checkpointing(model)
    module = WSLClassifierModule(cfg, model, classes) if cfg.task == "wsl" else MAEPretrainModule(cfg, model)
    if cfg.model.compile:
        model.compile()  # in place: parameter names (and so checkpoints) stay those of the plain model

    trainer, metrics = build_trainer(cfg, out_dir, model, list(callbacks))
    if trainer.is_global_zero:
        write_text_atomic(out_dir / TRAIN_CONFIG_FILE, config_to_yaml(cfg))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    wall = time.perf_counter() - t0

    # Final resumable state (covers max_time stops and steps between periodic checkpoints).
    ckpt_cb = trainer.checkpoint_callback
    if ckpt_cb is not None and ckpt_cb.dirpath:
        trainer.save_checkpoint(Path(ckpt_cb.dirpath) / TRAIN_LAST_CHECKPOINT, weights_only=False)
    # Gather full weights (FSDP-aware; a no-op gather otherwise) and write them from rank 0.
    state = trainer.strategy.lightning_module_state_dict()
    if trainer.is_global_zero:
        final = build_model(cfg, channels=data.channels, num_classes=len(classes) if classes else None)
        final.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        extra: dict[str, Any] = {"train": {"steps": trainer.global_step, "epochs": trainer.current_epoch,
                                           "shards": str(shard_dir), "train_config": cfg.to_dict()}}
        if classes:
            extra["classes"] = classes
        _save_weights_into(final, out_dir, extra)
        write_run_summary(out_dir / TRAIN_SUMMARY_FILE, _summary(cfg, trainer, out_dir, wall, data.num_crops))
    trainer.strategy.barrier("cellmae-final-save")
    return out_dir


def _save_weights_into(model: Any, out_dir: Path, extra: dict[str, Any]) -> None:
    """save_pretrained writes a whole folder atomically; write it beside the run and move the two files in,
    so the run folder (checkpoints, metrics) is never replaced."""
    import shutil

    from cellmae.models import save_pretrained

    staging = out_dir / ".final-weights"
    shutil.rmtree(staging, ignore_errors=True)
    save_pretrained(model, staging, extra=extra)
    for name in (MODEL_WEIGHTS_FILE, MODEL_CONFIG_FILE, MODEL_CARD_FILE):  # each rename is atomic
        os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)


def _summary(cfg: TrainConfig, trainer: Any, out_dir: Path, wall_s: float, num_crops: int) -> dict[str, Any]:
    import pandas as pd


    summary: dict[str, Any] = {"model": cfg.model.name, "task": cfg.task, "steps": trainer.global_step,
                               "world_size": trainer.world_size, "wall_s": round(wall_s, 2),
                               "train_crops_available": num_crops, "data_fraction": cfg.data.fraction}
    path = out_dir / TRAIN_METRICS_FILE
    if path.is_file():
        m = pd.read_csv(path)
        if len(m):
            tail = m["loss"].tail(max(1, min(10, len(m) // 5)))
            summary.update(
                loss_first=float(m["loss"].iloc[0]), loss_last=float(m["loss"].iloc[-1]),
                loss_final_mean=float(tail.mean()),
                crops_per_s_median=float(m["crops_per_s"].iloc[1:].median()) if len(m) > 1
                else float(m["crops_per_s"].iloc[0]),
                crops_seen=int(trainer.global_step * cfg.data.batch_size * trainer.world_size
                               * cfg.optim.accumulate_grad_batches),
            )
    return summary


def read_summary(out_dir: str | Path) -> dict[str, Any]:
    """The ``summary.json`` of a finished run."""
    return json.loads((Path(out_dir) / TRAIN_SUMMARY_FILE).read_text())
