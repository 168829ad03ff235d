import json

import numpy as np
import pandas as pd

from cellmae.data import schema as S
from cellmae.data.readers import RxRxScreen, open_screen
from cellmae.data.scaling import to_uint8


def test_simulator_layout_reads_exact_pixels_and_maps_schema(make_rxrx) -> None:
    root, fields = make_rxrx()
    screen = open_screen(root)
    assert isinstance(screen, RxRxScreen)
    assert screen.channels == S.RXRX_CHANNELS and len(screen) == 12
    m = screen.metadata
    for i in range(len(screen)):
        key = (m.at[i, S.EXPERIMENT], m.at[i, S.PLATE], m.at[i, S.WELL], m.at[i, S.SITE])
        img = screen.read_field(i)
        assert img.dtype == np.uint8 and img.shape == (6, 48, 48)
        np.testing.assert_array_equal(img, fields[key])
        assert screen.path(i)[2].name == f"{key[2]}_s{key[3]}_w3.png"
    ctrl = m[m[S.WELL] == "B02"]
    assert (
        ctrl[S.IS_CONTROL].all()
        and (ctrl[S.PERTURBATION] == "EMPTY").all()
        and (ctrl[S.PERTURBATION_TYPE] == "CONTROL").all()
    )
    cmpd = m[m[S.WELL] == "C04"].iloc[0]
    assert (
        cmpd[S.PERTURBATION] == "cmpd-7"
        and cmpd[S.PERTURBATION_TYPE] == "COMPOUND"
        and cmpd[S.CONCENTRATION] == 0.5
    )
    crispr = m[m[S.WELL] == "B03"].iloc[0]
    assert crispr[S.PERTURBATION] == "TP53" and not crispr[S.IS_CONTROL] and np.isnan(crispr[S.CONCENTRATION])
    assert screen.summary()["wells"] == 6


def test_channels_json_names_and_fewer_channels(make_rxrx) -> None:
    root, _ = make_rxrx(n_channels=3, channels_json=["Hoechst", "Tubulin", "Brightfield"], sites=1)
    assert open_screen(root, layout="rxrx").channels == ("Hoechst", "Tubulin", "Brightfield")
    (root / "channels.json").unlink()
    assert open_screen(root).channels == S.RXRX_CHANNELS[:3]


def test_rxrx1_metadata_with_sirna_and_images_folder(tmp_path, make_rxrx) -> None:
    root, fields = make_rxrx(sites=1, root=tmp_path / "rxrx1" / "images")
    meta = pd.read_csv(root / "metadata.csv")
    rx1 = pd.DataFrame(
        {
            "site_id": meta.well_id + "_" + meta.site.astype(str),
            "well_id": meta.well_id,
            "cell_type": "HUVEC",
            "dataset": "train",
            "experiment": meta.experiment,
            "plate": meta.plate,
            "well": meta.well,
            "site": meta.site,
            "well_type": meta.well_type,
            "sirna": np.where(meta.well_type == "negative_control", "EMPTY", "s" + meta.index.astype(str)),
            "sirna_id": meta.index,
        }
    )
    (root / "metadata.csv").unlink()
    top = tmp_path / "rxrx1"
    rx1.to_csv(top / "metadata.csv", index=False)
    screen = open_screen(top)
    m = screen.metadata
    assert set(m[S.PERTURBATION_TYPE]) == {"SIRNA"}
    assert m[S.IS_CONTROL].tolist() == (rx1.well_type == "negative_control").tolist()
    assert m["Metadata_CellType"].eq("HUVEC").all()
    np.testing.assert_array_equal(
        screen.read_field(1), fields[(m.at[1, S.EXPERIMENT], "1", m.at[1, S.WELL], 1)]
    )


def test_rxrx3_metadata_per_well_finds_sites_on_disk(make_rxrx) -> None:
    root, fields = make_rxrx(sites=2)
    meta = pd.read_csv(root / "metadata.csv").drop_duplicates("well_id")
    rx3 = meta.rename(columns={"experiment": "experiment_name", "well": "address"}).drop(columns="site")
    rx3.to_csv(root / "metadata.csv", index=False)
    screen = open_screen(root / "metadata.csv")
    assert len(screen) == 12 and sorted(screen.metadata[S.SITE].unique()) == [1, 2]
    m = screen.metadata
    np.testing.assert_array_equal(
        screen.read_field(3), fields[(m.at[3, S.EXPERIMENT], "1", m.at[3, S.WELL], m.at[3, S.SITE])]
    )


def test_uint16_png_is_percentile_scaled(make_rxrx) -> None:
    root, fields = make_rxrx(n_channels=2, sites=1, dtype=np.uint16, channels_json=["DNA", "Mito"])
    screen = open_screen(root, low_pct=1, high_pct=99)
    m = screen.metadata
    raw = fields[(m.at[0, S.EXPERIMENT], "1", m.at[0, S.WELL], 1)]
    np.testing.assert_array_equal(screen.read_field(0), to_uint8(raw, 1, 99))
    assert json.loads((root / "channels.json").read_text())["channels"] == list(screen.channels)
