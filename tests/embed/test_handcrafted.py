"""Handcrafted features: known answers on drawn nuclei, and a planted phenotype is separated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellmae.data.schema import IS_CONTROL, PERTURBATION, feature_columns
from cellmae.embed import embed_handcrafted, read_embeddings
from cellmae.models.handcrafted import field_features, handcrafted_feature_names, nucleus_labels

from .conftest import write_rxrx_screen


def _disks(centres, radius, size=96, value=200):
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size), 10, np.uint8)
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = value
    return img


def test_counts_and_sizes_of_drawn_nuclei():
    centres = [(15, 15), (15, 60), (50, 30), (75, 75), (80, 20)]
    dna = _disks(centres, 6)
    other = np.full_like(dna, 50)
    other[dna > 100] = 150  # channel 2 brighter inside nuclei
    names = handcrafted_feature_names(("DNA", "ER"))
    f = dict(zip(names, field_features(np.stack([dna, other]), ("DNA", "ER"), 0), strict=True))
    assert f["Nuclei_Count"] == 5
    assert f["Nuclei_area_Mean"] == pytest.approx(np.pi * 36, rel=0.15)
    assert f["Nuclei_area_Std"] < 1.0  # all the same size
    assert f["Nuclei_eccentricity_Mean"] < 0.3  # round
    assert f["Intensity_NucleiMean_ER"] == pytest.approx(150, abs=1)
    assert f["Intensity_OutsideMean_ER"] == pytest.approx(50, abs=1)
    assert f["Intensity_Mean_DNA"] == pytest.approx(dna.mean(), rel=1e-5)
    assert len(names) == len(set(names))


def test_blank_field_has_no_nuclei_and_finite_features():
    img = np.full((3, 64, 64), 7, np.uint8)
    assert nucleus_labels(img[0]).max() == 0
    f = field_features(img, ("DNA", "ER", "RNA"), 0)
    assert np.isfinite(f).all()
    assert f[handcrafted_feature_names(("DNA", "ER", "RNA")).index("Nuclei_Count")] == 0


def test_wrong_channel_count_is_an_error():
    with pytest.raises(ValueError, match="does not match 2 channels"):
        field_features(np.zeros((3, 32, 32), np.uint8), ("DNA", "ER"), 0)


def test_handcrafted_baseline_separates_planted_phenotype(rxrx_screen, tmp_path):
    out = tmp_path / "embed" / "handcrafted"
    paths = embed_handcrafted(rxrx_screen, out, num_workers=0, progress=False)
    assert list(paths) == [0] and paths[0] == out / "block00"
    df = read_embeddings(paths[0])
    names = json.loads((out / "feature_names.json").read_text())
    feats = df[feature_columns(df)].to_numpy()
    assert feats.dtype == np.float32 and len(names) == feats.shape[1] and len(df) == 12
    big = (df[PERTURBATION] == "BIG").to_numpy()
    # The shape feature planted in the simulation: every BIG well has larger nuclei than any other well.
    area = feats[:, names.index("Nuclei_area_Mean")]
    assert area[big].min() > area[~big].max()
    # And the whole profile separates: leave-one-out nearest centroid on z-scored features is perfect.
    z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    correct = 0
    for i in range(len(z)):
        rest = np.arange(len(z)) != i
        c_big = z[rest & big].mean(0)
        c_other = z[rest & ~big].mean(0)
        pred = np.linalg.norm(z[i] - c_big) < np.linalg.norm(z[i] - c_other)
        correct += pred == big[i]
    assert correct == len(z)
    assert df[IS_CONTROL].sum() == 4


def test_unreadable_field_names_its_file_and_rerun_completes(tmp_path):
    screen = write_rxrx_screen(tmp_path / "s", plates=2, wells=2, sites=1, size=64)
    bad = screen / "EXP1" / "Plate2" / "B03_s1_w2.png"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:40])  # truncated PNG
    out = tmp_path / "out"
    with pytest.raises(Exception, match="B03_s1_w2.png"):
        embed_handcrafted(screen, out, num_workers=1, progress=False)  # through a DataLoader worker
    assert (out / "block00" / "Metadata_Experiment=EXP1" / "Metadata_Plate=1" / "part-0.parquet").exists()  # finished plate kept
    assert not (out / "block00" / "Metadata_Experiment=EXP1" / "Metadata_Plate=2").exists() or not any((out / "block00" / "Metadata_Experiment=EXP1" / "Metadata_Plate=2").glob("*.parquet"))
    bad.write_bytes(good_bytes)
    embed_handcrafted(screen, out, num_workers=0, progress=False)
    assert len(read_embeddings(out / "block00")) == 4


def test_anndata_export_names_wells_and_records_provenance(rxrx_screen, tmp_path):
    import anndata as ad

    import cellmae
    from cellmae.data.profiles import Profiles

    out = tmp_path / "embed" / "handcrafted"
    embed_handcrafted(rxrx_screen, out, num_workers=0, progress=False, anndata=True)
    adata = ad.read_h5ad(out / "anndata" / "block00.h5ad")
    table = read_embeddings(out / "block00")
    assert list(adata.obs_names) == list(table["Metadata_Experiment"] + "_" + table["Metadata_Plate"] + "_"
                                         + table["Metadata_Well"])
    assert adata.uns["block"] == 0 and adata.uns["cellmae_version"] == cellmae.__version__
    assert json.loads(adata.uns["embed_config"])["source"]["kind"] == "handcrafted"
    assert list(adata.var["name"]) == json.loads((out / "feature_names.json").read_text())
    back = Profiles.read(out / "anndata" / "block00.h5ad", wells=True)  # the h5ad reads back as the same wells
    np.testing.assert_array_equal(back.features, table[feature_columns(table)].to_numpy())


def test_an_older_plate_folder_layout_is_named_not_mixed(rxrx_screen, tmp_path):
    import shutil

    from cellmae.utils.errors import InputError

    out = tmp_path / "embed" / "handcrafted"
    embed_handcrafted(rxrx_screen, out, num_workers=0, progress=False)
    plate = next((out / "block00").glob("Metadata_Experiment=*/Metadata_Plate=*"))
    shutil.move(plate, out / "block00" / "plate=EXP1_1")  # how cellmae < this layout named a plate folder
    with pytest.raises(InputError, match="older cellmae"):
        read_embeddings(out / "block00")
    with pytest.raises(InputError, match="--overwrite"):
        embed_handcrafted(rxrx_screen, out, num_workers=0, progress=False)
