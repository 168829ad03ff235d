"""Read a run directory (DESIGN.md "Commands and the run directory") into plain tables.

The report computes nothing new: this module only finds and reads what the stages wrote
(train metrics and reconstruction PNGs, well embeddings, aligned/aggregated maps, bench
tables). Every piece is optional, so a run with only some stages done still gets a report
of what exists; a file that exists but cannot be read raises an error naming it. A map or bench
folder without a matching manifest (interrupted, or written by hand) is not read: the page lists
it as incomplete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cellmae import layout
from cellmae.bench.summary import BENCH_KIND
from cellmae.map.io import MAP_KIND
from cellmae.utils.errors import InputError
from cellmae.utils.manifest import read_manifest

# Baselines are ordered after the trained models, in this order (DESIGN.md names them).
BASELINES: tuple[str, ...] = ("random-init", "handcrafted", "wsl")


class ReportInputError(ValueError):
    """A run-directory file exists but cannot be read; the message names it."""


@dataclass
class TrainingRun:
    """What ``cellmae train`` left in ``RUN/train/<model>/``."""

    model: str
    path: Path
    metrics: pd.DataFrame | None
    recon_pngs: list[Path]
    config: dict | None
    summary: dict | None = None


@dataclass
class MethodResult:
    """One method (a model or a baseline) at the block the report shows for it."""

    model: str
    block: str | None
    blocks: list[str]
    embed_dir: Path | None
    map_dir: Path | None
    bench_dir: Path | None
    summary: dict = field(default_factory=dict)
    recall: pd.DataFrame | None = None
    consistency: pd.DataFrame | None = None
    map_copairs: pd.DataFrame | None = None
    batch: pd.DataFrame | None = None
    compound_gene: pd.DataFrame | None = None
    probes: pd.DataFrame | None = None
    best_block: dict | None = None
    incomplete: dict[str, str] = field(default_factory=dict)  # stage -> why its folder was not read

    @property
    def label(self) -> str:
        return f"{self.model} / {self.block}" if self.block else self.model


@dataclass
class RunContents:
    """Everything the report can show about one run directory."""

    root: Path
    training: list[TrainingRun]
    methods: list[MethodResult]
    screen_channels: list[str] | None
    screen_wells: int | None
    truth_genes: pd.DataFrame | None
    demo_info: dict | None
    transfer: RunContents | None = None

    def method(self, model: str) -> MethodResult | None:
        return next((m for m in self.methods if m.model == model), None)


def read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV file, or None when it does not exist."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise ReportInputError(f"{path}: cannot read as CSV ({exc})") from exc


def read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file does not exist."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ReportInputError(f"{path}: cannot read as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A Parquet file or partitioned folder (an embed block's hive partitions), or None if absent."""
    if not path.exists() or (path.is_dir() and not any(path.rglob("*.parquet"))):
        return None
    try:
        df = pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise ReportInputError(f"{path}: cannot read as Parquet ({exc})") from exc
    # Hive partition columns come back as categoricals; the report wants plain values.
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str)
    return df


