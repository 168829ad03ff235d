"""Issue 17, data side: no silent channel loss, no silent rescaling, and every bad input is one line
naming the file, row or option, with exit code 2 from the CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.readers import ReadError, open_screen
from cellmae.data.shards import build_shards, read_shard_info, shard_dataloader
from cellmae.utils.errors import InputError

runner = CliRunner()


def _one_error_line(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_a_plane_missing_in_the_first_row_is_listed_not_a_lost_channel(make_rxrx) -> None:
    """Item 1: the channel count used to come from the first row's files."""
    root, _ = make_rxrx(sites=1)  # 6 channels, no channels.json (as RxRx downloads)
    first = open_screen(root).path(0)[5]
    first.unlink()
    screen = open_screen(root)
    assert len(screen.channels) == 6
    assert screen.missing_files() == [(0, first)]
    res = runner.invoke(app, ["shards", "inspect", str(root), "--check-files"])
    assert res.exit_code == 0, res.stderr
    assert "1 missing file(s)" in res.stdout and f"row 1: {first}" in res.stdout


def test_every_missing_plane_is_listed(make_rxrx) -> None:
    root, _ = make_rxrx(sites=2)  # 12 sites x 6 planes
    gone = sorted((root / "EXP-2").rglob("*.png"))
    for p in gone:
        p.unlink()
    res = runner.invoke(app, ["shards", "inspect", str(root), "--check-files"])
    assert res.exit_code == 0, res.stderr
    assert f"{len(gone)} missing file(s)" in res.stdout and all(str(p) in res.stdout for p in gone)
    with pytest.raises(ReadError, match=r"36 missing file\(s\) in all.*shards inspect .* --check-files"):
        open_screen(root).check_files()


def test_more_files_than_channel_names_is_refused(make_rxrx) -> None:
    root, _ = make_rxrx(sites=1, n_channels=3, channels_json=["DNA", "ER"])
    with pytest.raises(ReadError, match=r"metadata.csv: sites have channel files up to w3 but only 2 channel names"):
        open_screen(root)


def test_a_16_bit_plane_in_an_8_bit_field_is_refused_naming_the_file(make_rxrx, tmp_path) -> None:
    """Item 6: the whole field used to be percentile-rescaled, 8-bit planes included."""
    root, fields = make_rxrx(sites=1, n_channels=3, channels_json=["DNA", "ER", "Mito"])
    screen = open_screen(root)
    odd = screen.path(2)[1]
    Image.fromarray(np.full((48, 48), 3000, np.uint16)).save(odd)
    assert Image.open(odd).mode.startswith("I")  # really 16-bit on disk
    with pytest.raises(ReadError, match=rf"{odd}: uint16 plane in a field whose other planes are uint8"):
        screen.read_field(2)
    # the user's choices: skip the field (listed), or scale every plane on purpose
    rep = build_shards(screen, tmp_path / "s", crop_size=16, crops_per_field=1, skip_bad=True, progress=False)
    assert rep.fields_skipped == 1 and str(odd) in rep.skipped[0]["error"]
    scaled = open_screen(root, rescale_uint8=True).read_field(2)
    assert scaled.dtype == np.uint8 and scaled.shape == (3, 48, 48)
    # the other fields keep their exact 8-bit pixels
    assert (open_screen(root).read_field(0) == fields[("EXP-1", "1", "B02", 1)]).all()


def test_missing_site_column_is_named(make_rxrx) -> None:
    """Item 11: rows per site without a site column used to be reported as duplicated rows."""
    root, _ = make_rxrx(sites=2)
    pd.read_csv(root / "metadata.csv").drop(columns="site").to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ReadError, match=r"metadata.csv: missing column 'site', and well B02 .* has 2 rows"):
        open_screen(root)


@pytest.mark.parametrize("content", ["well_id,experiment,plate,well,site,gene,perturbation_type\n", ""])
def test_header_only_or_empty_metadata_csv_is_one_line(make_rxrx, tmp_path, content) -> None:
    root, _ = make_rxrx(sites=1)
    (root / "metadata.csv").write_text(content)
    res = runner.invoke(app, ["shards", "build", str(root), "--out", str(tmp_path / "o")])
    line = _one_error_line(res)
    assert str(root / "metadata.csv") in line


