"""`run_demo`: images to report in one call, stage by stage, resumable.

Each stage records a marker ``RUN/.demo/<stage>.json`` holding the hash of the settings its
output depends on (chained through the stages before it). A rerun skips a stage whose marker
matches and redoes it (overwriting its output) when settings changed, so an interrupted demo
continues where it stopped and a changed knob recomputes only what it affects. The stages
themselves are also resumable inside (simulation per site, training from its last checkpoint,
embedding per plate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellmae import layout
from cellmae.demo import stages
from cellmae.demo.settings import MODEL, DemoSettings
from cellmae.utils.atomic import write_text_atomic

MARKER_DIR = ".demo"


@dataclass
class StageRecord:
    name: str
    status: str  # "ran" | "reused"
    seconds: float
    detail: dict = field(default_factory=dict)


@dataclass
class DemoResult:
    """What a demo run produced: the run folder, the report, each stage and the headline numbers."""

    root: Path
    report: Path
    stages: list[StageRecord]
    headline: list[dict]

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.stages if r.status == "ran")


class StageRunner:
    """Runs named stages once per settings key and keeps their records."""

    def __init__(self, root: Path, console: Console):
        self.root = root
        self.console = console
        self.records: list[StageRecord] = []
        self.total = 0
        self.index = 0

    def _marker(self, name: str) -> Path:
        return self.root / MARKER_DIR / f"{name.replace('/', '_').replace(' ', '_')}.json"

    def run(self, name: str, key: str, fn: Callable[[bool], dict]) -> StageRecord:
        """Run ``fn(overwrite)`` unless the marker for ``name`` holds ``key``; return its record."""
        self.index += 1
        marker = self._marker(name)
        old = json.loads(marker.read_text()) if marker.is_file() else None
        if old is not None and old.get("key") == key:
            rec = StageRecord(name, "reused", float(old.get("seconds", 0.0)), old.get("detail", {}))
            self.console.print(f"[dim][{self.index}/{self.total}] {name}: reused ({rec.seconds:.0f} s when it ran)[/dim]")
        else:
            self.console.rule(f"[bold][{self.index}/{self.total}] {name}")
            marker.unlink(missing_ok=True)
            t0 = time.perf_counter()
            detail = fn(old is not None) or {}  # an outdated marker means: replace the old output
            rec = StageRecord(name, "ran", time.perf_counter() - t0, detail)
            write_text_atomic(marker, json.dumps({"key": key, "seconds": rec.seconds, "detail": detail}, default=str))
            self.console.print(f"[green]✓[/green] {name} in {rec.seconds:.1f} s")
        self.records.append(rec)
        return rec


def _loop_progress(console: Console, disable: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=disable)


def _map_and_bench(runner: StageRunner, s: DemoSettings, root: Path, screen: Path, model: str, key: str,
                   *, probes: bool, prefix: str = "", proxy: tuple[Path, str] | None = None) -> str:
    """Map and bench stages of ``model``; ``proxy`` (proxy run folder, its map stage's key): choose the
    block on the proxy screen's maps."""
    def do_map(_: bool) -> dict:
        n = len(stages.block_dirs(layout.RunDir(root).embed(model)))
        with _loop_progress(runner.console, not s.progress) as bar:
            task = bar.add_task(f"map {model}", total=n)
            return stages.build_maps(s, root, model, advance=lambda: bar.advance(task))

    key = s.stage_key("align", upstream=key)
    runner.run(f"{prefix}map {model}", key, do_map)

    def do_bench(_: bool) -> dict:
        n = len(stages.block_dirs(layout.RunDir(root).map(model)))
        with _loop_progress(runner.console, not s.progress) as bar:
            task = bar.add_task(f"bench {model}", total=n)
            return stages.bench_model(s, root, screen, model, probes=probes, proxy_root=proxy[0] if proxy else None,
                                      advance=lambda: bar.advance(task))

    key = s.stage_key("relationships", upstream=key + (proxy[1] if proxy else ""))
    runner.run(f"{prefix}bench {model}", key, do_bench)
    return key


def _warn_if_cut_short(console: Console, rec: StageRecord) -> None:
    d = rec.detail
    if d.get("time_guard_fired"):
        console.print(f"warning: {rec.name} stopped by --max-train-minutes at step {d.get('steps')} of "
                      f"{d.get('steps_planned')}: its numbers depend on this machine's load; rerun without "
                      "--max-train-minutes for the reproducible fixed-step result", markup=False, highlight=False)


def _best_block(root: Path, model: str) -> int | None:
    path = layout.RunDir(root).best_block_file(model)
    return layout.read_best_block(path) if path.is_file() else None


def _uses_proxy(s: DemoSettings) -> bool:
    """A proxy screen is simulated when there is a block to choose on a simulated evaluation screen."""
    one_block = s.blocks.strip() == "last" or s.blocks.strip().isdigit()
    return s.proxy and s.screen is None and not one_block


def _plan_size(s: DemoSettings) -> int:
    methods = 1 + len(s.baselines) + int(s.wsl)
    n = (0 if s.screen else 1) + (0 if s.checkpoint else 2) + 2 * int(s.wsl) + 3 * methods + 1
    if _uses_proxy(s):  # simulate once, embed and map per model with blocks (handcrafted has none)
        n += 1 + 2 * (methods - int("handcrafted" in s.baselines))
    if s.transfer_preset:
        n += 1 + 3 * (1 + len(s.baselines))
    return n


def run_demo(s: DemoSettings, console: Console | None = None) -> DemoResult:
    """Run the whole pipeline into ``s.out`` and return where everything went."""
    console = console or Console()
    root = s.out
    run = layout.RunDir(root)
    root.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(root, console)
    runner.total = _plan_size(s)

    # 1. the screen
    if s.screen is None:
        screen = run.screen
        screen_key = s.stage_key("preset", "seed", "simulate_overrides")
        runner.run("simulate", screen_key, lambda ow: stages.simulate(s, screen, s.preset, overwrite=ow))
    else:
        screen = s.screen
        screen_key = s.stage_key("screen")

    # the proxy screen on which the blocks are chosen (simulated evaluation screens only)
    proxy_key = None
    if _uses_proxy(s):
        proxy_key = s.stage_key(upstream=screen_key)  # its genes are those the evaluation screen does not use
        runner.run("proxy simulate", proxy_key, lambda ow: stages.simulate_proxy(s, screen, run.proxy.screen, overwrite=ow))

    # 2. the model (trained here unless a checkpoint is given)
    trained: dict[str, tuple[str | Path, str]] = {}  # name -> (embed source, key)
    if s.checkpoint is None:
        shard_dir = run.shards
        shard_key = s.stage_key("crop_size", "crops_per_field", "seed", upstream=screen_key)
        runner.run("shards", shard_key, lambda ow: stages.shards(s, screen, shard_dir, overwrite=ow))
        key = s.stage_key("train_config", "steps", "max_train_minutes", "train_overrides", upstream=shard_key)
        rec = runner.run(f"train {MODEL}", key, lambda ow: stages.train(
            s, shard_dir, run.train(MODEL), config=s.train_config, overwrite=ow))
        _warn_if_cut_short(console, rec)
        trained[MODEL] = (run.train(MODEL), key)
        if s.wsl:
            wkey = s.stage_key("steps", "max_train_minutes", upstream=shard_key)
            runner.run("train wsl", wkey, lambda ow: stages.train(
                s, shard_dir, run.train("wsl"), config="tiny-wsl", overwrite=ow, user_overrides=False))
            trained["wsl"] = (run.train("wsl"), wkey)
    else:
        trained[MODEL] = (s.checkpoint, s.stage_key("checkpoint"))
    model_dir, model_key = trained[MODEL]

    # 3. embeddings, maps and benchmarks of the model and the baselines
    methods: dict[str, tuple[str | Path, str | None, str]] = {
        name: (src, s.blocks, s.stage_key("blocks", "tile", "pool", upstream=k + screen_key)) for name, (src, k) in trained.items()
    }
    if "random-init" in s.baselines:
        if Path(model_dir).is_dir():
            methods["random-init"] = (f"random-init:{model_dir}", s.blocks,
                                      s.stage_key("blocks", "tile", "pool", "seed", upstream=model_key + screen_key))
        else:
            console.print(f"[yellow]random-init baseline skipped: {model_dir} is not a checkpoint folder[/yellow]")
    if "handcrafted" in s.baselines:
        methods["handcrafted"] = ("handcrafted", None, s.stage_key(upstream=screen_key))
    for name, (src, blocks, key) in methods.items():
        runner.run(f"embed {name}", key, lambda ow, src=src, blocks=blocks, name=name: stages.embed(
            s, screen, src, run.embed(name), blocks=blocks, overwrite=ow,
            pool="mean" if name == "wsl" else None))  # the WSL classifier has no CLS token
        proxy = None
        if proxy_key is not None and blocks is not None:
            pkey = s.stage_key(upstream=key + proxy_key)
            runner.run(f"proxy embed {name}", pkey, lambda ow, src=src, blocks=blocks, name=name: stages.embed(
                s, run.proxy.screen, src, run.proxy.embed(name), blocks=blocks, overwrite=ow,
                pool="mean" if name == "wsl" else None))
            pkey = s.stage_key("align", upstream=pkey)
            runner.run(f"proxy map {name}", pkey, lambda _, name=name: stages.build_maps(s, run.proxy.root, name))
            proxy = (run.proxy.root, pkey)
        _map_and_bench(runner, s, root, screen, name, key, probes=blocks is not None, proxy=proxy)

    # 4. channel transfer: the same models on a screen with other channels, at each model's best block
    if s.transfer_preset:
        troot = run.transfer.root
        tscreen = run.transfer.screen
        tkey = s.stage_key("transfer_preset", "seed", "simulate_overrides")
        runner.run("transfer simulate", tkey, lambda ow: stages.simulate(s, tscreen, s.transfer_preset, overwrite=ow))
        for name, (src, blocks, key) in methods.items():
            if name == "wsl":
                continue  # a fixed-channel classifier cannot read other channels
            best = _best_block(root, name) if blocks is not None else None
            tb = best if best is not None else (None if blocks is None else "last")
            ekey = s.stage_key(upstream=key + tkey + str(tb))
            runner.run(f"transfer embed {name}", ekey, lambda ow, src=src, tb=tb, name=name: stages.embed(
                s, tscreen, src, run.transfer.embed(name), blocks=tb, overwrite=ow))
            _map_and_bench(runner, s, troot, tscreen, name, ekey, probes=False, prefix="transfer ")

    # 5. the report (always rebuilt: cheap, and it shows this run's timings)
    result = DemoResult(root, run.report, runner.records, headline_numbers(root))
    _write_demo_json(s, result)
    runner.run("report", f"always-{time.time()}", lambda _: stages.report(root))
    result.stages = runner.records
    _write_demo_json(s, result)
    return result


def _recall_of(summary_path: Path) -> dict[str, float]:
    if not summary_path.is_file():
        return {}
    summary = json.loads(summary_path.read_text())
    out = {}
    for src, r in (summary.get("recall") or {}).items():
        val = r.get("recall_0.05_0.95")
        if val is not None:
            out[src] = float(val)
    cons = summary.get("consistency") or {}
    if cons.get("fraction_p_le_0.05") is not None:
        out["consistency p<=0.05"] = float(cons["fraction_p_le_0.05"])
    return out


def headline_numbers(root: Path) -> list[dict]:
    """Recall (0.05/0.95) per database and replicate consistency per method at its shown block."""
    from cellmae.report.load import load_run

    rows = []
    run = load_run(root)
    for label, r in (("", run), ("transfer ", run.transfer)):
        if r is None:
            continue
        for m in r.methods:
            if m.bench_dir is not None:
                rows.append({"method": f"{label}{m.model}", "block": m.block, **_recall_of(m.bench_dir / layout.BENCH_SUMMARY_FILE)})
    return rows


def _write_demo_json(s: DemoSettings, result: DemoResult) -> None:
    data = {
        "settings": {k: v for k, v in s.record().items() if k != "progress"},
        "stage_seconds": {r.name: round(r.seconds, 1) for r in result.stages},
        "stages_reused": [r.name for r in result.stages if r.status == "reused"],
        "training": {r.name: r.detail for r in result.stages if r.name.startswith("train ")},
        "total_seconds_this_run": round(result.seconds, 1),
        "headline": result.headline,
    }
    write_text_atomic(layout.RunDir(result.root).demo_file, json.dumps(data, indent=2, default=str) + "\n")


def summary_tables(result: DemoResult) -> list[Table]:
    """The end-of-run tables: stages with their timing, and the headline numbers per method."""
    st = Table(title="Stages", show_lines=False)
    for col in ("stage", "status", "seconds"):
        st.add_column(col, justify="right" if col == "seconds" else "left")
    for r in result.stages:
        st.add_row(r.name, r.status, f"{r.seconds:.1f}")
    st.add_row("[bold]total (this run)", "", f"[bold]{result.seconds:.1f}")
    ht = Table(title="Headline numbers (recall at the 5%/95% null tails; consistency: share with p<=0.05)")
    cols = ["method", "block"] + sorted({k for row in result.headline for k in row} - {"method", "block"})
    for c in cols:
        ht.add_column(c, justify="left" if c in ("method", "block") else "right")
    for row in result.headline:
        ht.add_row(*[f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "–")) for c in cols])
    return [st, ht]
