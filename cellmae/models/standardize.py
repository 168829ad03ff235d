"""Input self-standardization: uint8 -> float, then per-image, per-channel zero mean / unit variance.

Done inside every model so callers hand over raw uint8 crops and never have to know dataset statistics
(the paper's choice; it also removes most plate-level intensity drift before the encoder sees it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5  # torch.nn.InstanceNorm2d's default, as in the reference implementation


def self_standardize(images: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Return float32 (B, C, H, W) images standardized per image and channel.

    uint8 input is scaled to [0, 1] first (the scaling cancels out except for ``eps``, which keeps the
    published models' numerics). Float input is taken as is.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    # instance_norm computes in fp32 even under autocast, which keeps flat (near-constant) crops stable
    return F.instance_norm(x, eps=eps)
