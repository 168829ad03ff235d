"""CLI: ``cellmae train``. Heavy imports stay inside."""

from __future__ import annotations

from pathlib import Path

import typer

from cellmae.utils.cli_options import JSON, PROGRESS, QUIET, Speaker

TRAIN_HELP = """Pretrain an MAE / CA-MAE / CNN-MAE or train a weakly supervised classifier.

Configs are YAML presets (see --list-presets) plus --set KEY=VALUE overrides (see --list-keys), e.g.

cellmae train RUN/shards -o RUN/train/tiny-camae --config tiny-camae --set optim.lr=1e-3 --set trainer.max_steps=500

Multi-GPU / multi-node: trainer.strategy=ddp|fsdp trainer.devices=N trainer.num_nodes=M, launched directly, under torchrun, or under SLURM srun (docs/train.md). --resume continues from OUT/checkpoints/last.ckpt, or starts fresh when there is none yet.
"""


def register(app: typer.Typer) -> None:
    """Add ``train`` to ``app``."""

    @app.command("train", help=TRAIN_HELP)
    def train(
        shards: Path = typer.Argument(None, help="Shard folder (cellmae shards build), or a screen folder: its shards "
                                      "are built into OUT/shards first (of the data.keep_wells wells when set)."),
        out: Path = typer.Option(None, "--out", "-o", help="Run folder, conventionally RUN/train/<model>."),
        config: str = typer.Option("tiny-camae", "--config", "-c", help="Preset name or YAML file."),
        overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                            help="Config override (repeatable), e.g. --set optim.lr=3e-4."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt if present."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
        list_presets: bool = typer.Option(False, "--list-presets", help="List bundled presets and exit."),
        list_keys: bool = typer.Option(False, "--list-keys", help="List every config key with default and help."),
        progress: bool = PROGRESS,
        quiet: bool = QUIET,
        as_json: bool = JSON,
    ) -> None:
        from cellmae.train.config import ConfigError, config_to_yaml, describe_keys, load_config
        from cellmae.train.config import list_presets as presets

        if list_presets:
            for p in presets():
                typer.echo(p)
            return
        if list_keys:
            for key, tp, default, text in describe_keys():
                typer.echo(f"{key:34s} {tp:14s} {default!r:22s} {text}")
            return
        try:
            cfg = load_config(config, overrides or [])
        except ConfigError as e:
            raise typer.BadParameter(str(e)) from None
        if print_config:
            typer.echo(config_to_yaml(cfg))
            return
        if shards is None or out is None:
            raise typer.BadParameter("SHARDS and --out are required to train")
        if not (progress and not quiet):
            cfg.trainer.progress_bar = False
        from cellmae.data.training_shards import ensure_shards
        from cellmae.layout import SHARDS_DIR
        from cellmae.train.module_base import NonFiniteLossError
        from cellmae.train.run import check_out_dir, run_training, training_crop_size
        from cellmae.utils.errors import InputError

        check_out_dir(out, cfg, resume)  # before building shards: a clobbered run is refused first
        # The command composes the two stages: shards of a screen (by rank 0; other ranks wait), then training.
        shard_dir = ensure_shards(shards, out / SHARDS_DIR, crop_size=training_crop_size(cfg),
                                  crops_per_field=cfg.data.crops_per_field, seed=cfg.seed,
                                  keep_wells=cfg.data.keep_wells, progress=cfg.trainer.progress_bar)
        try:
            run_training(cfg, shard_dir, out, resume=resume)
        except NonFiniteLossError as e:  # a diverged run is the user's to fix (lr, precision), not a bug
            raise InputError(str(e)) from e
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        if rank_zero_only.rank == 0:
            from cellmae.train.run import read_summary

            Speaker(quiet=quiet, as_json=as_json).summary({"out": str(out), **read_summary(out)},
                                                          f"trained model written to {out}")
