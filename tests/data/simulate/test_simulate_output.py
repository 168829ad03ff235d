"""On-disk output of the simulator: determinism, the RxRx layout, truth files, read-back, resume, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellmae.data import schema as S
from cellmae.data.simulate import PRESETS, resolve_spec, simulate_screen
from cellmae.data.simulate import writer as W

SMALL = dict(n_genes=5, n_compounds=1, controls_per_plate=2, sites_per_well=1, field_size=64)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_worker_count_does_not_matter(tmp_path: Path) -> None:
    a = simulate_screen(tmp_path / "a", "tiny", seed=3, **SMALL)
    b = simulate_screen(tmp_path / "b", "tiny", seed=3, **{**SMALL, "workers": 2})
    c = simulate_screen(tmp_path / "c", "tiny", seed=4, **SMALL)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    da.pop("truth/simulation.json"), db.pop("truth/simulation.json")  # records the worker count
    assert da == db
    assert da["metadata.csv"] != dc["metadata.csv"] and da["truth/genes.csv"] != dc["truth/genes.csv"]


def test_rxrx_layout_and_truth_files(tiny_screen: Path) -> None:
    spec = resolve_spec("tiny")
    meta = pd.read_csv(tiny_screen / "metadata.csv")
    assert list(meta.columns) == list(W.METADATA_COLUMNS)
    assert json.loads((tiny_screen / "channels.json").read_text()) == {"channels": list(S.RXRX_CHANNELS)}
    n_wells = spec.n_experiments * (spec.n_genes + spec.n_compounds * len(spec.doses_uM) + spec.controls_per_plate)
    assert len(meta) == n_wells * spec.sites_per_well
    assert meta["well"].str.fullmatch(r"[B-O](0[2-9]|1\d|2[0-3])").all()  # inner wells of a 384 plate
    assert not meta.duplicated(["experiment", "plate", "well", "site"]).any()
    for _, g in meta.groupby(["experiment", "plate"]):  # controls on every plate
        ctrl = g[g["perturbation_type"] == "CONTROL"]
        assert len(ctrl) == spec.controls_per_plate * spec.sites_per_well
        assert (ctrl["gene"] == "EMPTY").all() and (ctrl["well_type"] == "negative_control").all()
    cpd = meta[meta["perturbation_type"] == "COMPOUND"]
    assert cpd["treatment"].str.startswith("CPD-").all() and cpd["gene"].isna().all()
    assert sorted(cpd["concentration"].unique()) == sorted(spec.doses_uM)
    crispr = meta[meta["perturbation_type"] == "CRISPR"]
    assert (crispr["treatment"].str.split("_g").str[0] == crispr["gene"]).all()  # guide ids name the gene
    r = meta.iloc[0]
    for k in range(1, 7):
        img = np.asarray(Image.open(tiny_screen / r["experiment"] / f"Plate{r['plate']}" / f"{r['well']}_s{r['site']}_w{k}.png"))
        assert img.dtype == np.uint8 and img.shape == (spec.field_size, spec.field_size)

    genes = pd.read_csv(tiny_screen / "truth" / "genes.csv")
    assert list(genes.columns[:5]) == ["gene", "group", "source", "strength", "has_phenotype"]
    assert [c for c in genes.columns if c.startswith("effect_")] == [f"effect_{i}" for i in range(17)]
    assert len(genes) == spec.n_genes and set(genes["gene"]) == set(crispr["gene"])
    np.testing.assert_allclose(np.linalg.norm(genes.filter(like="effect_").to_numpy(), axis=1), genes["strength"], atol=1e-9)
    assert (~genes["has_phenotype"]).any() and genes["has_phenotype"].any()
    cpds = pd.read_csv(tiny_screen / "truth" / "compounds.csv")
    assert list(cpds.columns[:4]) == ["compound", "target_gene", "concentration", "strength"]
    assert set(cpds["target_gene"]) <= set(genes.loc[genes["has_phenotype"], "gene"])
    rel = pd.read_csv(tiny_screen / "truth" / "relationships.csv")
    assert list(rel.columns) == ["entity1", "entity2"] and len(rel) > 0
    group = genes.set_index("gene")["group"]
    assert (group[rel["entity1"]].to_numpy() == group[rel["entity2"]].to_numpy()).all()


def test_truth_relationships_are_real_pairs(tiny_screen: Path, relationships_dir: Path) -> None:
    """Groups come from real complexes/pathways: every truth pair is in HuMAP or Reactome."""
    real = set()
    for name in ("HuMAP.txt", "Reactome.txt"):
        df = pd.read_csv(relationships_dir / name)
        real |= set(zip(df["entity1"], df["entity2"], strict=True)) | set(zip(df["entity2"], df["entity1"], strict=True))
    rel = pd.read_csv(tiny_screen / "truth" / "relationships.csv")
    assert all(p in real for p in zip(rel["entity1"], rel["entity2"], strict=True))


def test_read_back_through_the_rxrx_reader(tiny_screen: Path, helpers) -> None:
    from cellmae.data.readers import open_screen

    screen = open_screen(tiny_screen)
    meta = pd.read_csv(tiny_screen / "metadata.csv")
    assert len(screen) == len(meta) and screen.channels == S.RXRX_CHANNELS
    m = screen.metadata
    assert m[S.IS_CONTROL].sum() == (meta["perturbation_type"] == "CONTROL").sum()
    cpd = m[m[S.PERTURBATION_TYPE] == "COMPOUND"]
    assert cpd[S.PERTURBATION].str.startswith("CPD-").all() and cpd[S.CONCENTRATION].notna().all()
    for i in (0, len(screen) - 1):
        row = m.iloc[i]
        src = meta[(meta["experiment"] == row[S.EXPERIMENT]) & (meta["plate"].astype(str) == str(row[S.PLATE]))
                   & (meta["well"] == row[S.WELL]) & (meta["site"] == int(row[S.SITE]))].iloc[0]
        np.testing.assert_array_equal(screen.read_field(i), helpers.site_image(tiny_screen, src, 6))


def test_cellpainting_variant_has_same_biology_and_five_channels(tmp_path: Path, helpers) -> None:
    rx = simulate_screen(tmp_path / "rx", "tiny", seed=5, **SMALL)
    cp = simulate_screen(tmp_path / "cp", "cellpainting-tiny", seed=5, **SMALL)
    assert json.loads((cp / "channels.json").read_text())["channels"] == list(S.CELLPAINTING_CHANNELS)
    for name in ("metadata.csv", "truth/genes.csv", "truth/compounds.csv", "truth/relationships.csv"):
        assert (rx / name).read_bytes() == (cp / name).read_bytes()
    row = pd.read_csv(rx / "metadata.csv").iloc[3]
    a, b = helpers.site_image(rx, row, 6), helpers.site_image(cp, row, 5)
    np.testing.assert_array_equal(a[0], b[0])  # same cells: the DNA channel is identical
    assert b.shape[0] == 5 and not (cp / row["experiment"] / f"Plate{row['plate']}" / f"{row['well']}_s1_w6.png").exists()
    assert not np.array_equal(a[1:5], b[1:5])  # the other channels are a different stain set


def test_resume_after_a_crash_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _digest(simulate_screen(tmp_path / "ref", "tiny", seed=7, **SMALL))
    real, calls = W._render_task, []

    def flaky(task):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("simulated crash")
        real(task)

    monkeypatch.setattr(W, "_render_task", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        simulate_screen(tmp_path / "out", "tiny", seed=7, **SMALL)
    assert not (tmp_path / "out").exists() and (tmp_path / ".out.partial").is_dir()  # never partial output
    monkeypatch.setattr(W, "_render_task", real)
    n_done = sum(1 for _ in (tmp_path / ".out.partial").rglob("*_w6.png"))
    assert n_done == 5
    assert _digest(simulate_screen(tmp_path / "out", "tiny", seed=7, **SMALL)) == ref
    assert not (tmp_path / ".out.partial").exists()


def test_existing_output_is_reused_or_protected(tmp_path: Path) -> None:
    out = simulate_screen(tmp_path / "s", "tiny", seed=0, **SMALL)
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    assert simulate_screen(out, "tiny", seed=0, **SMALL) == out  # same run: nothing redone
    assert (out / "metadata.csv").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite"):
        simulate_screen(out, "tiny", seed=1, **SMALL)
    simulate_screen(out, "tiny", seed=1, overwrite=True, **SMALL)
    assert json.loads((out / "truth" / "simulation.json").read_text())["seed"] == 1
    other = tmp_path / "user_data"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a simulated screen"):
        simulate_screen(other, "tiny", seed=0, overwrite=True, **SMALL)
    assert (other / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"n_genes": 0}, "n_genes"), ({"nonsense": 1}, "nonsense"), ({"channels": ("DNA", "Tubulin")}, "Tubulin"),
     ({"controls_per_plate": 500}, "controls_per_plate")],
)
def test_bad_parameters_name_the_parameter(tmp_path: Path, overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        simulate_screen(tmp_path / "x", "tiny", **overrides)
    assert not (tmp_path / "x").exists()


def test_presets_resolve() -> None:
    assert {"tiny", "demo", "large", "cellpainting-tiny", "cellpainting-demo"} <= set(PRESETS)
    demo, large = resolve_spec("demo"), resolve_spec("large")
    assert 100 <= demo.n_genes <= 300 and 2 <= demo.n_experiments <= 3
    assert large.n_genes >= 1000
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_spec("huge")


def test_cli_writes_screen_and_preview(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from cellmae.data.simulate.cli import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer from collapsing the group
    args = ["simulate", "-o", str(tmp_path / "s"), "--preset", "tiny", "--set", "n_genes=4", "--set", "field_size=96",
            "--set", "controls_per_plate=2", "--preview", "--json", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout)  # --json: one object on stdout, nothing else
    assert record["screen"] == str((tmp_path / "s").absolute()) and record["preset"] == "tiny"
    preview = Image.open(record["preview"])
    assert preview.size[0] > 400 and preview.size[1] > 400
    bad = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "t"), "--set", "n_genes=abc"])
    assert bad.exit_code != 0 and "n_genes" in bad.output


def test_plates_are_added_when_wells_do_not_fit(tmp_path: Path) -> None:
    root = simulate_screen(tmp_path / "p", "tiny", seed=2, **{**SMALL, "n_genes": 20, "plate_rows": 5, "plate_cols": 6,
                                                           "controls_per_plate": 3})
    meta = pd.read_csv(root / "metadata.csv")
    # 5x6 plate: 3x4 = 12 inner wells, 3 of them controls -> 9 per plate for 20 genes + 2 doses = 3 plates
    assert (meta.groupby("experiment")["plate"].nunique() == 3).all()
    assert (meta[meta["perturbation_type"] == "CONTROL"].groupby(["experiment", "plate"]).size() == 3).all()
    assert meta["well"].str.fullmatch(r"[B-D]0[2-5]").all()
    assert (meta[meta["perturbation_type"] == "CRISPR"].groupby("experiment")["gene"].nunique() == 20).all()


def test_excluded_genes_take_their_whole_group_out() -> None:
    """``exclude_genes`` (the demo's proxy screen): no excluded gene, and no gene of an excluded gene's bundled
    group, is drawn; without it the draw is the same as before the field existed."""
    from cellmae.data.simulate.biology import bundled_gene_groups, sample_biology

    base = sample_biology(resolve_spec("demo"), np.random.default_rng(0)).genes
    again = sample_biology(resolve_spec("demo", exclude_genes=()), np.random.default_rng(0)).genes
    assert base["gene"].tolist() == again["gene"].tolist()
    excluded = tuple(base["gene"])
    other = sample_biology(resolve_spec("demo", exclude_genes=excluded, n_genes=80), np.random.default_rng(1)).genes
    assert len(other) == 80 and not set(other["gene"]) & set(excluded)
    table = bundled_gene_groups()
    touched = set(table.loc[table["gene"].isin(excluded), "group"])
    assert not set(other["group"]) & touched
    with pytest.raises(ValueError, match="outside the groups of exclude_genes"):
        sample_biology(resolve_spec("demo", exclude_genes=tuple(table["gene"][:-3]), n_genes=10),
                       np.random.default_rng(0))


def test_records_without_excluded_genes_match_older_screens(tmp_path: Path) -> None:
    """A screen simulated before ``exclude_genes`` existed (no such key in simulation.json) is reused."""
    out = simulate_screen(tmp_path / "s", "tiny", seed=0, **SMALL)
    record_path = out / "truth" / "simulation.json"
    record = json.loads(record_path.read_text())
    assert "exclude_genes" not in record["spec"]
    stamp = (out / "metadata.csv").stat().st_mtime_ns
    assert simulate_screen(out, "tiny", seed=0, **SMALL) == out
    assert (out / "metadata.csv").stat().st_mtime_ns == stamp
