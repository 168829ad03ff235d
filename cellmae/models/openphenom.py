"""Loader for the public OpenPhenom CA-MAE ViT-S/16 checkpoint (recursionpharma "Phenom-Beta").

The checkpoint holds ``{"state_dict": ...}`` (a torch zip, published under the name
``model.safetensors``; a real safetensors file works too) in the maes_microscopy layout:

* ``encoder.vit_backbone.{cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, fc_norm.*}`` where each
  block is a timm ``ParallelScalingBlock`` (``in_norm``, fused ``in_proj`` = [mlp-in | q | k | v],
  ``mlp_bias``, ``q_norm``, ``k_norm``, ``attn_out_proj``, ``mlp_out_proj``, ``ls.gamma``);
* ``decoder.*`` (CA-MAE decoder), ``encoder_decoder_proj.*``, ``decoder_pred.*``.

Our :class:`MaskedAutoencoder` uses the same parameter names below the prefixes, so loading is a
prefix rename plus three fixed tensors that we recompute instead of storing (the sin-cos tables, whose
values are checked, and the decoder's all-zero class-token placeholder) and ``fc_norm``, which neither
MAE training nor the published embedding (mean of last-block patch tokens, no final norm) uses.

The architecture is read from the tensors' shapes (width, depth, heads from the qk-norm size, patch,
input size and channel capacity from the position tables, decoder width/depth/stacks), because the
public configs disagree about the decoder; ``config.json`` beside the file only supplies what the
weights cannot tell (decoder heads, mask ratio) and is compared with what the file holds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cellmae.layout import MODEL_CONFIG_FILE
from cellmae.models.checkpoint import check_state_dict
from cellmae.models.registry import PRESETS, create_model, model_from_config
from cellmae.models.weights_io import read_state_dict

log = logging.getLogger(__name__)
OPENPHENOM_PRESET = "camae_vit_small_patch16_256"
_ENC = "encoder.vit_backbone."
# Present in the published file, not parameters of our model (see module docstring).
_ENC_FIXED = (f"{_ENC}pos_embed",)
_DEC_FIXED = ("decoder.pos_embeddings", "decoder.placeholder")
_UNUSED_KEYS = (f"{_ENC}fc_norm.weight", f"{_ENC}fc_norm.bias")
_DEFAULT_DECODER_HEADS = 16  # maes_microscopy's CA-MAE decoder; heads are not visible in the weights
_HEAD_DIM = 64  # timm ViT head width, assumed only when no qk-norm weights show the real one


def is_openphenom_state(state: dict[str, Any]) -> bool:
    """True for the maes_microscopy key layout (``encoder.vit_backbone.*``)."""
    return any(k.startswith(_ENC) for k in state)


def read_openphenom_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The raw state dict of an OpenPhenom file, whatever its name (see cellmae.models.weights_io)."""
    return read_state_dict(path)


