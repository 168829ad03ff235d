"""Lightning training: MAE pretraining and weakly supervised baselines, CPU to many GPUs.

Public API::

    from cellmae.train import run_training, load_config, ConfigError
    out_dir = run_training("tiny-camae", "RUN/shards", "RUN/train/tiny-camae", overrides=["trainer.max_steps=500"])
"""

from cellmae.train.config import ConfigError, TrainConfig, list_presets, load_config
from cellmae.train.run import run_training

__all__ = ["ConfigError", "TrainConfig", "list_presets", "load_config", "run_training"]
