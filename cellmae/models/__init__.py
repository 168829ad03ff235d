"""Encoders, tokenizers, decoders, masking, losses, classifiers, presets and checkpoints.

Public API (docs/CONTRACTS.md section 3)::

    from cellmae.models import create_model, list_models, save_pretrained, from_pretrained, load_openphenom
"""

from cellmae.models.checkpoint import from_pretrained, save_pretrained
from cellmae.models.openphenom import load_openphenom
from cellmae.models.registry import PRESETS, create_model, list_models, model_summary
from cellmae.models.standardize import self_standardize

__all__ = [
    "PRESETS",
    "create_model",
    "from_pretrained",
    "list_models",
    "load_openphenom",
    "model_summary",
    "save_pretrained",
    "self_standardize",
]
