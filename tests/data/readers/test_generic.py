import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from cellmae.data import schema as S
from cellmae.data.readers import GenericScreen, ReadError, open_screen
from cellmae.data.readers.generic import pseudo_well


def _stack(seed: int, c: int = 3, h: int = 40, w: int = 36, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, (c, h, w)).astype(dtype)


def test_real_example_fly_one_file_per_channel(example_fly_dir) -> None:
    screen = open_screen(
        example_fly_dir, pattern="{field}_{channel}.TIF", channels={"D": "DNA", "F": "FITC", "R": "Rhodamine"}
    )
    assert screen.channels == ("DNA", "FITC", "Rhodamine") and len(screen) == 3
    m = screen.metadata
    assert m["Metadata_Field"].tolist() == ["01_POS002", "01_POS076", "01_POS218"]
    assert m[S.WELL].tolist() == ["A01", "A02", "A03"] and (m[S.PERTURBATION_TYPE] == S.UNKNOWN).all()
    img = screen.read_field(2)
    assert img.shape == (3, 1006, 1000) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[1], tifffile.imread(example_fly_dir / "01_POS218_F.TIF"))
    auto = open_screen(example_fly_dir)  # <field>_<token> files are recognised, D/F/R named by alias
    assert auto.channels == screen.channels and auto.path(0) == screen.path(0)


def test_multichannel_tiff_ome_tiff_and_metadata_csv(tmp_path) -> None:
    root = tmp_path / "tiffs"
    root.mkdir()
    a, b = _stack(1), _stack(2)
    tifffile.imwrite(root / "plateA_f1.tif", a)
    tifffile.imwrite(root / "plateA_f2.tif", np.moveaxis(b, 0, -1), photometric="rgb")  # YXS: channels last
    screen = open_screen(root, experiment="expX", plate="7")
    assert len(screen) == 2 and screen.channels == ("C0", "C1", "C2")
    np.testing.assert_array_equal(screen.read_field(0), a)
    np.testing.assert_array_equal(screen.read_field(1), b)
    assert screen.metadata[S.EXPERIMENT].eq("expX").all() and screen.metadata[S.PLATE].eq("7").all()

    pd.DataFrame(
        {"field": ["plateA_f2"], S.WELL: ["H12"], S.PERTURBATION: ["TP53"], S.PERTURBATION_TYPE: ["CRISPR"]}
    ).to_csv(tmp_path / "meta.csv", index=False)
    sub = open_screen(
        root, layout="generic", metadata_csv=tmp_path / "meta.csv", channels=["DNA", "ER", "Mito"]
    )
    assert len(sub) == 1 and sub.channels == ("DNA", "ER", "Mito")
    assert sub.metadata.iloc[0][[S.WELL, S.PERTURBATION]].tolist() == ["H12", "TP53"]
    np.testing.assert_array_equal(sub.read_field(0), b)

    ome = tmp_path / "ome"
    ome.mkdir()
    c = _stack(3, dtype=np.uint16) * 100
    tifffile.imwrite(
        ome / "f1.ome.tif", c, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["DNA", "ER", "RNA"]}}
    )
    s3 = open_screen(ome)
    assert s3.channels == ("DNA", "ER", "RNA")
    np.testing.assert_array_equal(s3.read_raw(0), c)
    assert s3.read_field(0).dtype == np.uint8 and s3.read_field(0).max() == 255


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_with_channel_labels_and_z_projection(tmp_path, version) -> None:
    root = tmp_path / "zarrs"
    data = _stack(4, c=2)[:, None].repeat(3, axis=1)  # (C, Z, Y, X)
    data[:, 1] += 5
    for name in ("w1.ome.zarr", "w2.ome.zarr"):
        g = zarr.open_group(str(root / name), mode="w")
        g.create_array("0", data=data)
        ms = {"axes": [{"name": n} for n in "czyx"], "datasets": [{"path": "0"}]}
        ome = {"multiscales": [ms], "omero": {"channels": [{"label": "DNA"}, {"label": "Actin"}]}}
        g.attrs.update({"ome": {"version": version, **ome}} if version == "0.5" else ome)
    screen = open_screen(root)
    assert screen.channels == ("DNA", "Actin") and len(screen) == 2
    np.testing.assert_array_equal(screen.read_field(1), data.max(axis=1))


def test_pseudo_wells_and_unknown_layout(tmp_path) -> None:
    assert [pseudo_well(k) for k in (0, 23, 24, 26 * 24)] == ["A01", "A24", "B01", "AA01"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(ReadError, match=r"notes: unknown layout"):
        open_screen(tmp_path / "notes")
    assert isinstance(open_screen, object) and GenericScreen.layout == "generic"