def _subdirs(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _sorted_blocks(names: set[str]) -> list[str]:
    number = layout.parse_block_name
    return sorted(names, key=lambda b: (number(b) is None, number(b) or 0, b))


def model_order(models: set[str], trained: set[str]) -> list[str]:
    """Trained models first, then the baselines in their fixed order, then anything else."""

    def key(m: str) -> tuple[int, int, str]:
        if m in BASELINES:
            return (1, BASELINES.index(m), m)
        return (0 if m in trained else 2, 0, m)

    return sorted(models, key=key)


def load_training(root: Path) -> list[TrainingRun]:
    """Every ``RUN/train/<model>/`` with its metrics and reconstruction images."""
    runs = []
    for d in _subdirs(layout.RunDir(root).stage(layout.TRAIN_DIR)):
        metrics = read_csv(d / layout.TRAIN_METRICS_FILE)
        recon = d / layout.TRAIN_RECON_DIR
        pngs = sorted(recon.glob("*.png")) if recon.is_dir() else []
        if metrics is None and not pngs:
            continue
        runs.append(TrainingRun(model=d.name, path=d, metrics=metrics, recon_pngs=pngs, config=read_json(d / layout.MODEL_CONFIG_FILE),
                                summary=read_json(d / layout.TRAIN_SUMMARY_FILE)))
    return runs


def chosen_block(blocks: list[str], best: dict | None) -> str | None:
    """The block the report shows: ``best_block.json``'s when present, else the deepest one."""
    if not blocks:
        return None
    if best is not None and "block" in best:
        raw = best["block"]
        name = layout.block_name(int(raw)) if isinstance(raw, int) or str(raw).isdigit() else str(raw)
        if name in blocks:
            return name
    return blocks[-1]


def complete_dir(path: Path, kind: str, incomplete: dict[str, str]) -> Path | None:
    """``path`` when it holds a complete ``kind`` output (a matching manifest), else None.

    An incomplete folder (no manifest, files changed since) is not read: the reason goes to
    ``incomplete`` so the page names it, instead of showing numbers from a half-written output.
    """
    if not path.is_dir():
        return None
    try:
        read_manifest(path, kind, rerun=f"cellmae {kind} ... --out {path}", deep=True)
    except InputError as exc:
        incomplete[kind] = str(exc)
        return None
    return path


def complete_embed_block(path: Path, incomplete: dict[str, str]) -> Path | None:
    """``path`` when it is a finished block of an embed run (or a user's own embeddings), else None."""
    from cellmae.embed.io import check_complete_block

    if not path.is_dir():
        return None
    try:
        check_complete_block(path)
    except InputError as exc:
        incomplete["embed"] = str(exc)
        return None
    return path


def load_method(root: Path, model: str) -> MethodResult:
    """One method's embed/map/bench outputs at its chosen block (map and bench only when complete)."""
    run = layout.RunDir(root)
    bench_model = run.bench(model)
    names = {p.name for base in (run.embed(model), run.map(model), bench_model) for p in _subdirs(base)}
    blocks = _sorted_blocks(names)
    best = read_json(bench_model / layout.BEST_BLOCK_FILE)
    bench_blocks = [b for b in blocks if (bench_model / b).is_dir()]
    block = chosen_block(bench_blocks or blocks, best)
    incomplete: dict[str, str] = {}
    res = MethodResult(
        model=model,
        block=block,
        blocks=blocks,
        embed_dir=complete_embed_block(run.embed(model) / block, incomplete) if block else None,
        map_dir=complete_dir(run.map(model) / block, MAP_KIND, incomplete) if block else None,
        bench_dir=complete_dir(bench_model / block, BENCH_KIND, incomplete) if block else None,
        probes=read_csv(bench_model / layout.BENCH_PROBES_FILE),
        best_block=best,
        incomplete=incomplete,
    )
    if res.bench_dir is not None:
        d = res.bench_dir
        res.summary = read_json(d / layout.BENCH_SUMMARY_FILE) or {}
        res.recall = read_csv(d / layout.BENCH_RECALL_FILE)
        res.consistency = read_csv(d / layout.BENCH_CONSISTENCY_FILE)
        res.map_copairs = read_csv(d / layout.BENCH_MAP_FILE)
        res.batch = read_csv(d / layout.BENCH_BATCH_FILE)
        res.compound_gene = read_csv(d / layout.BENCH_COMPOUND_GENE_FILE)
    return res


def _screen_info(root: Path) -> tuple[list[str] | None, int | None, pd.DataFrame | None]:
    screen = layout.RunDir(root).screen
    channels = None
    ch = read_json(screen / layout.SCREEN_CHANNELS_FILE)
    if ch is not None and isinstance(ch.get("channels"), list):
        channels = [str(c) for c in ch["channels"]]
    wells = None
    meta = read_csv(screen / layout.SCREEN_METADATA_FILE)
    if meta is not None and {"experiment", "plate", "well"} <= set(meta.columns):
        wells = int(meta.drop_duplicates(["experiment", "plate", "well"]).shape[0])
    truth = read_csv(screen / layout.TRUTH_DIR / layout.TRUTH_GENES_FILE)
    return channels, wells, truth


def load_run(root: str | Path, *, with_transfer: bool = True, trained: set[str] | None = None) -> RunContents:
    """Read a run directory. Raises FileNotFoundError when ``root`` holds no stage output.

    ``trained`` names models trained elsewhere (a transfer run's models come from the parent run).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {root} does not exist")
    training = load_training(root)
    trained = {t.model for t in training} | (trained or set())
    run = layout.RunDir(root)
    models = {p.name for stage in (layout.EMBED_DIR, layout.MAP_DIR, layout.BENCH_DIR) for p in _subdirs(run.stage(stage))}
    methods = [load_method(root, m) for m in model_order(models, trained)]
    channels, wells, truth = _screen_info(root)
    transfer = None
    if with_transfer and run.transfer.root.is_dir():
        try:
            transfer = load_run(run.transfer.root, with_transfer=False, trained=trained)
        except FileNotFoundError:
            transfer = None
    if not training and not methods and transfer is None:
        raise FileNotFoundError(
            f"{root} holds no stage output (expected train/, embed/, map/ or bench/ folders as written by "
            "`cellmae train | embed | map | bench`)"
        )
    return RunContents(
        root=root, training=training, methods=methods, screen_channels=channels, screen_wells=wells,
        truth_genes=truth, demo_info=read_json(root / layout.DEMO_FILE), transfer=transfer,
    )
