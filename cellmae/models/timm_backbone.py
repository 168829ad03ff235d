"""A timm backbone (natural-image baseline) behind the cellmae ``forward_features`` interface.

timm already gives features from any block (``forward_intermediates``) and adapts a pretrained
first convolution to N input channels (``in_chans``); this wrapper only adds what microscopy needs
on top: uint8 input with the cellmae models' own self-standardization (``models.standardize``, so
the baseline sees the same pixels as our models) and pooling of each block's token/feature map to one vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cellmae.models.interface import EmbedMixin, check_channels, resolve_blocks
from cellmae.models.standardize import self_standardize


class TimmFeatureModel(EmbedMixin, nn.Module):
    """Wrap a timm model created with ``in_chans = len(channels)`` and no classifier head."""

    def __init__(self, name: str, channels: Sequence[str], *, tile: int, weights: str | Path | None = None):
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ValueError(f"timm has no model named {name!r} (see timm.list_models())")
        kwargs: dict = {"in_chans": len(channels), "num_classes": 0}
        if weights is not None:
            weights = Path(weights)
            if not weights.is_file():
                raise FileNotFoundError(f"timm weights file {weights} does not exist")
            # Local file only: timm loads it and adapts the first conv to in_chans. We never download.
            kwargs |= {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
        else:
            kwargs["pretrained"] = False
        try:
            self.backbone = timm.create_model(name, img_size=tile, **kwargs)
        except TypeError:  # CNNs take any input size and have no img_size argument
            self.backbone = timm.create_model(name, **kwargs)
        self.name = name
        self.expected_channels = tuple(channels)
        self.num_blocks = len(self.backbone.feature_info)
        self.embed_dim = int(self.backbone.num_features)
        self.has_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0)) > 0
        self.config = {"timm_name": name, "in_chans": len(channels), "tile": tile,
                       "weights": str(weights) if weights else None}

    def forward_features(
        self,
        images: torch.Tensor,
        channels: Sequence[str] | None = None,
        blocks: Sequence[int] | int | str = "last",
        pool: str = "mean",
    ) -> dict[int, torch.Tensor]:
        check_channels(self.expected_channels, channels, images.shape[1])
        blocks = resolve_blocks(blocks, self.num_blocks)
        if pool == "cls" and not self.has_prefix_tokens:
            raise ValueError(f"pool='cls' needs a model with a CLS token; {self.name} has none (use pool='mean')")
        if pool not in {"mean", "cls"}:
            raise ValueError(f"pool={pool!r} is not supported for timm backbones (use 'mean' or 'cls')")
        x = self_standardize(images)
        extra = {"return_prefix_tokens": True} if pool == "cls" else {}  # CNNs do not take this argument
        out = self.backbone.forward_intermediates(
            x, indices=[b - 1 for b in blocks], intermediates_only=True, stop_early=True, **extra
        )
        feats = {}
        for b, o in zip(blocks, out, strict=True):
            if pool == "cls":
                feats[b] = o[1][:, 0]
            else:
                feats[b] = o.mean(dim=(-2, -1))  # NCHW feature map -> one vector per image
        return feats
