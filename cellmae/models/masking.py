"""Random token masking over all channel x patch tokens (MAE), reproducible from a seed.

Returns indices so that encoders *gather* the visible tokens (compute scales with 1 - mask_ratio)
instead of multiplying by a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenMask:
    """ids_keep (B, K) visible tokens in sorted-noise order; ids_restore (B, L) to unshuffle; mask (B, L) 1=masked."""

    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    mask: torch.Tensor


def num_visible_tokens(num_tokens: int, mask_ratio: float) -> int:
    """Tokens kept for a given ratio (MAE's ``int(L * (1 - ratio))``, at least one)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return max(1, int(num_tokens * (1.0 - mask_ratio)))


def random_token_mask(
    batch: int, num_tokens: int, mask_ratio: float, *, device: torch.device | str = "cpu", seed: int | None = None
) -> TokenMask:
    """Draw a per-sample random mask; with ``seed`` the mask is identical on every device and run."""
    keep = num_visible_tokens(num_tokens, mask_ratio)
    if seed is None:
        noise = torch.rand(batch, num_tokens, device=device)
    else:
        # generated on CPU so the same seed gives the same mask on CPU and GPU
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.rand(batch, num_tokens, generator=gen).to(device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, num_tokens, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return TokenMask(ids_keep=ids_keep, ids_restore=ids_restore, mask=mask)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (B, L, D) -> (B, K, D) rows ``ids`` (B, K)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
