"""The feature interface every model answers: ``forward_features`` (per block) and ``embed`` (one block).

``forward_features(images, channels=..., blocks=..., pool=...) -> {block: (B, D)}`` is each model's own
method; :class:`EmbedMixin` adds the one-call notebook form ``embed(images, channels=...) -> (B, D)``
on top of it, so the two can never disagree. :func:`resolve_blocks` is the one reading of "which
blocks" that every model (and the embed stage) shares, :func:`check_channels` the one channel check of
the fixed-channel models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported on use: the handcrafted baseline and `cellmae --help` do without it
    import torch


def resolve_blocks(blocks: Iterable[int] | int | str, num_blocks: int) -> list[int]:
    """``"all"`` / ``"last"`` / an int / ints -> sorted, distinct 1-based block numbers in 1..num_blocks."""
    if isinstance(blocks, str):
        if blocks not in ("all", "last"):
            raise ValueError(f"blocks must be 1-based ints, 'all' or 'last', got {blocks!r}")
        return list(range(1, num_blocks + 1)) if blocks == "all" else [num_blocks]
    wanted = [blocks] if isinstance(blocks, int) else list(blocks)
    if not wanted:
        raise ValueError("blocks is empty")
    bad = [b for b in wanted if isinstance(b, bool) or not isinstance(b, Integral) or not 1 <= b <= num_blocks]
    if bad:
        raise ValueError(f"block(s) {bad} out of range: the model has blocks 1..{num_blocks}")
    return sorted({int(b) for b in wanted})


def check_channels(expected: Sequence[str], channels: Sequence[str] | None, num_image_channels: int) -> tuple[str, ...]:
    """The channel check of a fixed-channel model: the names (None: the expected ones) and the image's
    channel count must be the expected ones, in order. Returns the channel names."""
    expected = tuple(expected)
    given = expected if channels is None else tuple(channels)
    if given != expected or num_image_channels != len(expected):
        raise ValueError(f"this fixed-channel model expects channels {list(expected)} in that order, "
                         f"got {list(given)} ({num_image_channels} image channels)")
    return given


class EmbedMixin:
    """Adds ``embed``: one pooled block of features, in eval mode, without gradients."""

    def embed(
        self,
        images: torch.Tensor | np.ndarray,
        channels: Sequence[str] | None = None,
        *,
        block: int | str = "last",
        pool: str = "mean",
    ) -> torch.Tensor:
        """Embeddings (B, D) float32 of uint8 images (B, C, H, W) named by ``channels`` (in stack order).

        ``block`` is a 1-based block number or "last" (the published OpenPhenom embedding is the mean of
        the last block's patch tokens); ``pool`` is "mean", "cls" or "channel_concat" where the model has
        them. Images go to the model's device; the result comes back on it.
        """
        import torch

        x = torch.as_tensor(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if x.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(x.shape)}")
        if channels is not None and len(channels) != x.shape[1]:
            raise ValueError(f"{len(channels)} channel names {list(channels)} for {x.shape[1]} image channels")
        device = _device_of(self)
        was_training = getattr(self, "training", False)
        if was_training:
            self.eval()  # type: ignore[attr-defined]
        try:
            with torch.inference_mode():
                feats = self.forward_features(x.to(device), channels=channels,  # type: ignore[attr-defined]
                                              blocks="last" if block == "last" else [int(block)], pool=pool)
        finally:
            if was_training:
                self.train()  # type: ignore[attr-defined]
        (out,) = feats.values()
        return out.float()


def _device_of(model: Any) -> torch.device:
    import torch

    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if params is not None else None
    return first.device if first is not None else torch.device("cpu")
