"""Weakly supervised baseline: a classifier trained to predict the perturbation of each crop.

Kraus et al. 2024 compare MAEs against such classifiers (DenseNet-161 / ViT trained on siRNA labels);
their penultimate features are the "wsl" baseline map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellmae.data import schema
from cellmae.train.config import TrainConfig
from cellmae.train.module_base import TrainModule, images_and_channels


class WSLClassifierModule(TrainModule):
    """Cross-entropy on ``batch[cfg.data.label_column]`` mapped through a fixed class list."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, classes: Sequence[str]):
        super().__init__(cfg, model)
        self.classes = [str(c) for c in classes]
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.save_hyperparameters({"train_config": cfg.to_dict(), "classes": self.classes})

    def labels_of(self, batch: dict[str, Any]) -> torch.Tensor:
        column = self.cfg.data.label_column
        if column not in batch:
            raise KeyError(f"data.label_column={column!r} is not in the batch (columns: "
                           f"{sorted(k for k in batch if k.startswith('Metadata_'))})")
        values = batch[column]
        values = values.tolist() if isinstance(values, torch.Tensor) else list(values)
        unknown = sorted({str(v) for v in values} - self.class_index.keys())
        if unknown:
            raise ValueError(f"labels {unknown[:5]} in column {column!r} are not among the {len(self.classes)} "
                             "classes found when the run started")
        return torch.tensor([self.class_index[str(v)] for v in values], device=self.device)

    def compute_loss(self, batch: dict[str, Any], seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, channels = images_and_channels(batch)
        labels = self.labels_of(batch)
        kwargs: dict[str, Any] = {}
        if getattr(getattr(self.model, "cfg", None), "experiments", None):  # per-experiment feature norm
            kwargs["experiments"] = [str(e) for e in batch[schema.EXPERIMENT]]
        out = self.model(images, channels=channels, labels=labels, **kwargs)
        logits = out["logits"] if isinstance(out, dict) else out
        loss = out["loss"] if isinstance(out, dict) and "loss" in out else F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean().detach()
        return loss, {"accuracy": accuracy}
