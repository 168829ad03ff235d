"""Weakly supervised learning (WSL) baseline: a timm backbone + a linear head over perturbation labels.

Optional batch-specific normalization: pooled features are batch-normalized with statistics kept per
experiment (``Metadata_Experiment``), the trick that makes WSL embeddings robust to batch effects in
the RxRx papers. Experiments unseen at training time are normalized with their own batch statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn

from cellmae.models.interface import EmbedMixin, check_channels, resolve_blocks
from cellmae.models.standardize import self_standardize

_VIT_PREFIXES = ("vit", "deit", "eva", "beit")


@dataclass
class WSLConfig:
    backbone: str = "resnet18"
    img_size: int = 64
    channels: list[str] | None = None
    num_classes: int = 2
    experiments: list[str] | None = None  # per-experiment feature BatchNorm when given
    drop_rate: float = 0.0
    family: str = "wsl"

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("a WSL classifier needs channels=[names...] (a fixed channel set)")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        self.channels = list(self.channels)
        if self.experiments is not None:
            self.experiments = [str(e) for e in self.experiments]


class ExperimentBatchNorm(nn.Module):
    """BatchNorm1d with separate statistics per experiment (affine-free: the head learns the scale)."""

    def __init__(self, num_features: int, experiments: Sequence[str]):
        super().__init__()
        self.experiments = list(experiments)
        self.norms = nn.ModuleList(nn.BatchNorm1d(num_features, affine=False) for _ in self.experiments)
        self._index = {e: i for i, e in enumerate(self.experiments)}

    def forward(self, x: torch.Tensor, experiments: Sequence[str]) -> torch.Tensor:
        if len(experiments) != x.shape[0]:
            raise ValueError(f"{len(experiments)} experiment labels for a batch of {x.shape[0]}")
        out = torch.empty_like(x)
        names = [str(e) for e in experiments]
        for name in dict.fromkeys(names):
            rows = torch.tensor([i for i, n in enumerate(names) if n == name], device=x.device)
            group = x.index_select(0, rows)
            if name in self._index:
                normed = self.norms[self._index[name]](group) if group.shape[0] > 1 or not self.training else group
            else:  # unseen experiment: its own statistics (needs > 1 sample to mean anything)
                normed = F.batch_norm(group, None, None, training=True) if group.shape[0] > 1 else group - group
            out.index_copy_(0, rows, normed.to(out.dtype))
        return out


class WSLClassifier(EmbedMixin, nn.Module):
    """``model(images, channels, labels=None, experiments=None)`` -> {"logits", "features"[, "loss"]}."""

    def __init__(self, config: WSLConfig):
        super().__init__()
        self.cfg = c = config
        kwargs = {"img_size": c.img_size} if c.backbone.startswith(_VIT_PREFIXES) else {}
        self.backbone = timm.create_model(
            c.backbone, pretrained=False, num_classes=0, in_chans=len(c.channels), drop_rate=c.drop_rate, **kwargs
        )
        self.is_vit = c.backbone.startswith(_VIT_PREFIXES)
        dim = self.backbone.num_features
        self.experiment_norm = ExperimentBatchNorm(dim, c.experiments) if c.experiments else None
        self.head = nn.Linear(dim, c.num_classes)

    @property
    def config(self) -> dict:
        return dataclasses.asdict(self.cfg)

    @property
    def num_blocks(self) -> int:
        return len(self.backbone.feature_info)

    @property
    def embed_dim(self) -> int:
        return int(self.backbone.num_features)

    @property
    def expected_channels(self) -> tuple[str, ...]:
        return tuple(self.cfg.channels)

    def _standardize_checked(self, images: torch.Tensor, channels: Sequence[str] | None) -> torch.Tensor:
        check_channels(self.expected_channels, channels, images.shape[1])
        return self_standardize(images)

    def forward(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        labels: torch.Tensor | None = None,
        experiments: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        feats = self.backbone(self._standardize_checked(images, channels))
        if self.experiment_norm is not None:
            if experiments is None:
                raise ValueError("this classifier normalizes per experiment: pass experiments=[...] per sample")
            feats = self.experiment_norm(feats, experiments)
        logits = self.head(feats)
        out = {"logits": logits, "features": feats}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.float(), labels)
        return out

    def forward_features(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        blocks: Iterable[int] | int | str = "last",
        pool: str = "mean",
    ) -> dict[int, torch.Tensor]:
        """{block (1-based feature stage, or ViT block): (B, D)} via timm's forward_intermediates."""
        wanted = resolve_blocks(blocks, self.num_blocks)
        if pool not in ("mean", "cls") or (pool == "cls" and not self.is_vit):
            raise ValueError(f"pool {pool!r} not supported by backbone {self.cfg.backbone!r}")
        x = self._standardize_checked(images, channels)
        idx = [b - 1 for b in wanted]
        if self.is_vit:
            maps = self.backbone.forward_intermediates(
                x, indices=idx, stop_early=True, intermediates_only=True, return_prefix_tokens=pool == "cls"
            )
            if pool == "cls":
                return {b: prefix[:, 0].float() for b, (_, prefix) in zip(wanted, maps, strict=True)}
        else:
            maps = self.backbone.forward_intermediates(x, indices=idx, stop_early=True, intermediates_only=True)
        return {b: fmap.mean(dim=(2, 3)).float() for b, fmap in zip(wanted, maps, strict=True)}
