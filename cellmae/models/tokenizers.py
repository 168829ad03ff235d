"""Image -> token tokenizers: standard (all channels in one patch) and channel-agnostic (CA-MAE).

Both add fixed 2D sin-cos position embeddings. The channel-agnostic tokenizer runs ONE shared
single-channel patch embedding over all B*C channel images in a single convolution (no Python loop
over channels), orders tokens channel by channel and repeats the position table per channel, so it
accepts any number (up to ``max_channels``) of channels in any order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import PatchEmbed, trunc_normal_
from torch import nn

from cellmae.models.interface import check_channels
from cellmae.models.pos_embed import sincos_2d_pos_embed


def _check_image_size(x: torch.Tensor, img_size: int) -> None:
    if x.shape[-2:] != (img_size, img_size):
        raise ValueError(f"model expects {img_size}x{img_size} crops, got {tuple(x.shape[-2:])}")


class StandardTokenizer(nn.Module):
    """All channels in one patch embedding: (B, C, H, W) -> (B, N, D); fixed channel set and order."""

    channel_agnostic = False

    def __init__(self, img_size: int, patch_size: int, channels: Sequence[str], embed_dim: int, bias: bool = True):
        super().__init__()
        if not channels:
            raise ValueError("a standard (fixed-channel) tokenizer needs its channel names, got none")
        self.img_size, self.patch_size = img_size, patch_size
        self.channels = tuple(channels)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans=len(self.channels), embed_dim=embed_dim, bias=bias)
        self.grid = img_size // patch_size
        self.register_buffer("pos_embed", sincos_2d_pos_embed(embed_dim, self.grid)[None], persistent=False)

    @property
    def tokens_per_channel(self) -> int:
        return self.grid * self.grid

    def check_channels(self, channels: Sequence[str] | None, num_given: int) -> tuple[str, ...]:
        return check_channels(self.channels, channels, num_given)

    def token_channels(self, num_channels: int) -> int:
        """Channel groups along the token axis (1: every token covers all channels)."""
        return 1

    def forward(self, x: torch.Tensor, channels: Sequence[str] | None = None) -> torch.Tensor:
        _check_image_size(x, self.img_size)
        self.check_channels(channels, x.shape[1])
        return self.patch_embed(x) + self.pos_embed.to(x.dtype)


class ChannelAgnosticTokenizer(nn.Module):
    """One shared 1-channel patch embedding per channel: (B, C, H, W) -> (B, C*N, D), channel-major."""

    channel_agnostic = True

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        max_channels: int = 11,
        channel_embed_names: Sequence[str] | None = None,
        bias: bool = True,
    ):
        super().__init__()
        self.img_size, self.patch_size, self.max_channels = img_size, patch_size, max_channels
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans=1, embed_dim=embed_dim, bias=bias)
        self.grid = img_size // patch_size
        self.register_buffer("pos_embed", sincos_2d_pos_embed(embed_dim, self.grid)[None], persistent=False)
        # Learned channel embeddings keyed by NAME (not position), off by default: without them the
        # encoder is exactly permutation-equivariant over channels, so pooled features are order-invariant.
        self.channel_embed_names = tuple(channel_embed_names or ())
        self._channel_index = {name: i for i, name in enumerate(self.channel_embed_names)}
        if self.channel_embed_names:
            self.channel_embed = nn.Parameter(torch.zeros(len(self.channel_embed_names), embed_dim))
            trunc_normal_(self.channel_embed, std=0.02)
        else:
            self.channel_embed = None

    @property
    def tokens_per_channel(self) -> int:
        return self.grid * self.grid

    def check_channels(self, channels: Sequence[str] | None, num_given: int) -> tuple[str, ...] | None:
        if num_given > self.max_channels:
            raise ValueError(f"this channel-agnostic model holds at most {self.max_channels} channels, got {num_given}")
        if channels is not None:
            channels = tuple(channels)
            if len(channels) != num_given:
                raise ValueError(f"{len(channels)} channel names {list(channels)} given for {num_given} image channels")
            if len(set(channels)) != len(channels):
                raise ValueError(f"channel names must be unique, got {list(channels)}")
        if self.channel_embed is not None:
            if channels is None:
                raise ValueError("this model has learned channel embeddings: pass channels=(names...)")
            unknown = [c for c in channels if c not in self._channel_index]
            if unknown:
                raise ValueError(f"unknown channel(s) {unknown}; the model knows {list(self.channel_embed_names)}")
        return channels

    def token_channels(self, num_channels: int) -> int:
        return num_channels

    def forward(self, x: torch.Tensor, channels: Sequence[str] | None = None) -> torch.Tensor:
        _check_image_size(x, self.img_size)
        channels = self.check_channels(channels, x.shape[1])
        b, c, h, w = x.shape
        tokens = self.patch_embed(x.reshape(b * c, 1, h, w))  # one conv over all channel images
        tokens = tokens + self.pos_embed.to(tokens.dtype)
        if self.channel_embed is not None:
            idx = torch.tensor([self._channel_index[n] for n in channels], device=x.device)
            tokens = tokens.view(b, c, -1, tokens.shape[-1]) + self.channel_embed[idx][None, :, None, :]
        return tokens.reshape(b, c * self.tokens_per_channel, -1)
