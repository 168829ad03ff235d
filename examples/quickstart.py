# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # cellmae quickstart: screen -> model -> embeddings -> map -> benchmark
#
# A tiny simulated screen (2 experiments, 12 genes, 2 compounds; seconds to make), embedded with an
# untrained tiny CA-MAE so that the notebook runs anywhere in well under a minute. For real features, swap
# the model line for the published OpenPhenom model or your own checkpoint:
#
# ```python
# model = cellmae.load_model("hf:recursionpharma/OpenPhenom")   # or its downloaded folder / file
# model = cellmae.load_model("RUN/train/camae")                 # a `cellmae train` checkpoint
# ```
#
# Open it in Jupyter with `jupytext --to notebook examples/quickstart.py`, or run it as a script:
# `python examples/quickstart.py [WORK_DIR]`.

# %%
import sys
from pathlib import Path

import torch

import cellmae

work = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "cellmae-quickstart")

# %% [markdown]
# ## 1. A screen with known biology
# RxRx layout (6 channels) plus `truth/`: which genes share a phenotype, which compounds hit which gene.

# %%
screen_dir = cellmae.simulate_screen(work / "screen", preset="tiny", seed=0)
screen = cellmae.open_screen(screen_dir)
print(len(screen), "fields, channels", screen.channels)

# %% [markdown]
# ## 2. A model, and embeddings of a few images
# Here: a 4-block tiny CA-MAE, untrained, saved like a trained one (weights, config.json and a model
# card README.md) and loaded back. `load_model` takes every `cellmae embed --model` spec. `embed`
# takes uint8 (B, C, H, W) images and the channel names in stack order, and returns (B, D): the mean
# of the last block's patch tokens.

# %%
torch.manual_seed(0)
cellmae.save_pretrained(cellmae.create_model("camae_vit_tiny_patch16_64", depth=4), work / "model")
model = cellmae.load_model(work / "model")
field = screen.read_field(0)  # (C, 128, 128) uint8
crops = field[None, :, :64, :64]
vectors = model.embed(crops, channels=screen.channels)
print("embedding of one 64x64 crop:", tuple(vectors.shape), "from a", model.source_info.kind, "checkpoint")

# %% [markdown]
# ## 3. Embed every well
# Fields are tiled to the model's input size, tiles averaged to sites and sites to wells.

# %%
wells = cellmae.embed_screen(screen_dir, model, work / "embed" / "tiny", num_workers=0)
print(wells.shape, "(wells x metadata + features)")

# %% [markdown]
# ## 4. A map: align to controls per experiment (TVN) and aggregate per perturbation

# %%
m = cellmae.build_map(wells, work / "map" / "tiny", align="tvn")
print(len(m.aligned), "aligned wells,", len(m.aggregated), "perturbation profiles")

# %% [markdown]
# ## 5. Benchmark against the simulator's ground truth

# %%
# n_negatives: RxRx3-core samples max(2 x targets, 20) non-target genes per compound; this tiny
# screen has only 12 genes, so the example asks for at least 5.
bench = cellmae.run_bench(m, work / "bench" / "tiny", relationships=screen_dir / "truth",
                          n_null=200, map_null_size=500, n_negatives=5)
for line in bench.lines():
    print(line)
bench.table("consistency").head()
