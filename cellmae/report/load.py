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
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cellmae.bench.summary import BENCH_KIND
from cellmae.profiles.io import MAP_KIND
from cellmae.utils.errors import InputError
from cellmae.utils.manifest import read_manifest

# Baselines are ordered after the trained models, in this order (DESIGN.md names them).
BASELINES: tuple[str, ...] = ("random-init", "handcrafted", "wsl")
TRANSFER_DIR = "transfer"
_BLOCK_RE = re.compile(r"^block(\d+)$")


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


def block_number(name: str) -> int | None:
    """``block06`` -> 6; any other folder name -> None."""
    m = _BLOCK_RE.match(name)
    return int(m.group(1)) if m else None


def block_name(n: int) -> str:
    """6 -> ``block06`` (the embed stage's folder name)."""
    return f"block{int(n):02d}"


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
    return sorted(names, key=lambda b: (block_number(b) is None, block_number(b) or 0, b))


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
    for d in _subdirs(root / "train"):
        metrics = read_csv(d / "metrics.csv")
        pngs = sorted((d / "recon").glob("*.png")) if (d / "recon").is_dir() else []
        if metrics is None and not pngs:
            continue
        runs.append(TrainingRun(model=d.name, path=d, metrics=metrics, recon_pngs=pngs, config=read_json(d / "config.json"),
                                summary=read_json(d / "summary.json")))
    return runs


def chosen_block(blocks: list[str], best: dict | None) -> str | None:
    """The block the report shows: ``best_block.json``'s when present, else the deepest one."""
    if not blocks:
        return None
    if best is not None and "block" in best:
        raw = best["block"]
        name = block_name(raw) if isinstance(raw, int) or str(raw).isdigit() else str(raw)
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
    bench_model = root / "bench" / model
    names = {p.name for base in ("embed", "map", "bench") for p in _subdirs(root / base / model)}
    blocks = _sorted_blocks(names)
    best = read_json(bench_model / "best_block.json")
    bench_blocks = [b for b in blocks if (bench_model / b).is_dir()]
    block = chosen_block(bench_blocks or blocks, best)
    incomplete: dict[str, str] = {}
    res = MethodResult(
        model=model,
        block=block,
        blocks=blocks,
        embed_dir=complete_embed_block(root / "embed" / model / block, incomplete) if block else None,
        map_dir=complete_dir(root / "map" / model / block, MAP_KIND, incomplete) if block else None,
        bench_dir=complete_dir(bench_model / block, BENCH_KIND, incomplete) if block else None,
        probes=read_csv(bench_model / "probes.csv"),
        best_block=best,
        incomplete=incomplete,
    )
    if res.bench_dir is not None:
        res.summary = read_json(res.bench_dir / "summary.json") or {}
        res.recall = read_csv(res.bench_dir / "recall.csv")
        res.consistency = read_csv(res.bench_dir / "consistency.csv")
        res.map_copairs = read_csv(res.bench_dir / "map_copairs.csv")
        res.batch = read_csv(res.bench_dir / "batch.csv")
        res.compound_gene = read_csv(res.bench_dir / "compound_gene.csv")
    return res


def _screen_info(root: Path) -> tuple[list[str] | None, int | None, pd.DataFrame | None]:
    screen = root / "screen"
    channels = None
    ch = read_json(screen / "channels.json")
    if ch is not None and isinstance(ch.get("channels"), list):
        channels = [str(c) for c in ch["channels"]]
    wells = None
    meta = read_csv(screen / "metadata.csv")
    if meta is not None and {"experiment", "plate", "well"} <= set(meta.columns):
        wells = int(meta.drop_duplicates(["experiment", "plate", "well"]).shape[0])
    truth = read_csv(screen / "truth" / "genes.csv")
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
    models = {p.name for base in ("embed", "map", "bench") for p in _subdirs(root / base)}
    methods = [load_method(root, m) for m in model_order(models, trained)]
    channels, wells, truth = _screen_info(root)
    transfer = None
    if with_transfer and (root / TRANSFER_DIR).is_dir():
        try:
            transfer = load_run(root / TRANSFER_DIR, with_transfer=False, trained=trained)
        except FileNotFoundError:
            transfer = None
    if not training and not methods and transfer is None:
        raise FileNotFoundError(
            f"{root} holds no stage output (expected train/, embed/, map/ or bench/ folders as written by "
            "`cellmae train | embed | map | bench`)"
        )
    return RunContents(
        root=root, training=training, methods=methods, screen_channels=channels, screen_wells=wells,
        truth_genes=truth, demo_info=read_json(root / "demo.json"), transfer=transfer,
    )
