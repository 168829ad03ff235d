import numpy as np
import pandas as pd
import pytest

from cellmae.data import schema as S
from cellmae.data.readers import CellPaintingScreen, ReadError, open_screen
from cellmae.data.scaling import to_uint8


def test_load_data_16bit_channels_in_canonical_order(make_cellpainting) -> None:
    csv, fields = make_cellpainting()
    screen = open_screen(csv)
    assert isinstance(screen, CellPaintingScreen)
    assert screen.channels == S.CELLPAINTING_CHANNELS
    m = screen.metadata
    assert len(screen) == 8 and set(m[S.WELL]) == {"A01", "B02"} and set(m[S.EXPERIMENT]) == {"batch1"}
    assert (m[S.PERTURBATION_TYPE] == S.UNKNOWN).all() and m["Metadata_Source"].eq("source_4").all()
    for i in (0, 5):
        raw = fields[(m.at[i, S.PLATE], m.at[i, S.WELL], m.at[i, S.SITE])]
        np.testing.assert_array_equal(screen.read_raw(i), raw)
        img = screen.read_field(i)
        assert img.dtype == np.uint8
        np.testing.assert_array_equal(img, to_uint8(raw))
    # folder with load_data.csv is detected too; a channel subset keeps the asked order
    sub = open_screen(csv.parent, channels=["Mito", "DNA"])
    np.testing.assert_array_equal(
        sub.read_raw(0), fields[(m.at[0, S.PLATE], m.at[0, S.WELL], m.at[0, S.SITE])][[4, 0]]
    )


def test_brightfield_columns_are_read_only_on_request(make_cellpainting) -> None:
    csv, fields = make_cellpainting()
    ld = pd.read_csv(csv)
    ld["FileName_OrigBrightfield"], ld["PathName_OrigBrightfield"] = (
        ld["FileName_OrigER"],
        ld["PathName_OrigER"],
    )
    ld.to_csv(csv, index=False)
    assert open_screen(csv).channels == S.CELLPAINTING_CHANNELS
    both = open_screen(csv, channels=["Brightfield", "DNA"])
    raw = fields[(both.metadata.at[0, S.PLATE], both.metadata.at[0, S.WELL], both.metadata.at[0, S.SITE])]
    np.testing.assert_array_equal(both.read_raw(0), raw[[1, 0]])


def test_platemap_join_and_missing_row(make_cellpainting, tmp_path) -> None:
    csv, _ = make_cellpainting()
    pm = pd.DataFrame(
        {
            S.PLATE: ["P1", "P1", "P2", "P2"],
            S.WELL: ["A01", "B02", "A01", "B02"],
            "Metadata_JCP2022": ["JCP1", "DMSO", "JCP2", "DMSO"],
            "Metadata_control_type": ["trt", "negcon", "trt", "negcon"],
            S.CONCENTRATION: [1.0, 0.0, 10.0, 0.0],
        }
    )
    pm.to_csv(tmp_path / "platemap.csv", index=False)
    m = open_screen(csv, perturbation_csv=tmp_path / "platemap.csv").metadata
    assert m.loc[m[S.WELL] == "B02", S.IS_CONTROL].all() and not m.loc[m[S.WELL] == "A01", S.IS_CONTROL].any()
    assert set(m[S.PERTURBATION]) == {"JCP1", "JCP2", "DMSO"} and (m[S.PERTURBATION_TYPE] == "COMPOUND").all()
    pm.iloc[:3].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ReadError, match=r"short.csv: no row for plate 'P2', well 'B02'"):
        open_screen(csv, perturbation_csv=tmp_path / "short.csv")


def test_unknown_channel_names_the_csv(make_cellpainting) -> None:
    csv, _ = make_cellpainting()
    with pytest.raises(ReadError, match=r"load_data.csv: channel 'Tubulin'"):
        open_screen(csv, channels=["Tubulin"])