@pytest.mark.parametrize("option,value", [("--crop-size", "0"), ("--crops-per-field", "-1"), ("--workers", "-2"),
                                          ("--part-fields", "0"), ("--chunk-bytes", "lots"), ("--mode", "tiles"),
                                          ("--compression", "lz9")])
def test_bad_build_options_name_the_option(make_rxrx, tmp_path, option, value) -> None:
    root, _ = make_rxrx(sites=1)
    res = runner.invoke(app, ["shards", "build", str(root), "--out", str(tmp_path / "o"), option, value])
    line = _one_error_line(res)
    assert option in line and value in line
    assert not (tmp_path / "o").exists()


def test_truncated_tiff_mid_build_names_the_file(make_cellpainting, tmp_path) -> None:
    csv, _ = make_cellpainting()
    bad = sorted((csv.parent / "images" / "P2").glob("*.tiff"))[3]
    bad.write_bytes(bad.read_bytes()[:200])
    res = runner.invoke(app, ["shards", "build", str(csv), "--out", str(tmp_path / "o"), "--crop-size", "16"])
    assert str(bad) in _one_error_line(res)
    assert not (tmp_path / "o").exists()


def test_non_utf8_paths_build_and_stream(make_rxrx, tmp_path) -> None:
    """pyarrow cannot open a path that is not UTF-8; the shard writer must not depend on that."""
    root, _ = make_rxrx(sites=1, n_channels=2, channels_json=["DNA", "ER"],
                        root=tmp_path / os.fsdecode(b"screen-\xff"))
    out = tmp_path / os.fsdecode(b"shards-\xfe")
    res = runner.invoke(app, ["shards", "build", str(root), "--out", str(out), "--crop-size", "16",
                              "--crops-per-field", "1"])
    assert res.exit_code == 0, res.stderr
    batches = list(shard_dataloader(out, batch_size=3, shuffle=False))
    assert sum(len(b["image"]) for b in batches) == 6


def test_a_shard_set_without_a_matching_manifest_is_refused(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1, n_channels=2, channels_json=["DNA", "ER"])
    out = tmp_path / "s"
    build_shards(open_screen(root), out, crop_size=16, crops_per_field=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "shards" and {"index.json", "crops.parquet", "cellmae_shards.json"} <= set(
        manifest["files"])
    chunk = next(out.glob("chunk-*.bin"))
    chunk.write_bytes(chunk.read_bytes()[:-10])
    with pytest.raises(InputError, match=rf"{out}: files do not match manifest.json \({chunk.name} has"):
        read_shard_info(out)
    line = _one_error_line(runner.invoke(app, ["shards", "inspect", str(out)]))
    assert str(out) in line and "cellmae shards build" in line
    (out / "manifest.json").unlink()
    with pytest.raises(InputError, match=rf"{out}: no manifest.json"):
        shard_dataloader(out, batch_size=2)


def test_rerunning_a_finished_build_is_a_no_op_and_other_options_are_refused(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1, n_channels=2, channels_json=["DNA", "ER"])
    args = ["shards", "build", str(root), "--out", str(tmp_path / "s"), "--crop-size", "16"]
    assert runner.invoke(app, args).exit_code == 0
    before = (tmp_path / "s" / "manifest.json").read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "s" / "manifest.json").read_bytes() == before
    line = _one_error_line(runner.invoke(app, [*args, "--seed", "5"]))
    assert "already exists" in line and "--overwrite" in line


def test_a_truncated_png_mid_build_names_the_file(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1)
    bad = root / "EXP-2" / "Plate1" / "C04_s1_w3.png"
    bad.write_bytes(bad.read_bytes()[:70])
    res = runner.invoke(app, ["shards", "build", str(root), "--out", str(tmp_path / "o"), "--crop-size", "16",
                              "--part-fields", "2", "--workers", "2"])
    line = _one_error_line(res)
    assert line.startswith(f"error: {bad}: cannot decode image")
    assert not (tmp_path / "o").exists()
