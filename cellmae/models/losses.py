"""MAE losses: per-patch MSE over masked tokens (optional norm-pix) and the Fourier loss.

Fourier loss (Kraus et al. 2024): L1 between |FFT2| of the reconstructed and the target patch, which
rewards texture (high-frequency content) that plain MSE blurs away. total = (1 - w) * MSE + w * Fourier.
Computed in float32 whatever the autocast dtype (torch.fft has no bf16 kernels on CPU).
"""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch_size: int, *, channel_agnostic: bool) -> torch.Tensor:
    """(B, C, H, W) -> tokens in the tokenizer's order.

    channel-agnostic: (B, C*h*w, p*p), channel-major; standard: (B, h*w, p*p*C) ordered (p, p, C) as in MAE.
    """
    b, c, hh, ww = images.shape
    p = patch_size
    h, w = hh // p, ww // p
    x = images.reshape(b, c, h, p, w, p)
    if channel_agnostic:
        return x.permute(0, 1, 2, 4, 3, 5).reshape(b, c * h * w, p * p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, p * p * c)


def unpatchify(tokens: torch.Tensor, patch_size: int, num_channels: int, *, channel_agnostic: bool) -> torch.Tensor:
    """Inverse of :func:`patchify` for square images."""
    b = tokens.shape[0]
    p, c = patch_size, num_channels
    n = tokens.shape[1] // c if channel_agnostic else tokens.shape[1]
    h = int(round(n**0.5))
    if h * h != n:
        raise ValueError(f"{n} tokens per channel do not form a square grid")
    if channel_agnostic:
        x = tokens.reshape(b, c, h, h, p, p).permute(0, 1, 2, 4, 3, 5)
    else:
        x = tokens.reshape(b, h, h, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h * p, h * p)


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-token standardization of the target (MAE's norm_pix_loss)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True, unbiased=False)
    return (target - mean) / (var + eps) ** 0.5


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, L) values over tokens where mask == 1."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def mse_per_token(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).pow(2).mean(dim=-1)


def fourier_per_token(pred: torch.Tensor, target: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean |(|FFT2(pred)| - |FFT2(target)|)| per token; tokens are (p*p) or (p*p*C) ordered (p, p, C)."""
    b, length, dim = pred.shape
    p = patch_size
    c = dim // (p * p)

    def spectrum(t: torch.Tensor) -> torch.Tensor:
        t = t.float().reshape(b, length, p, p, c).movedim(-1, 2)  # (B, L, C, p, p)
        return torch.fft.fft2(t).abs()

    return (spectrum(pred) - spectrum(target)).abs().flatten(2).mean(dim=-1)


def mae_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    patch_size: int,
    norm_pix: bool = False,
    fourier_weight: float = 0.01,
) -> dict[str, torch.Tensor]:
    """Return {"loss", "mse", "fourier"} as scalars; ``target`` is the raw patchified image."""
    if not 0.0 <= fourier_weight < 1.0:
        raise ValueError(f"fourier_weight must be in [0, 1), got {fourier_weight}")
    if norm_pix:
        target = normalize_patches(target.float())
    mse = masked_mean(mse_per_token(pred, target), mask)
    out = {"mse": mse}
    if fourier_weight > 0:
        fourier = masked_mean(fourier_per_token(pred, target, patch_size), mask)
        out["fourier"] = fourier
        out["loss"] = (1.0 - fourier_weight) * mse + fourier_weight * fourier
    else:
        out["loss"] = mse
    return out
