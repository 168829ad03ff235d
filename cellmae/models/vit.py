"""ViT encoder on timm blocks (standard ``Block`` or ``ParallelScalingBlock``), with block features.

Like timm's ``VisionTransformer.forward_intermediates`` it returns features from any set of blocks and
stops after the deepest one requested; unlike timm it takes a token sequence of variable length (any
number of channels x patches, or only the visible tokens of a masked image).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from cellmae.models.attention import Attention, ParallelScalingBlock
from cellmae.models.interface import resolve_blocks
from cellmae.models.tokenizers import ChannelAgnosticTokenizer, StandardTokenizer

BLOCKS = {"standard": partial(Block, attn_layer=Attention), "parallel": ParallelScalingBlock}
POOLS = ("mean", "cls", "channel_concat")


class ViTEncoder(nn.Module):
    def __init__(
        self,
        *,
        tokenizer: str,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        block: str = "standard",
        qkv_bias: bool = True,
        qk_norm: bool = False,
        init_values: float | None = None,
        drop_path_rate: float = 0.0,
        class_token: bool = True,
        final_norm: bool = True,
        channels: Sequence[str] | None = None,
        max_channels: int = 11,
        channel_embed_names: Sequence[str] | None = None,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block type {block!r}; expected one of {sorted(BLOCKS)}")
        if tokenizer == "channel_agnostic":
            self.tokenizer = ChannelAgnosticTokenizer(
                img_size, patch_size, embed_dim, max_channels=max_channels, channel_embed_names=channel_embed_names
            )
        elif tokenizer == "standard":
            self.tokenizer = StandardTokenizer(img_size, patch_size, channels or (), embed_dim)
        else:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; expected 'standard' or 'channel_agnostic'")
        self.embed_dim, self.depth = embed_dim, depth
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rule, meta-safe
        self.blocks = nn.ModuleList(
            BLOCKS[block](
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_norm=qk_norm,
                init_values=init_values,
                drop_path=dpr[i],
                norm_layer=norm_layer,
            )
            for i in range(depth)
        )
        # Applied only on the path to the decoder; block features are raw block outputs (the
        # published OpenPhenom embedding is the mean of last-block tokens with no final norm).
        self.norm = norm_layer(embed_dim) if final_norm else nn.Identity()
        self.num_prefix_tokens = 1 if class_token else 0
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

    def tokenize(self, x: torch.Tensor, channels: Sequence[str] | None) -> torch.Tensor:
        """Standardized images -> (B, L, D) patch tokens with position (and channel) embeddings, no prefix."""
        return self.tokenizer(x, channels)

    def add_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cls_token is None:
            return tokens
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (all or only the visible ones) -> normed encoder output including the prefix."""
        x = self.add_prefix(tokens)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def pool(self, x: torch.Tensor, pool: str, num_channels: int) -> torch.Tensor:
        """(B, prefix + L, D) block output -> (B, D) (or (B, C*D) for channel_concat)."""
        patches = x[:, self.num_prefix_tokens :]
        if pool == "mean":
            return patches.mean(dim=1)
        if pool == "cls":
            if self.cls_token is None:
                raise ValueError("pool='cls' needs a class token; this encoder has none")
            return x[:, 0]
        if pool == "channel_concat":
            b, _, d = patches.shape
            return patches.reshape(b, num_channels, -1, d).mean(dim=2).reshape(b, num_channels * d)
        raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")

    def block_features(
        self, tokens: torch.Tensor, blocks: Iterable[int] | int | str, pool: str, num_channels: int
    ) -> dict[int, torch.Tensor]:
        """Pooled features after each requested (1-based) block; stops after the deepest one."""
        wanted = resolve_blocks(blocks, self.depth)
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
        x = self.add_prefix(tokens)
        out: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks[: wanted[-1]], start=1):
            x = blk(x)
            if i in wanted:
                out[i] = self.pool(x, pool, num_channels)
        return out
