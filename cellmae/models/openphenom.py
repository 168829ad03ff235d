"""Loader for the public OpenPhenom CA-MAE ViT-S/16 checkpoint (recursionpharma "Phenom-Beta").

The checkpoint is a torch file holding ``{"state_dict": ...}`` (read with ``weights_only=True``, so no
code is unpickled) in the maes_microscopy layout:

* ``encoder.vit_backbone.{cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, fc_norm.*}`` where each
  block is a timm ``ParallelScalingBlock`` (``in_norm``, fused ``in_proj`` = [mlp-in | q | k | v],
  ``mlp_bias``, ``q_norm``, ``k_norm``, ``attn_out_proj``, ``mlp_out_proj``, ``ls.gamma``);
* ``decoder.*`` (CA-MAE decoder), ``encoder_decoder_proj.*``, ``decoder_pred.*``.

Our :class:`MaskedAutoencoder` uses the same parameter names below the prefixes, so loading is a
prefix rename plus three fixed tensors that we recompute instead of storing (the sin-cos tables, whose
values are checked, and the decoder's all-zero class-token placeholder) and ``fc_norm``, which neither
MAE training nor the published embedding (mean of last-block patch tokens, no final norm) uses.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cellmae.models.checkpoint import check_state_dict
from cellmae.models.registry import create_model
from cellmae.utils.errors import reading

OPENPHENOM_PRESET = "camae_vit_small_patch16_256"
_ENC = "encoder.vit_backbone."
# Present in the published file, not parameters of our model (see module docstring).
_FIXED_KEYS = (f"{_ENC}pos_embed", "decoder.pos_embeddings", "decoder.placeholder")
_UNUSED_KEYS = (f"{_ENC}fc_norm.weight", f"{_ENC}fc_norm.bias")


def read_openphenom_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The raw state dict of an OpenPhenom file (torch zip with {"state_dict"}, or safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if zipfile.is_zipfile(path):  # the public "model.safetensors" is in fact a torch.save zip
        with reading(path, "checkpoint"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    else:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - report any format error with the path
            raise ValueError(f"{path}: neither a torch zip checkpoint nor a safetensors file ({err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors under 'state_dict'")
    return state


def openphenom_to_cellmae(state: dict[str, torch.Tensor], model: nn.Module, *, source: str) -> dict[str, torch.Tensor]:
    """Rename an OpenPhenom state dict to our keys, checking the fixed tensors it carries."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _UNUSED_KEYS or key in _FIXED_KEYS:
            continue
        if key.startswith(_ENC + "patch_embed."):
            out["encoder.tokenizer." + key[len(_ENC) :]] = value
        elif key.startswith(_ENC):
            out["encoder." + key[len(_ENC) :]] = value
        else:
            out[key] = value
    missing_fixed = [k for k in (*_FIXED_KEYS, *_UNUSED_KEYS) if k not in state]
    if missing_fixed:
        raise ValueError(f"{source}: not an OpenPhenom checkpoint, missing keys: {missing_fixed}")
    _check_sincos(state[f"{_ENC}pos_embed"], model.encoder.tokenizer.pos_embed, f"{source}: {_ENC}pos_embed")
    _check_sincos(state["decoder.pos_embeddings"], model.decoder.pos_embed, f"{source}: decoder.pos_embeddings")
    return out


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


def load_openphenom(
    path: str | os.PathLike, *, preset: str = OPENPHENOM_PRESET, map_location: str | torch.device = "cpu", **overrides: Any
) -> nn.Module:
    """Build ``preset`` (the OpenPhenom architecture by default) and load the checkpoint at ``path``.

    Strict: any missing, unexpected or wrong-shape key raises ValueError listing all of them.
    """
    state = read_openphenom_state_dict(path)
    model = create_model(preset, **overrides)
    renamed = openphenom_to_cellmae(state, model, source=str(path))
    check_state_dict(model, renamed, source=str(path))
    model.load_state_dict(renamed, strict=True)
    return model.to(map_location)
