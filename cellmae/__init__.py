"""cellmae: masked autoencoders for cell microscopy, from images on disk to a benchmarked map of biology.

The Python API for notebooks (docs/api.md)::

    import cellmae

    screen = cellmae.simulate_screen("screen", preset="tiny")
    model = cellmae.load_model("hf:recursionpharma/OpenPhenom")      # any `cellmae embed --model` spec
    vectors = model.embed(images_uint8, channels=["DNA", "ER", "RNA", "AGP", "Mito"])   # (B, D)
    wells = cellmae.embed_screen(screen, model)                       # DataFrame, one row per well
    m = cellmae.build_map(wells)                                      # aligned + aggregated DataFrames
    bench = cellmae.run_bench(m, relationships="screen/truth")        # tables + summary

Exports are imported on first use, so ``cellmae --help`` loads no torch.
"""

from cellmae.utils.lazy import lazy_dir, lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "cellmae.api",
    "embed_screen": "cellmae.api",
    "build_map": "cellmae.api",
    "run_bench": "cellmae.api",
    "MapResult": "cellmae.api",
    "BenchResult": "cellmae.api",
    "simulate_screen": "cellmae.data.simulate",
    "open_screen": "cellmae.data.readers",
    "read_embeddings": "cellmae.embed.io",
    "create_model": "cellmae.models.registry",
    "list_models": "cellmae.models.registry",
    "save_pretrained": "cellmae.models.checkpoint",
    "from_pretrained": "cellmae.models.checkpoint",
    "push_to_hub": "cellmae.models.card",
}
__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__ = lazy_getattr("cellmae", _EXPORTS)
__dir__ = lazy_dir(globals(), _EXPORTS)
