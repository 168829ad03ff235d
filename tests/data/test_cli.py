import json

from typer.testing import CliRunner

from cellmae.cli import app

runner = CliRunner()


def test_shards_build_and_inspect(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1)
    out = tmp_path / "sh"
    res = runner.invoke(
        app,
        [
            "shards",
            "build",
            str(root),
            "--out",
            str(out),
            "--crop-size",
            "16",
            "--crops-per-field",
            "2",
            "--qc",
        ],
    )
    assert res.exit_code == 0, res.output
    info = json.loads((out / "cellmae_shards.json").read_text())
    assert (
        info["crops_written"] + info["qc_empty"] + info["qc_out_of_focus"] == 12
        and info["qc"]["channel"] == "DNA"
    )
    res = runner.invoke(app, ["shards", "inspect", str(out)])
    assert res.exit_code == 0 and "cellmae-shards/1" in res.output
    res = runner.invoke(app, ["shards", "inspect", str(root), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["fields"] == 6
    res = runner.invoke(app, ["shards", "inspect", str(root)])
    assert res.exit_code == 0 and "fields: 6" in res.stdout.splitlines()


def test_build_errors_name_the_file_and_skip_bad(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1)
    gone = root / "EXP-1" / "Plate1" / "B03_s1_w4.png"
    gone.unlink()
    res = runner.invoke(
        app, ["shards", "build", str(root), "--out", str(tmp_path / "a"), "--crop-size", "16"]
    )
    assert res.exit_code == 2 and not (tmp_path / "a").exists()
    # one line that holds the whole path, whatever the terminal width
    assert res.stderr.count("\n") == 1 and str(gone) in res.stderr
    res = runner.invoke(
        app,
        [
            "shards",
            "build",
            str(root),
            "--out",
            str(tmp_path / "b"),
            "--crop-size",
            "16",
            "--skip-bad",
            "--report",
            str(tmp_path / "r.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "B03_s1_w4.png" in (tmp_path / "r.csv").read_text()


def test_generic_options_from_the_command_line(example_fly_dir, tmp_path) -> None:
    res = runner.invoke(
        app,
        [
            "shards",
            "inspect",
            str(example_fly_dir),
            "--pattern",
            "{field}_{channel}.TIF",
            "--channels",
            "D=DNA,F=FITC,R=Rhodamine",
            "--experiment",
            "fly",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert "Rhodamine" in summary["channels"] and summary["fields"] == 3
    res = runner.invoke(app, ["shards", "inspect", str(example_fly_dir), "--layout", "rxrx"])
    assert res.exit_code == 2 and "metadata.csv" in res.stderr
