"""Fixed 2D sin-cos position embeddings, repeated per channel for channel-agnostic tokenizers.

Hand-written (instead of timm's ``build_sincos2d_pos_embed``) because the feature layout must match
the public OpenPhenom checkpoint exactly: [sin(h), cos(h), sin(w), cos(w)], each ``dim // 4`` wide,
with frequencies ``scale ** -(i / (dim // 4))``.
"""

from __future__ import annotations

import torch


def sincos_2d_pos_embed(dim: int, grid: int, *, num_channels: int = 1, scale: float = 10000.0) -> torch.Tensor:
    """Return a (num_channels * grid * grid, dim) float32 table; rows ordered channel-major, then row-major."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need embed_dim divisible by 4, got {dim}")
    pos = torch.arange(grid, dtype=torch.float32)
    hh, ww = torch.meshgrid(pos, pos, indexing="ij")
    quarter = dim // 4
    freqs = 1.0 / (scale ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    h = torch.outer(hh.flatten(), freqs)
    w = torch.outer(ww.flatten(), freqs)
    table = torch.cat([torch.sin(h), torch.cos(h), torch.sin(w), torch.cos(w)], dim=1)
    return table.repeat(num_channels, 1)
