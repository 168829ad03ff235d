"""Named presets (data, not code branches) and the model factory.

``create_model(name, **overrides)`` builds any preset; ``list_models()`` names them; ``model_summary``
counts parameters on the 'meta' device, so even ViT-G/8 (~1.9B parameters) is described without
allocating it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from cellmae.data.schema import RXRX_CHANNELS

# ViT sizes of the papers (Kraus et al. 2024; Kenyon-Dean et al. 2025). Encoders follow
# maes_microscopy: parallel-scaling blocks, qk-norm, no qkv bias, LayerScale 1e-4.
_SIZES: dict[str, dict[str, Any]] = {
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0, "drop_path_rate": 0.1},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0, "drop_path_rate": 0.1},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0, "drop_path_rate": 0.3},
    "gigantic": {"embed_dim": 1664, "depth": 48, "num_heads": 16, "mlp_ratio": 64 / 13, "drop_path_rate": 0.3},
}
_PAPER_ENCODER = {"block": "parallel", "qkv_bias": False, "qk_norm": True, "init_values": 1e-4, "img_size": 256}
_PAPER_DECODER = {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
_PAPER_GRID = (("small", 16), ("base", 16), ("base", 8), ("large", 16), ("large", 8), ("gigantic", 8))

PRESETS: dict[str, dict[str, Any]] = {}
for _size, _patch in _PAPER_GRID:
    _base = {**_SIZES[_size], **_PAPER_ENCODER, **_PAPER_DECODER, "patch_size": _patch}
    PRESETS[f"camae_vit_{_size}_patch{_patch}_256"] = {
        "family": "mae", **_base, "tokenizer": "channel_agnostic", "decoder": "camae", "decoder_channel_slots": 11,
    }
    PRESETS[f"mae_vit_{_size}_patch{_patch}_256"] = {
        "family": "mae", **_base, "tokenizer": "standard", "decoder": "mae", "channels": list(RXRX_CHANNELS),
    }

# OpenPhenom (recursionpharma, "Phenom-Beta"): ViT-S/16 CA-MAE, 11-channel encoder capacity, fixed
# sin-cos positions, no final norm, decoder 8x512 with one block stack per channel slot (6 slots).
PRESETS["camae_vit_small_patch16_256"].update(
    final_norm=False, decoder_channel_slots=6, decoder_separate_channel_blocks=True, fourier_weight=0.0,
)

# Tiny presets that train on a laptop CPU (ViT-T width at 64x64, patch 8 -> 64 tokens per channel).
_TINY = {
    "img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 12, "num_heads": 3, "mlp_ratio": 4.0,
    "decoder_embed_dim": 128, "decoder_depth": 2, "decoder_num_heads": 4,
}
PRESETS["camae_vit_tiny_patch8_64"] = {
    "family": "mae", **_TINY, "tokenizer": "channel_agnostic", "decoder": "camae", "decoder_channel_slots": 11,
    "block": "parallel", "qkv_bias": False, "qk_norm": True, "init_values": 1e-4,
}
# The demo's CA-MAE: 16 px patches give 16 tokens per channel of a 64 px crop (96 for 6 channels), so a
# CPU trains ~3.5x more steps per minute and embeds a screen ~5x faster than at patch 8, with at least
# as good features after a few minutes (docs/demo.md, "Choosing the demo model").
PRESETS["camae_vit_tiny_patch16_64"] = {**PRESETS["camae_vit_tiny_patch8_64"], "patch_size": 16}
# Half the width of the demo's CA-MAE (96 instead of 192, 3 heads of 32): the small end of the model-size
# axis of the scaling study (docs/scaling.md), ~4x fewer FLOPs per crop.
PRESETS["camae_vit_mini_patch16_64"] = {**PRESETS["camae_vit_tiny_patch16_64"], "embed_dim": 96}
PRESETS["mae_vit_tiny_patch8_64"] = {
    "family": "mae", **_TINY, "tokenizer": "standard", "decoder": "mae", "channels": list(RXRX_CHANNELS),
}
PRESETS["cnn_mae_tiny_64"] = {
    "family": "cnn_mae", "img_size": 64, "patch_size": 8, "widths": [32, 64, 128], "channels": list(RXRX_CHANNELS),
}
PRESETS["cnn_mae_small_256"] = {
    "family": "cnn_mae", "img_size": 256, "patch_size": 16, "widths": [64, 128, 256, 512], "blocks_per_stage": 2,
    "channels": list(RXRX_CHANNELS),
}
PRESETS["wsl_tiny_64"] = {  # timm's 0.2M-parameter test ConvNeXt: CPU smoke tests and demos
    "family": "wsl", "backbone": "test_convnext", "img_size": 64, "channels": list(RXRX_CHANNELS), "num_classes": 2,
}
PRESETS["wsl_densenet161_256"] = {
    "family": "wsl", "backbone": "densenet161", "img_size": 256, "channels": list(RXRX_CHANNELS), "num_classes": 1139,
}
PRESETS["wsl_convnext_small_256"] = {
    "family": "wsl", "backbone": "convnext_small", "img_size": 256, "channels": list(RXRX_CHANNELS), "num_classes": 1139,
}
PRESETS["wsl_vit_small_patch16_256"] = {
    "family": "wsl", "backbone": "vit_small_patch16_224", "img_size": 256, "channels": list(RXRX_CHANNELS),
    "num_classes": 1139,
}

# Published weights that cellmae.models.load reads (architecture from the file; counts from the preset).
PUBLISHED: dict[str, dict[str, str]] = {
    "openphenom": {"preset": "camae_vit_small_patch16_256", "source": "hf:recursionpharma/OpenPhenom"},
}


def list_models(family: str | None = None) -> list[str]:
    """Preset names, sorted; optionally only one family ('mae', 'cnn_mae', 'wsl')."""
    return sorted(n for n, p in PRESETS.items() if family is None or p["family"] == family)


def preset_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The preset's config dict with ``overrides`` applied (unknown keys are rejected by the model)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; known presets: {', '.join(list_models())}")
    return {**PRESETS[name], **overrides}


_FAMILIES = {
    # family -> (module, config class, model class); imported lazily so one family's deps stay optional
    "mae": ("cellmae.models.mae", "MAEConfig", "MaskedAutoencoder"),
    "cnn_mae": ("cellmae.models.cnn_mae", "CNNMAEConfig", "CNNMaskedAutoencoder"),
    "wsl": ("cellmae.models.classifier", "WSLConfig", "WSLClassifier"),
}


def _family_classes(family: str) -> tuple[type, type]:
    import importlib

    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(_FAMILIES)}")
    module, cfg_name, model_name = _FAMILIES[family]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, model_name)


def model_from_config(config: dict[str, Any]) -> nn.Module:
    """Build a model from a config dict (as stored in config.json); rejects unknown keys by name."""
    family = config.get("family", "mae")
    cfg_cls, model_cls = _family_classes(family)
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for a {family!r} model; valid: {sorted(known)}")
    return model_cls(cfg_cls(**config))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build preset ``name`` (randomly initialised) with keyword ``overrides`` of its config."""
    model = model_from_config(preset_config(name, **overrides))
    model.preset = name
    return model


def model_summary(name: str, **overrides: Any) -> dict[str, Any]:
    """Parameter counts and input spec of a preset, computed on the meta device (no memory used)."""
    with torch.device("meta"):
        model = create_model(name, **overrides)
    cfg = model.config
    encoder = getattr(model, "encoder", None)
    total = sum(p.numel() for p in model.parameters())
    enc = sum(p.numel() for p in encoder.parameters()) if encoder is not None else total
    channels = model.expected_channels
    return {
        "name": name,
        "family": cfg["family"],
        "params": total,
        "encoder_params": enc,
        "img_size": cfg.get("img_size"),
        "patch_size": cfg.get("patch_size"),
        "channels": "any (<= {})".format(cfg.get("max_channels")) if channels is None else ",".join(channels),
        "num_blocks": model.num_blocks,
        "embed_dim": model.embed_dim,
    }


def published_summary(name: str) -> dict[str, Any]:
    """:func:`model_summary` of a published model's architecture, with where its weights come from."""
    entry = PUBLISHED[name]
    return {**model_summary(entry["preset"]), "name": name, "source": entry["source"], "preset": entry["preset"]}
