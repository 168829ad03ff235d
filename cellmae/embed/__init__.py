"""Featurize whole screens with a model, from any block, resumably.

``embed_screen(screen, model_source, out_dir, blocks=..., tile=..., ...) -> {block: folder}``,
``embed_handcrafted(screen, out_dir) -> {0: folder}`` and ``read_embeddings(folder) -> DataFrame``.
Imports are lazy so that ``cellmae --help`` does not load torch.
"""

from __future__ import annotations

from cellmae.utils.lazy import lazy_dir, lazy_getattr

_EXPORTS = {
    "embed_screen": "cellmae.embed.pipeline",
    "embed_handcrafted": "cellmae.embed.pipeline",
    "run_embedding": "cellmae.embed.pipeline",
    "run_handcrafted": "cellmae.embed.pipeline",
    "EmbedSummary": "cellmae.embed.pipeline",
    "read_embeddings": "cellmae.embed.io",
    "write_anndata": "cellmae.embed.io",
}
__all__ = list(_EXPORTS)

__getattr__ = lazy_getattr("cellmae.embed", _EXPORTS)
__dir__ = lazy_dir(globals(), _EXPORTS)
