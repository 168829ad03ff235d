"""Bad input fails with an error naming the file; --skip-bad continues and reports; no half-written shards."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellmae.data.readers import ReadError, open_screen
from cellmae.data.shards import build_shards


def _field_file(root, k: int = 2):
    return sorted((root / "EXP-1" / "Plate1").glob(f"B03_s1_w{k}.png"))[0]


def test_truncated_png_names_the_file(make_rxrx) -> None:
    root, _ = make_rxrx(sites=1)
    bad = _field_file(root)
    bad.write_bytes(bad.read_bytes()[:60])
    screen = open_screen(root)
    i = screen.metadata.index[(screen.metadata["Metadata_Well"] == "B03")][0]
    with pytest.raises(ReadError, match=rf"{bad}: cannot decode image"):
        screen.read_field(int(i))


def test_missing_channel_file_and_row_without_image(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1)
    missing = _field_file(root, 5)
    missing.unlink()
    screen = open_screen(root)
    with pytest.raises(ReadError, match=rf"{missing}: file not found \(metadata row \d+ of .*metadata.csv"):
        screen.check_files()
    with pytest.raises(ReadError, match=rf"{missing}: file not found"):
        build_shards(screen, tmp_path / "out", crop_size=16, progress=False)
    assert not (tmp_path / "out").exists()
    # a metadata row without any image: all its planes are listed (the channel count comes from the
    # other sites on disk, not from this row)
    meta = pd.read_csv(root / "metadata.csv")
    meta.iloc[[0]].assign(well="P24", well_id="x").to_csv(root / "metadata.csv", index=False)
    screen = open_screen(root)
    assert [p.name for _, p in screen.missing_files()] == [f"P24_s1_w{k}.png" for k in range(1, 7)]
    with pytest.raises(ReadError, match=r"P24_s1_w1.png: file not found \(metadata row 1 .*6 missing file"):
        screen.check_files()
    # a screen with no image at all is refused when it is opened
    for png in root.rglob("*.png"):
        png.unlink()
    with pytest.raises(ReadError, match=r"P24_s1_w1.png: no image for metadata row 1"):
        open_screen(root)


def test_fields_of_mismatched_size_name_both_files(tmp_path) -> None:
    root = tmp_path / "mixed"
    root.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "f1_D.png")
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(root / "f1_R.png")
    screen = open_screen(root)
    with pytest.raises(
        ReadError, match=r"f1_R.png: image size \(32, 30\) differs from \(32, 32\) of .*f1_D.png"
    ):
        screen.read_field(0)


def test_bad_metadata_names_file_row_and_column(make_rxrx) -> None:
    root, _ = make_rxrx(sites=1)
    meta = pd.read_csv(root / "metadata.csv")
    meta.loc[2, "perturbation_type"] = "MAGIC"
    meta.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ValueError, match=r"metadata.csv: row 3, column Metadata_PerturbationType: 'MAGIC'"):
        open_screen(root)


def test_unknown_layouts(tmp_path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ReadError, match=r"x.csv: unknown layout"):
        open_screen(tmp_path / "x.csv")
    with pytest.raises(ReadError, match=r"nowhere: no such file"):
        open_screen(tmp_path / "nowhere")


def test_skip_bad_continues_and_reports(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1)
    trunc = _field_file(root, 1)
    trunc.write_bytes(trunc.read_bytes()[:50])
    gone = root / "EXP-2" / "Plate1" / "C04_s1_w6.png"
    gone.unlink()
    screen = open_screen(root)
    rep = build_shards(
        screen,
        tmp_path / "s",
        crop_size=16,
        crops_per_field=2,
        skip_bad=True,
        report_path=tmp_path / "rep.json",
        progress=False,
    )
    assert rep.fields == 4 and rep.fields_skipped == 2 and rep.crops_written == 8
    skipped = pd.read_csv(tmp_path / "s" / "skipped.csv")
    assert {str(trunc), str(gone)} <= {p for paths in skipped["path"] for p in paths.split(";")}
    assert any(str(gone) in e and "file not found" in e for e in skipped["error"])
    assert json.loads((tmp_path / "rep.json").read_text())["fields_skipped"] == 2
    rep_csv = build_shards(
        screen,
        tmp_path / "s2",
        crop_size=16,
        crops_per_field=1,
        skip_bad=True,
        report_path=tmp_path / "rep.csv",
        progress=False,
    )
    assert len(pd.read_csv(tmp_path / "rep.csv")) == rep_csv.fields_skipped == 2
    # no temporaries left behind (the one-writer lock files stay: deleting them would race another writer)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]
