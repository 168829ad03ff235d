"""`cellmae demo` end to end on the tiny preset: every stage runs, every method reaches the report,
and a rerun reuses the finished stages."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.demo.pipeline import headline_numbers, run_demo
from cellmae.demo.settings import DemoSettings

# A tiny model for a few steps: this checks the wiring, not the quality (docs/demo.md has the real numbers).
TINY = dict(preset="tiny", steps=2, max_train_minutes=None, transfer_preset="cellpainting-tiny", progress=False,
            train_overrides=("model.kwargs.depth=2", "model.kwargs.patch_size=16", "data.batch_size=4"), crops_per_field=2, batch_size=16,
            workers=0)
METHODS = ("camae", "random-init", "handcrafted")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo") / "RUN"
    return run_demo(DemoSettings(out=out, **TINY))


@pytest.mark.slow
def test_demo_writes_every_stage_and_method(demo_run) -> None:
    root = demo_run.root
    assert (root / "train" / "camae" / "model.safetensors").is_file()
    assert (root / "train" / "camae" / "metrics.csv").is_file()
    for base in (root, root / "transfer"):
        for m in METHODS:
            benches = list((base / "bench" / m).glob("block*/summary.json"))
            assert benches, f"no bench summary for {m} under {base}"
            summary = json.loads(benches[0].read_text())
            assert "sim-truth" in summary["recall"]
    # The trained model and its random-init twin have 2 blocks each: probes chose one of them.
    for m in ("camae", "random-init"):
        best = json.loads((root / "bench" / m / "best_block.json").read_text())
        assert best["block"] in (1, 2)
        # chosen on the proxy screen (its own genes and groups), never on the recall's labels; the per-block
        # recall is recorded next to the choice for the report
        proxy = root / "proxy"
        assert best["protocol"]["probe_screen"] == str(proxy / "map" / m)
        assert best["protocol"]["group_probe"] == str(proxy / "screen" / "truth" / "genes.csv")
        assert set(best["evaluation_recall"]) == {"1", "2"}
        probed = pd.read_parquet(proxy / "map" / m / "block01" / "aligned.parquet")
        evaluated = pd.read_parquet(root / "map" / m / "block01" / "aligned.parquet")
        treated = lambda t: set(t.loc[~t["Metadata_IsControl"], "Metadata_Perturbation"])  # noqa: E731
        assert treated(probed) and not treated(probed) & treated(evaluated)
        truth = lambda d: pd.read_csv(d / "screen" / "truth" / "genes.csv")  # noqa: E731
        assert not set(truth(proxy)["group"]) & set(truth(root)["group"])
        # the demo's default pooling (DemoSettings.pool) reaches the embed stage for both ViTs
        for base in (root, root / "transfer"):
            assert json.loads((base / "embed" / m / "embed_config.json").read_text())["pool"] == DemoSettings.pool
    html = (root / "report.html").read_text()
    for m in METHODS:
        assert f"{m} / block0" in html
    assert "Channel transfer" in html and "DNA, ER, RNA, AGP, Mito" in html
    demo = json.loads((root / "demo.json").read_text())
    assert {row["method"] for row in demo["headline"]} == {*METHODS, *(f"transfer {m}" for m in METHODS)}
    assert all("sim-truth" in row for row in demo["headline"])
    assert headline_numbers(root) == demo["headline"]
    # a fixed compute budget: every planned step ran, and the record says the guard did not fire
    assert demo["training"]["train camae"]["steps"] == demo["training"]["train camae"]["steps_planned"] == TINY["steps"]
    assert demo["training"]["train camae"]["time_guard_fired"] is False
    assert "wall-clock guard" not in html


def test_a_fired_time_guard_is_warned_and_reported() -> None:
    import io

    from rich.console import Console

    from cellmae.demo.pipeline import StageRecord, _warn_if_cut_short
    from cellmae.report.sections import _demo_parts

    detail = {"steps": 700, "steps_planned": 2200, "time_guard_fired": True}
    out = io.StringIO()
    _warn_if_cut_short(Console(file=out, width=300), StageRecord("train camae", "ran", 1.0, detail))
    assert "step 700 of 2200" in out.getvalue()
    html = "".join(_demo_parts({"training": {"train camae": detail}}))
    assert "wall-clock guard" in html and "step 700 of 2200" in html
    quiet = io.StringIO()
    _warn_if_cut_short(Console(file=quiet), StageRecord("train camae", "ran", 1.0, {**detail, "time_guard_fired": False}))
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_rerun_reuses_finished_stages(demo_run) -> None:
    res = run_demo(DemoSettings(out=demo_run.root, **TINY))
    assert [r.name for r in res.stages if r.status == "ran"] == ["report"]
    assert res.report.is_file()
    # A changed training length and block choice rerun training and everything downstream, not the
    # simulation; blocks of the old run do not linger in map/ or bench/.
    root = demo_run.root
    res = run_demo(DemoSettings(out=root, **{**TINY, "steps": 3, "blocks": "2"}))
    status = {r.name: r.status for r in res.stages}
    assert status["simulate"] == status["shards"] == status["transfer simulate"] == "reused"
    assert status["train camae"] == status["embed camae"] == status["bench camae"] == "ran"
    assert status["embed handcrafted"] == "reused"
    assert json.loads((root / "train" / "camae" / "summary.json").read_text())["steps"] == 3
    for base in ("embed", "map", "bench"):
        assert sorted(p.name for p in (root / base / "camae").glob("block*")) == ["block02"]
    assert not (root / "bench" / "camae" / "best_block.json").exists()
    assert "camae / block02" in res.report.read_text()


def test_cli_rejects_bad_settings(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "r"), "--steps", "0"])
    assert res.exit_code == 2 and "--steps must be >= 1" in res.output
    assert not (tmp_path / "r").exists()


def test_settings_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        DemoSettings(screen=tmp_path / "nope")
    with pytest.raises(ValueError, match="--baselines"):
        DemoSettings(baselines=("pixels",))
    a, b = DemoSettings(steps=5), DemoSettings(steps=6)
    assert a.stage_key("preset") == b.stage_key("preset")
    assert a.stage_key("steps") != b.stage_key("steps")
    assert a.stage_key("steps", upstream="x") != a.stage_key("steps", upstream="y")
