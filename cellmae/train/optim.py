"""Optimizers (AdamW, Lion) with weight decay only where it belongs.

As in timm's ``param_groups_weight_decay``, 1-D params (norms) and biases get no decay; on top of it we
exclude embeddings by name (position/channel embeddings, class and mask tokens, ``nn.Embedding``
weights), as the MAE and ViTally Consistent recipes do, because decaying them shrinks a learned
lookup table towards zero rather than regularising a transform.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from cellmae.train.config import OptimConfig

# Leaf parameter names (or suffixes) that are embeddings/tokens, never decayed.
_EMBEDDING_LEAVES = ("pos_embed", "cls_token", "mask_token", "reg_token", "dist_token")


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full parameter names to exclude from weight decay beyond 1-D params and biases."""
    names: set[str] = set()
    # timm convention: model.no_weight_decay() returns names relative to that module.
    for prefix, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if callable(fn):
            for n in fn():
                names.add(f"{prefix}.{n}" if prefix else n)
        if isinstance(module, nn.Embedding):
            names.add(f"{prefix}.weight" if prefix else "weight")
    for name, _ in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith(_EMBEDDING_LEAVES) or "embed" in leaf or leaf.endswith("_token"):
            names.add(name)
    return names


_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.", "module.")


def clean_param_name(name: str) -> str:
    """Parameter name without the prefixes FSDP, activation checkpointing, compile and DDP insert."""
    for p in _WRAPPER_PREFIXES:
        name = name.replace(p, "")
    return name


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Names (wrapper prefixes removed) of parameters that get no weight decay: 1-D params (norms),
    biases and embeddings. Compute this on the unwrapped model: under FSDP every shard is 1-D."""
    skip = {clean_param_name(n) for n in no_weight_decay_names(model)}
    for name, p in model.named_parameters():
        if p.ndim <= 1 or name.endswith(".bias"):
            skip.add(clean_param_name(name))
    return skip


def param_groups(named_parameters: Iterable[tuple[str, nn.Parameter]], no_decay: set[str],
                 weight_decay: float) -> list[dict]:
    """Decayed and non-decayed parameter groups (the same split as timm's ``param_groups_weight_decay``,
    but by precomputed name so it also holds for FSDP's flattened shards)."""
    decay, keep = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (keep if clean_param_name(name) in no_decay else decay).append(p)
    groups = [{"params": keep, "weight_decay": 0.0, "name": "no_decay"}]
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "name": "decay"})
    return [g for g in groups if g["params"]]


def decayed_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that receive weight decay (for logs and tests)."""
    skip = no_decay_parameter_names(model)
    return [n for n, p in model.named_parameters() if p.requires_grad and clean_param_name(n) not in skip]


def create_optimizer(model_or_groups: nn.Module | list[dict], cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW (torch) or Lion (lion-pytorch) at peak ``lr`` over a model (grouped here) or given groups."""
    if isinstance(model_or_groups, nn.Module):
        groups = param_groups(model_or_groups.named_parameters(), no_decay_parameter_names(model_or_groups),
                              cfg.weight_decay)
    else:
        groups = model_or_groups
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    if cfg.name == "adamw":
        params = [p for g in groups for p in g["params"]]
        # torch picks the per-tensor loop on CPU by default; the multi-tensor (foreach) kernel was ~5x
        # faster per step on the tiny CA-MAE, where the loop took ~17% of a CPU training step. (The fused
        # kernel is faster still, but Lightning's mixed-precision plugin refuses gradient clipping with it.)
        foreach = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                 foreach=foreach or None)
    if cfg.name == "lion":
        from lion_pytorch import Lion

        return Lion(groups, lr=lr, betas=betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name: unknown optimizer {cfg.name!r}; expected adamw or lion")


def effective_lr(cfg: OptimConfig, global_batch_size: int) -> float:
    """Peak learning rate, scaled by global_batch/256 when ``scale_lr_with_batch`` is on."""
    return cfg.lr * global_batch_size / 256 if cfg.scale_lr_with_batch else cfg.lr
