"""Encoders, tokenizers, decoders, masking, losses, classifiers, presets and checkpoints.

Public API (docs/CONTRACTS.md section 3)::

    from cellmae.models import create_model, list_models, save_pretrained, from_pretrained, load_openphenom

Imports are lazy so that ``cellmae --help`` (which imports every stage's CLI) does not load torch.
"""

from __future__ import annotations

from cellmae.utils.lazy import lazy_getattr

_EXPORTS = {
    "from_pretrained": "cellmae.models.checkpoint",
    "save_pretrained": "cellmae.models.checkpoint",
    "load_openphenom": "cellmae.models.openphenom",
    "load": "cellmae.models.loader",
    "SourceInfo": "cellmae.models.loader",
    "PRESETS": "cellmae.models.registry",
    "create_model": "cellmae.models.registry",
    "list_models": "cellmae.models.registry",
    "model_summary": "cellmae.models.registry",
    "model_from_config": "cellmae.models.registry",
    "self_standardize": "cellmae.models.standardize",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr("cellmae.models", _EXPORTS)
