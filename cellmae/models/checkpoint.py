"""Checkpoints as safetensors weights + a JSON config: loading never unpickles code.

``save_pretrained(model, dir)`` writes ``dir/model.safetensors``, ``dir/config.json`` and a model card
``dir/README.md`` atomically
(the folder appears whole or not at all); ``from_pretrained(dir)`` rebuilds the model from the config
and loads the weights with strict key and shape checks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cellmae import __version__
from cellmae.layout import MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE
from cellmae.models.card import write_model_card
from cellmae.models.registry import model_from_config
from cellmae.utils.atomic import atomic_dir, chmod_like_open
from cellmae.utils.errors import reading

FORMAT = "cellmae-model"


def save_pretrained(model: nn.Module, directory: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``directory`` (replaced atomically if it exists); return the directory.

    Besides the weights and config.json, a model card (README.md: architecture, and from ``extra``
    the training data and steps under "train" and benchmark numbers under "metrics")."""
    directory = Path(directory)
    meta = {
        "format": FORMAT,
        "format_version": 1,
        "cellmae_version": __version__,
        "preset": getattr(model, "preset", None),
        "config": model.config,
        **(extra or {}),
    }
    # clone + contiguous: safetensors refuses shared or strided storage
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_dir(directory) as tmp:
        save_file(state, str(tmp / MODEL_WEIGHTS_FILE), metadata={"format": "pt"})
        chmod_like_open(tmp / MODEL_WEIGHTS_FILE)  # safetensors writes 0600
        (tmp / MODEL_CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        write_model_card(model, tmp, meta)
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a saved model (the model config is under "config")."""
    path = Path(directory) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; is {directory} a save_pretrained() folder?")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path}: not a cellmae model config (format={meta.get('format')!r})")
    return meta


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str, prefix: str = "") -> None:
    """Raise ValueError listing missing, unexpected and wrong-shape keys (all of them, at once);
    with ``prefix``, only the model's keys under it are expected (e.g. the encoder alone)."""
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [f"{source}: weights do not match the model"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if shapes:
            parts.append(f"wrong shapes ({len(shapes)}): {shapes}")
        raise ValueError("\n  ".join(parts))


def from_pretrained(directory: str | os.PathLike, *, map_location: str | torch.device = "cpu", **overrides: Any) -> nn.Module:
    """Rebuild a model saved with :func:`save_pretrained`; ``overrides`` change non-weight options
    (e.g. ``drop_path_rate=0``, ``mask_ratio``)."""
    directory = Path(directory)
    meta = read_config(directory)
    weights = directory / MODEL_WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: weights file missing")
    model = model_from_config({**meta["config"], **overrides})
    if meta.get("preset"):
        model.preset = meta["preset"]
    with reading(weights, "safetensors weights file", "it may be truncated: save or download it again"):
        state = load_file(str(weights), device=str(map_location))
    check_state_dict(model, state, source=str(weights))
    model.load_state_dict(state, strict=True)
    return model.to(map_location)
