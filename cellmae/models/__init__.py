"""Encoders, tokenizers, decoders, masking, losses, classifiers, presets and checkpoints.

Public API (docs/CONTRACTS.md section 3)::

    from cellmae.models import create_model, list_models, save_pretrained, from_pretrained, load_openphenom
    from cellmae.models import load, push_to_hub   # load(spec): the one model loader (cellmae.load_model)

Imports are lazy so that ``cellmae --help`` (which imports every stage's CLI) does not load torch.
"""

from __future__ import annotations

from cellmae.utils.lazy import lazy_dir, lazy_getattr

_EXPORTS = {
    "from_pretrained": "cellmae.models.checkpoint",
    "save_pretrained": "cellmae.models.checkpoint",
    "load_openphenom": "cellmae.models.openphenom",
    "load": "cellmae.models.loader",
    "push_to_hub": "cellmae.models.card",
    "model_card": "cellmae.models.card",
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
__dir__ = lazy_dir(globals(), _EXPORTS)
