"""MAE decoders: the standard MAE decoder and the CA-MAE decoder (per-channel queries + cross-attention).

Both take the full token sequence (visible tokens projected to decoder width, mask tokens elsewhere,
already unshuffled) and return decoder features per token; the pixel head lives on the MAE model.
Parameter names follow the public OpenPhenom checkpoint so it loads by renaming prefixes only.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import Mlp, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from cellmae.models.attention import Attention, attention
from cellmae.models.pos_embed import sincos_2d_pos_embed

_norm = partial(nn.LayerNorm, eps=1e-6)

# Set to False to keep the decoder's residual stream in fp32 under autocast (A/B numerics checks).
BF16_RESIDUAL = True


def _autocast_residual(x: torch.Tensor) -> torch.Tensor:
    """Cast decoder activations to the autocast dtype when autocast is on.

    Under autocast the matmuls run in bf16 but a fp32 residual stream makes every block cast its
    input down and its output back up (the biggest non-matmul cost of a CPU train step, where the
    decoder is ~3/4 of the FLOPs). The decoder is discarded after pre-training, so its residual
    stream runs in the autocast dtype; the encoder keeps standard mixed precision.
    """
    device = x.device.type
    if BF16_RESIDUAL and torch.is_autocast_enabled(device):
        return x.to(torch.get_autocast_dtype(device))
    return x


def _blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float) -> nn.Sequential:
    return nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=_norm, attn_layer=Attention) for _ in range(depth)])


class MAEDecoder(nn.Module):
    """He et al.'s decoder: add position embeddings, transformer blocks, final norm."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, grid: int, mlp_ratio: float = 4.0,
                 num_prefix_tokens: int = 1):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_prefix_tokens = num_prefix_tokens
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.register_buffer("pos_embed", sincos_2d_pos_embed(embed_dim, grid)[None], persistent=False)
        self.blocks = _blocks(embed_dim, depth, num_heads, mlp_ratio)
        self.norm = _norm(embed_dim)

    def forward(self, prefix: torch.Tensor, tokens: torch.Tensor, num_channels: int) -> torch.Tensor:
        """prefix (B, P, D), tokens (B, N, D) -> (B, N, D) decoded patch tokens."""
        tokens, prefix = _autocast_residual(tokens), _autocast_residual(prefix)
        x = torch.cat([prefix, tokens + self.pos_embed.to(tokens.dtype)], dim=1)
        x = self.norm(self.blocks(x))
        return x[:, prefix.shape[1] :]


class CrossAttention(nn.Module):
    """Multi-head cross-attention (q from x, k/v from context) through :func:`cellmae.models.attention.attention`.

    timm has no cross-attention module with this parameter layout (q, kv, proj), which the OpenPhenom
    checkpoint uses; hence this small module.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"decoder width {dim} is not divisible by {num_heads} cross-attention heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        m = context.shape[1]
        h = self.num_heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CAMAEDecoder(nn.Module):
    """CA-MAE decoder: per-channel query tokens cross-attend to all tokens, then per-channel blocks.

    ``separate_channel_blocks=True`` gives every channel slot its own block stack (OpenPhenom's layout,
    channel slots by position); False shares one stack, run once over all B*C channel sequences.
    Numerically the same as the reference loop over channels, but the cross-attention (every channel's
    queries see the same context) and the shared MLP run once over all channels, and the context keys
    and values are computed once instead of once per channel.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        grid: int,
        num_channel_slots: int,
        separate_channel_blocks: bool = False,
        mlp_ratio: float = 4.0,
        cross_attn_heads: int = 8,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_channel_slots = num_channel_slots
        self.tokens_per_channel = grid * grid
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.register_buffer("pos_embed", sincos_2d_pos_embed(embed_dim, grid)[None], persistent=False)
        self.modality_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, embed_dim)) for _ in range(num_channel_slots))
        for p in self.modality_tokens:
            trunc_normal_(p, std=0.02)
        self.cross_attention = CrossAttention(embed_dim, cross_attn_heads)
        self.mlp = Mlp(embed_dim, hidden_features=int(embed_dim * mlp_ratio))
        stacks = num_channel_slots if separate_channel_blocks else 1
        self.decoders = nn.ModuleList(_blocks(embed_dim, depth, num_heads, mlp_ratio) for _ in range(stacks))
        self.context_norm = _norm(embed_dim)
        self.query_norm = _norm(embed_dim)
        self.out_norm = _norm(embed_dim)

    def forward(self, prefix: torch.Tensor, tokens: torch.Tensor, num_channels: int) -> torch.Tensor:
        """tokens (B, C*N, D) channel-major -> (B, C*N, D); the prefix (class token) is not used."""
        if num_channels > self.num_channel_slots:
            raise ValueError(f"the decoder has {self.num_channel_slots} channel slots, got {num_channels} channels")
        tokens = _autocast_residual(tokens)
        b, length, d = tokens.shape
        n = self.tokens_per_channel
        queries = torch.cat(list(self.modality_tokens[:num_channels]), dim=1)  # (1, C, D)
        slot = queries.repeat_interleave(n, dim=1)
        pos = self.pos_embed.repeat(1, num_channels, 1)
        x = tokens + (pos + slot).to(tokens.dtype)
        x = self.cross_attention(self.query_norm(x), self.context_norm(x))  # no residual, as OpenPhenom
        x = x + self.mlp(self.out_norm(x))
        if len(self.decoders) == 1:
            x = self.decoders[0](x.reshape(b * num_channels, n, d)).reshape(b, length, d)
        else:
            # split, not slicing: its backward is one cat, a slice's builds a zero tensor of x's size
            x = torch.cat([stack(xc) for stack, xc in zip(self.decoders, x.split(n, dim=1), strict=False)], dim=1)
        return x
