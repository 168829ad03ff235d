"""The report reads a run directory and writes one self-contained HTML page."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.report.build import build_report, report_html
from cellmae.report.load import ReportInputError, load_run
from cellmae.report.views import best_group_block, consistency_values, probe_curve, recall_long
from cellmae.utils.errors import InputError
from cellmae.utils.manifest import write_manifest


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.h2: list[str] = []
        self._in_h2 = False
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag in ("img", "script", "iframe") and a.get("src"):
            self.srcs.append(a["src"])
        if tag == "link" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "script":
            self.scripts += 1
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)
            self._in_h2 = False


def _parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


def test_report_is_self_contained_and_has_every_section(fake_run: Path, tmp_path: Path) -> None:
    out = build_report(fake_run, tmp_path / "r.html")
    html = out.read_text()
    page = _parse(html)
    assert page.h2 == ["Overview", "Training", "Embeddings", "Relationship recall", "Block probes",
                       "Best-recalled complexes", "Replicate consistency", "Channel transfer", "Table of numbers"]
    # Every image is an embedded PNG that decodes; nothing is fetched from disk or network.
    assert len(page.srcs) >= 10
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for href in page.hrefs:
        assert href.startswith(("#", "data:")), href
        if href.startswith("#"):
            assert href[1:] in page.ids
    assert page.scripts == 0
    # Every method of the run and of the transfer run is named, with its chosen block.
    for label in ("camae / block03", "random-init / block01", "handcrafted / block00"):
        assert label in html
    assert "No rows" not in html and 'class="empty"' not in html


def test_recall_table_holds_the_numbers_from_recall_csv(fake_run: Path) -> None:
    html = report_html(fake_run)
    rec = pd.read_csv(fake_run / "bench" / "camae" / "block03" / "recall.csv")
    corum = float(rec.loc[rec["source"] == "CORUM", "recall_0.05_0.95"].iloc[0])
    assert f"{corum:.3f}" in html
    # The best method per database is bold: camae is ahead of random-init everywhere in the fixture.
    assert re.search(rf'<td class="num best">{corum:.3f}</td>', html)


def test_chosen_block_follows_best_block_json(fake_run: Path) -> None:
    run = load_run(fake_run)
    assert [m.model for m in run.methods] == ["camae", "random-init", "handcrafted"]
    cam = run.method("camae")
    assert cam.block == "block03" and cam.blocks == ["block01", "block02", "block03", "block04"]
    table, metric, chosen = probe_curve(cam)
    assert metric == "mean_f1" and chosen == 3
    assert table.loc[table[metric].idxmax(), "block"] == 3
    # the evaluation's per-block recall sits next to the probe curve (here it peaks at another block)
    assert table.loc[table["recall (evaluation)"].idxmax(), "block"] == 2
    # and the page says that the block was chosen on a proxy screen
    assert "chosen on a proxy screen (proxy/map/camae)" in report_html(fake_run)
    # handcrafted has one folder and no probes: that folder is shown.
    assert run.method("handcrafted").block == "block00"
    assert run.transfer is not None and [m.model for m in run.transfer.methods] == ["camae", "random-init"]


def test_views_read_bench_layouts(fake_run: Path) -> None:
    run = load_run(fake_run)
    long = recall_long(run.method("camae"))
    assert list(long.columns[:3]) == ["method", "database", "recall"]
    assert list(long["database"]) == ["CORUM", "HuMAP", "Reactome", "truth"]
    vals, null, col = consistency_values(run.method("camae"))
    assert col == "mean_cosine" and len(vals) == len(null) == 23
    agg = pd.read_parquet(fake_run / "map" / "camae" / "block03" / "aggregated.parquet")
    sim, names, groups = best_group_block(agg, run.truth_genes, n_groups=3)
    assert sim.shape == (len(names), len(names)) and len(set(groups)) == 3
    assert all(n.startswith("G") for n in names)  # null genes and controls are not complexes
    # Within-complex similarity is higher than between complexes in the fixture's structure.
    g = pd.Series(groups)
    same = (g.to_numpy()[:, None] == g.to_numpy()[None, :])
    assert sim[same].mean() > sim[~same].mean() + 0.3


def test_values_are_escaped(fake_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "RUN"
    shutil.copytree(fake_run, run)
    rec = run / "bench" / "camae" / "block03" / "recall.csv"
    df = pd.read_csv(rec)
    df.loc[0, "source"] = "<script>alert(1)</script>"
    df.to_csv(rec, index=False)
    write_manifest(rec.parent, "bench")  # as if `cellmae bench` had written this value
    html = report_html(run)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_partial_run_reports_what_exists(fake_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "RUN"
    (run / "train").mkdir(parents=True)
    shutil.copytree(fake_run / "train" / "camae", run / "train" / "camae")
    html = report_html(run)
    assert "Training curves" in html
    assert "run `cellmae bench`" in html  # missing stages are named with the command that makes them


def test_errors_name_the_file(fake_run: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no stage output"):
        load_run(tmp_path / "empty")
    run = tmp_path / "RUN"
    shutil.copytree(fake_run, run)
    bad = run / "bench" / "camae" / "best_block.json"
    bad.write_text("{not json")
    with pytest.raises(ReportInputError, match=re.escape(str(bad))):
        load_run(run)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ReportInputError, match="expected a JSON object"):
        load_run(run)


def test_cli_writes_report_and_fails_cleanly(fake_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "x" / "report.html"
    res = runner.invoke(app, ["report", str(fake_run), "--out", str(out), "--title", "My <run>"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "<title>My &lt;run&gt;</title>" in out.read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not list((tmp_path / "x").glob(".*tmp"))  # atomic write left no temporary behind


def test_report_builds_under_pandas_copy_on_write(fake_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pandas 3 makes copy-on-write the default (and importing pycytominer turns it on today): views
    # handed out by to_numpy() are then read-only, so the report must copy what it writes to.
    # The stamp is pinned: two calls either side of a minute boundary would otherwise differ.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with pd.option_context("mode.copy_on_write", True):
        html = report_html(fake_run)
    assert html == report_html(fake_run)


def test_source_date_epoch_pins_the_stamp_and_a_bad_one_is_named(fake_run: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    html = report_html(fake_run)
    assert "generated 2023-11-14 22:13 UTC" in html
    runner = CliRunner()
    pages = []
    for name in ("a.html", "b.html"):  # the same run, reported twice: byte-identical pages
        assert runner.invoke(app, ["report", str(fake_run), "--out", str(tmp_path / name)]).exit_code == 0
        pages.append((tmp_path / name).read_bytes())
    assert pages[0] == pages[1] and pages[0].decode() == html
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InputError, match=r"^SOURCE_DATE_EPOCH='yesterday': set it to whole seconds"):
        report_html(fake_run)
    # numpy.f2py (imported by scipy) reads the variable at import: the command must refuse it first.
    proc = subprocess.run([sys.executable, "-m", "cellmae.cli", "report", str(fake_run)],
                          capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "yesterday"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: SOURCE_DATE_EPOCH='yesterday': set it to whole seconds since 1970-01-01 UTC, "
                           "or unset it\n")
