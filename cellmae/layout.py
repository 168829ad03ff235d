"""The run folder: where every stage writes, what its files are called, how blocks are named.

This is the only module that types an artifact's file name or a stage folder's name; every
stage, the demo and the report ask it. The layout (see docs/ARCHITECTURE.md)::

    RUN/
      screen/                          simulated or linked raw images + metadata (+ truth/)
      shards/                          LitData shards + cellmae_shards.json + manifest.json
      train/<model>/                   model.safetensors + config.json, checkpoints/, metrics.csv
      embed/<model>/blockNN/           plate=<id>/part-0.parquet (+ embed_config.json, manifest.json)
      map/<model>/blockNN/             aligned.parquet, aggregated.parquet, map.json, manifest.json
      bench/<model>/blockNN/           recall.csv, consistency.csv, ..., summary.json, manifest.json
      bench/<model>/                   probes.csv, best_block.json (the block choice)
      proxy/{screen,embed,map}/        the demo's proxy screen: the probes that choose the block run here
      transfer/{screen,embed,map,bench}/  the demo's channel-transfer screen
      report.html

It depends on nothing but the standard library, so any stage (and ``cellmae --help``) can import it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# ---- file names ----------------------------------------------------------------------------
MANIFEST_FILE = "manifest.json"
SCREEN_CHANNELS_FILE = "channels.json"
SCREEN_METADATA_FILE = "metadata.csv"
TRUTH_DIR = "truth"
TRUTH_RELATIONSHIPS_FILE = "relationships.csv"
TRUTH_GENES_FILE = "genes.csv"
TRUTH_COMPOUNDS_FILE = "compounds.csv"
TRUTH_GUIDES_FILE = "guides.csv"
TRUTH_WELLS_FILE = "wells.csv"
TRUTH_BATCH_EFFECTS_FILE = "batch_effects.csv"
TRUTH_EFFECT_AXES_FILE = "effect_axes.json"
TRUTH_SIMULATION_FILE = "simulation.json"  # the simulator's settings: a rerun with the same ones reuses the screen
SCREEN_PREVIEW_FILE = "preview.png"

SHARDS_INFO_FILE = "cellmae_shards.json"
SHARDS_CROPS_FILE = "crops.parquet"
SHARDS_SKIPPED_FILE = "skipped.csv"
SHARDS_PART_FILE = "part.json"
SHARDS_BUILD_FILE = "build.json"

# a saved model folder (ours, from save_pretrained, and a Hugging Face Hub model repo share them)
MODEL_WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "config.json"
MODEL_CARD_FILE = "README.md"
MODEL_FILES = [MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, MODEL_CARD_FILE]  # what a model repo needs, all we fetch

TRAIN_CONFIG_FILE = "train_config.yaml"
TRAIN_SUMMARY_FILE = "summary.json"
TRAIN_METRICS_FILE = "metrics.csv"
TRAIN_RECON_DIR = "recon"
TRAIN_CHECKPOINT_DIR = "checkpoints"
TRAIN_LAST_CHECKPOINT = "last.ckpt"

EMBED_CONFIG_FILE = "embed_config.json"
EMBED_PART_FILE = "part-0.parquet"
EMBED_PROGRESS_DIR = "_progress"
EMBED_SITES_DIR = "sites"
FEATURE_NAMES_FILE = "feature_names.json"

MAP_ALIGNED_FILE = "aligned.parquet"
MAP_AGGREGATED_FILE = "aggregated.parquet"
MAP_SUMMARY_FILE = "map.json"
# `cellmae map --output-type`: (aligned, aggregated) file names per output type.
MAP_TABLE_FILES = {"parquet": (MAP_ALIGNED_FILE, MAP_AGGREGATED_FILE),
                   "anndata_h5ad": ("aligned.h5ad", "aggregated.h5ad")}
EMBED_ANNDATA_DIR = "anndata"  # `cellmae embed --anndata`: <block>.h5ad files

BENCH_RECALL_FILE = "recall.csv"
BENCH_CONSISTENCY_FILE = "consistency.csv"
BENCH_MAP_FILE = "map_copairs.csv"
BENCH_COMPOUND_GENE_FILE = "compound_gene.csv"
BENCH_BATCH_FILE = "batch.csv"
BENCH_SUMMARY_FILE = "summary.json"
BENCH_PROBES_FILE = "probes.csv"
BEST_BLOCK_FILE = "best_block.json"
CURATION_KEPT_FILE = "kept_wells.csv"
CURATION_REPORT_FILE = "curation_report.json"

REPORT_FILE = "report.html"
DEMO_FILE = "demo.json"
TRANSFER_DIR = "transfer"  # RUN/transfer is a run folder of its own (screen/, embed/, map/, bench/)
PROXY_DIR = "proxy"  # RUN/proxy: the demo's proxy screen for block selection (screen/, embed/, map/)

# the scaling study (cellmae.demo.scaling): one training run per grid cell under runs/, one table, one plot
SCALING_TABLE_FILE = "scaling.csv"
SCALING_PLOT_FILE = "scaling.png"
SCALING_RUNS_DIR = "runs"
SCALING_EVAL_DIR = "eval"  # scaling-study --eval-screen: eval/<variant>/<job>/ is a run folder (embed/, map/, bench/)
SCALING_EVAL_FILE = "scaling_eval.json"  # the evaluation's result, written last (a rerun reuses it)

# stage folders of a run
SCREEN_DIR, SHARDS_DIR, TRAIN_DIR, EMBED_DIR, MAP_DIR, BENCH_DIR = "screen", "shards", "train", "embed", "map", "bench"

def map_table_files(folder: str | os.PathLike) -> tuple[Path, Path] | None:
    """The (aligned, aggregated) tables of a map folder, whichever output type wrote them; None if neither."""
    folder = Path(folder)
    for aligned, aggregated in MAP_TABLE_FILES.values():
        if (folder / aligned).is_file() and (folder / aggregated).is_file():
            return folder / aligned, folder / aggregated
    return None


def map_aligned_file(folder: str | os.PathLike) -> Path | None:
    """The aligned (well-level) table of a map folder, whichever output type wrote it; None if absent."""
    folder = Path(folder)
    return next((folder / a for a, _ in MAP_TABLE_FILES.values() if (folder / a).is_file()), None)


# ---- block naming --------------------------------------------------------------------------
_BLOCK_RE = re.compile(r"^block(\d+)$")


def block_name(block: int) -> str:
    """Folder name of a block's feature set: ``block06``."""
    if int(block) < 0:
        raise ValueError(f"block {block}: blocks are numbered from 0 (0 = the handcrafted/single block)")
    return f"block{int(block):02d}"