def read_hub_config(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The published ``config.json`` (maes_microscopy / Hugging Face MAEModel) in ``directory``, or None."""
    path = Path(directory) / MODEL_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    is_mae = isinstance(cfg, dict) and isinstance(cfg.get("encoder"), dict) and isinstance(cfg.get("decoder"), dict)
    return cfg if is_mae else None


def _indices(state: dict[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.match(k))})


def infer_config(state: dict[str, torch.Tensor], hub_config: dict[str, Any] | None = None, *,
                 source: str = "<state>") -> tuple[dict[str, Any], dict[str, Any]]:
    """(our MAE config, what was found) for an OpenPhenom-layout state dict, from tensor shapes."""
    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"{source}: not an OpenPhenom checkpoint, missing {key}")
        return state[key]

    proj = need(f"{_ENC}patch_embed.proj.weight")
    if proj.ndim != 4 or proj.shape[1] != 1:
        raise ValueError(f"{source}: patch embedding {tuple(proj.shape)} is not channel-agnostic (D, 1, p, p)")
    dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    depth = len(_indices(state, rf"{re.escape(_ENC)}blocks\.(\d+)\."))
    b0 = f"{_ENC}blocks.0."
    if f"{b0}in_proj.weight" not in state:
        raise ValueError(f"{source}: blocks are not timm ParallelScalingBlocks (no {b0}in_proj.weight)")
    head_dim = int(need(f"{b0}q_norm.weight").shape[0]) if f"{b0}q_norm.weight" in state else _HEAD_DIM
    hidden = int(need(f"{b0}mlp_out_proj.weight").shape[1])
    dec_dim = int(state["decoder_pred.weight"].shape[1]) if "decoder_pred.weight" in state else None
    slots = len(_indices(state, r"decoder\.modality_tokens\.(\d+)$"))
    stacks = _indices(state, r"decoder\.decoders\.(\d+)\.")
    dec_depth = len(_indices(state, r"decoder\.decoders\.0\.(\d+)\."))
    hub_dec = (hub_config or {}).get("decoder", {})
    hub_enc = (hub_config or {}).get("encoder", {})
    # tokens per channel: from the decoder's table (slots known), else config.json's channel capacity
    enc_rows = int(need(f"{_ENC}pos_embed").shape[1]) - 1
    if "decoder.pos_embeddings" in state and slots:
        tokens = (int(state["decoder.pos_embeddings"].shape[1]) - 1) // slots
    else:
        tokens = enc_rows // int(hub_enc.get("max_in_chans", 11))
    grid = math.isqrt(tokens)
    if grid * grid != tokens or enc_rows % tokens:
        raise ValueError(f"{source}: position tables ({enc_rows} encoder rows) do not give a square patch grid")
    heads = int(hub_dec.get("num_heads", _DEFAULT_DECODER_HEADS))
    config = {
        "family": "mae", "tokenizer": "channel_agnostic", "decoder": "camae", "block": "parallel",
        "img_size": grid * patch, "patch_size": patch, "embed_dim": dim, "depth": depth,
        "num_heads": dim // head_dim, "mlp_ratio": hidden / dim,
        "qkv_bias": f"{b0}in_proj.bias" in state, "qk_norm": f"{b0}q_norm.weight" in state,
        "init_values": 1e-4 if f"{b0}ls.gamma" in state else None,
        "class_token": f"{_ENC}cls_token" in state, "final_norm": f"{_ENC}norm.weight" in state,
        "max_channels": enc_rows // tokens, "drop_path_rate": 0.0,
        "decoder_embed_dim": dec_dim or 512, "decoder_depth": max(dec_depth, 1),
        "decoder_num_heads": heads if dec_dim and dec_dim % heads == 0 else 1,
        "decoder_channel_slots": max(slots, 1), "decoder_separate_channel_blocks": len(stacks) > 1,
        "fourier_weight": float((hub_config or {}).get("fourier_loss_weight", 0.0)),
        "mask_ratio": float((hub_config or {}).get("mask_ratio") or 0.75),
        "norm_pix_loss": bool((hub_config or {}).get("norm_pix_loss", False)),
    }
    found = {
        "encoder": f"ViT {dim}x{depth} blocks, patch {patch}, {config['img_size']}px, "
                   f"up to {config['max_channels']} channels",
        "decoder": f"{dec_depth} blocks x {dec_dim}, {len(stacks)} stack(s), {slots} channel slots" if dec_dim
                   else "none in the file",
    }
    if hub_dec and dec_dim and (hub_dec.get("depth"), hub_dec.get("embed_dim")) != (dec_depth, dec_dim):
        found["config_json"] = (f"config.json says decoder {hub_dec.get('depth')} x {hub_dec.get('embed_dim')}; "
                                f"built the file's {dec_depth} x {dec_dim}")
    return config, found


def _rename(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenPhenom keys -> ours, without the fixed / unused tensors."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _UNUSED_KEYS or key in _ENC_FIXED or key in _DEC_FIXED:
            continue
        if key.startswith(_ENC + "patch_embed."):
            out["encoder.tokenizer." + key[len(_ENC):]] = value
        elif key.startswith(_ENC):
            out["encoder." + key[len(_ENC):]] = value
        else:
            out[key] = value
    return out


def openphenom_to_cellmae(state: dict[str, torch.Tensor], model: nn.Module, *, source: str) -> dict[str, torch.Tensor]:
    """Rename an OpenPhenom state dict to our keys, checking the fixed tensors it carries."""
    missing_fixed = [k for k in (*_ENC_FIXED, *_DEC_FIXED, *_UNUSED_KEYS) if k not in state]
    if missing_fixed:
        raise ValueError(f"{source}: not an OpenPhenom checkpoint, missing keys: {missing_fixed}")
    _check_sincos(state[f"{_ENC}pos_embed"], model.encoder.tokenizer.pos_embed, f"{source}: {_ENC}pos_embed")
    _check_sincos(state["decoder.pos_embeddings"], model.decoder.pos_embed, f"{source}: decoder.pos_embeddings")
    return _rename(state)


def _check_sincos(table: torch.Tensor, ours: torch.Tensor, where: str) -> None:
    """The stored table must be [zero class row; our per-channel table repeated] (fixed, not learned)."""
    ours = ours[0].float().cpu()
    n, d = ours.shape
    if table.ndim != 3 or table.shape[-1] != d or (table.shape[1] - 1) % n:
        raise ValueError(f"{where}: shape {tuple(table.shape)} is not (1, 1 + C*{n}, {d})")
    reps = (table.shape[1] - 1) // n
    expected = torch.cat([torch.zeros(1, d), ours.repeat(reps, 1)])[None]
    if not torch.allclose(table.float(), expected, atol=1e-4):
        raise ValueError(f"{where}: values differ from the fixed 2D sin-cos table this model uses")


def _load_encoder_only(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict on every encoder key (and the encoder's position table); the decoder is left as built."""
    if f"{_ENC}pos_embed" not in state:
        raise ValueError(f"{source}: not an OpenPhenom checkpoint, missing keys: ['{_ENC}pos_embed']")
    _check_sincos(state[f"{_ENC}pos_embed"], model.encoder.tokenizer.pos_embed, f"{source}: {_ENC}pos_embed")
    enc = {k: v for k, v in _rename(state).items() if k.startswith("encoder.")}
    check_state_dict(model, enc, source=source, prefix="encoder.")
    model.encoder.load_state_dict({k[len("encoder."):]: v for k, v in enc.items()}, strict=True)


def _matches_preset(model: nn.Module, name: str) -> bool:
    preset = {k: v for k, v in PRESETS[name].items() if k != "drop_path_rate"}
    return all(model.config.get(k) == v for k, v in preset.items())


def load_openphenom(
    path: str | os.PathLike, *, preset: str | None = None, map_location: str | torch.device = "cpu",
    strict_decoder: bool = True, hub_config: dict[str, Any] | None = None, **overrides: Any,
) -> nn.Module:
    """Build the architecture the file holds (or ``preset`` with ``overrides``) and load ``path``.

    ``config.json`` beside the file (the published folder) is read for what the weights do not show.
    Strict: any missing, unexpected or wrong-shape key raises ValueError listing all of them. With
    ``strict_decoder=False`` (what embedding uses) the encoder still loads strictly, and a decoder that
    does not fit is reported (``model.load_report``, a logged warning) and left unloaded.
    """
    path = Path(path)
    source = str(path)
    state = read_state_dict(path)
    if not is_openphenom_state(state):
        raise ValueError(f"{source}: not an OpenPhenom checkpoint (no {_ENC}* keys); "
                         "for a cellmae checkpoint pass its folder")
    hub_config = hub_config if hub_config is not None else read_hub_config(path.parent)
    config, found = infer_config(state, hub_config, source=source)
    if preset is not None:
        model = create_model(preset, **overrides)
    else:
        model = model_from_config({**config, **overrides})
        if _matches_preset(model, OPENPHENOM_PRESET):
            model.preset = OPENPHENOM_PRESET
    if not strict_decoder:
        _load_encoder_only(model, state, source)  # any encoder problem stops here, as in strict mode
    try:
        renamed = openphenom_to_cellmae(state, model, source=source)
        check_state_dict(model, renamed, source=source)
        model.load_state_dict(renamed, strict=True)
        found["decoder_loaded"] = True
    except ValueError as err:
        if strict_decoder:
            raise
        found["decoder_loaded"] = False
        found["decoder_problem"] = " ".join(line.strip() for line in str(err).splitlines())
        log.warning("%s: decoder weights not loaded; the encoder (all that embedding uses) loaded strictly: %s",
                    source, found["decoder_problem"])
    log.info("%s: %s", source, "; ".join(f"{k}: {v}" for k, v in found.items()))
    model.load_report = found
    return model.to(map_location)
