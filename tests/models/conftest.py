"""Tiny models and uint8 crops shared by the model tests (all CPU, all seconds)."""

from __future__ import annotations

import pytest
import torch

from cellmae.models import create_model

NAMES11 = ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM", "AGP", "Brightfield", "FITC", "Tubulin", "Other")


# same architecture as the tiny presets, narrower, so every test runs in about a second
SMALL = {"depth": 3, "embed_dim": 96, "num_heads": 3, "decoder_embed_dim": 64, "decoder_depth": 1}


def uint8_images(batch: int, channels: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, size, size), generator=gen, dtype=torch.uint8)


@pytest.fixture
def camae() -> torch.nn.Module:
    """CA-MAE tiny preset cut to 3 blocks (and narrower) to keep tests fast."""
    torch.manual_seed(0)
    return create_model("camae_vit_tiny_patch8_64", **SMALL).eval()


@pytest.fixture
def mae_std() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mae_vit_tiny_patch8_64", **SMALL).eval()