def parse_block_name(name: str) -> int | None:
    """``"block06"`` -> 6; any other name -> None."""
    m = _BLOCK_RE.match(name)
    return int(m.group(1)) if m else None


def block_dirs(folder: str | os.PathLike) -> dict[int, Path]:
    """The ``blockNN`` sub-folders of ``folder`` by block number, in block order."""
    folder = Path(folder)
    found = {}
    if folder.is_dir():
        for child in folder.iterdir():
            n = parse_block_name(child.name)
            if n is not None and child.is_dir():
                found[n] = child
    return dict(sorted(found.items()))


def read_best_block(path: str | os.PathLike) -> int:
    """The block chosen by the bench stage's probes: ``best_block.json`` (or its folder) -> N."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_BLOCK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `cellmae bench` on a map folder with block "
                                "subfolders first, or give --blocks explicitly)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    block = record.get("block") if isinstance(record, dict) else None
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"{path}: 'block' must be a positive integer, got {block!r}")
    return block


# ---- the run folder ------------------------------------------------------------------------
@dataclass(frozen=True)
class RunDir:
    """Paths of one run's stage outputs (nothing is created or read here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def screen(self) -> Path:
        return self.root / SCREEN_DIR

    @property
    def shards(self) -> Path:
        return self.root / SHARDS_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def demo_file(self) -> Path:
        return self.root / DEMO_FILE

    @property
    def transfer(self) -> RunDir:
        return RunDir(self.root / TRANSFER_DIR)

    @property
    def proxy(self) -> RunDir:
        return RunDir(self.root / PROXY_DIR)

    def stage(self, stage: str) -> Path:
        """``RUN/<stage>`` for ``train``, ``embed``, ``map`` or ``bench`` (the folder of per-model folders)."""
        if stage not in (TRAIN_DIR, EMBED_DIR, MAP_DIR, BENCH_DIR):
            raise ValueError(f"unknown stage {stage!r}: expected one of train, embed, map, bench")
        return self.root / stage

    def train(self, model: str) -> Path:
        return self.root / TRAIN_DIR / model

    def embed(self, model: str, block: int | None = None) -> Path:
        base = self.root / EMBED_DIR / model
        return base if block is None else base / block_name(block)

    def map(self, model: str, block: int | None = None) -> Path:
        base = self.root / MAP_DIR / model
        return base if block is None else base / block_name(block)

    def bench(self, model: str, block: int | None = None) -> Path:
        base = self.root / BENCH_DIR / model
        return base if block is None else base / block_name(block)

    def best_block_file(self, model: str) -> Path:
        return self.bench(model) / BEST_BLOCK_FILE

    @classmethod
    def of_embed_output(cls, embed_model_dir: str | os.PathLike) -> tuple[RunDir, str]:
        """``RUN/embed/<model>`` -> (RunDir(RUN), model): where the embed stage's siblings live."""
        embed_model_dir = Path(embed_model_dir).resolve()
        return cls(embed_model_dir.parent.parent), embed_model_dir.name
