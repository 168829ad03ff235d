"""embed_screen end to end on tiny screens: layout, schema, blocks, aggregation, channels, baselines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cellmae.data.readers import open_screen
from cellmae.data.schema import (
    CELLPAINTING_CHANNELS,
    FEATURE_PREFIX,
    PERTURBATION,
    PLATE,
    SITE,
    WELL,
    WELL_KEYS,
    feature_columns,
)
from cellmae.data.tiling import grid_tiles
from cellmae.embed import embed_screen, read_embeddings, run_embedding
from cellmae.models import create_model, save_pretrained

from .conftest import write_rxrx_screen

CAMAE = "random-init:camae_vit_tiny_patch8_64"
FAST = {"num_workers": 0, "progress": False, "precision": "fp32", "batch_size": 32}


def _features(path) -> tuple[pd.DataFrame, np.ndarray]:
    df = read_embeddings(path)
    return df, df[feature_columns(df)].to_numpy()


def test_layout_schema_and_site_level(small_screen, tmp_path):
    out = tmp_path / "embed" / "camae"
    s = run_embedding(small_screen, CAMAE, out, blocks="1,2", site_level=True, **FAST)  # a preset by name
    assert s.paths == {1: out / "block01", 2: out / "block02"}
    assert s.wells == 8 and s.sites == 16 and s.plates_done == 2 and s.images == 16  # one 64 tile per field
    for block in ("block01", "block02"):
        parts = sorted((out / block).glob("*/*/part-*.parquet"))
        assert [p.parent.relative_to(out / block).as_posix() for p in parts] == [
            "Metadata_Experiment=EXP1/Metadata_Plate=1", "Metadata_Experiment=EXP1/Metadata_Plate=2"]
        # pandas reads the hive folder into exactly the metadata columns: no stray partition column
        df = pd.read_parquet(out / block)
        feats = feature_columns(df)
        assert feats == [f"{FEATURE_PREFIX}{i:04d}" for i in range(192)]
        assert all(df[c].dtype == np.float32 for c in feats)
        assert set(WELL_KEYS) <= set(df.columns) and SITE not in df.columns
        assert [c for c in df.columns if not c.startswith(("Metadata_", FEATURE_PREFIX))] == []
        ours = read_embeddings(out / block)
        assert list(ours.columns[:2]) == ["Metadata_Experiment", "Metadata_Plate"] and set(ours.columns) == set(df.columns)
        assert sorted(set(ours[PLATE])) == ["1", "2"]  # the partition value, as a string like every id
        assert not df.duplicated(list(WELL_KEYS)).any() and len(df) == 8  # both plates
    # pandas reads the whole block folder as one dataset (the documented contract)
    assert len(pd.read_parquet(out / "block02")) == 8
    sites = read_embeddings(out / "sites" / "block02")
    assert len(sites) == 16 and SITE in sites.columns
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["wells"] == 8 and manifest["sites"] == 16 and set(manifest["blocks"]) == {"block01", "block02"}


def test_tiles_sites_wells_are_means_of_the_model_features(tmp_path, camae4):
    model = camae4
    root = write_rxrx_screen(tmp_path / "s128", plates=2, wells=2, sites=2, size=128)  # 4 tiles per field
    s = run_embedding(root, model, tmp_path / "m", blocks=[3], pool="cls", site_level=True, **FAST)
    assert s.images == 4 * 8 and s.extra["tiles_per_field"] == 4
    screen = open_screen(root)
    meta = screen.metadata.reset_index(drop=True)
    sites = read_embeddings(tmp_path / "m" / "sites" / "block03")
    wells = read_embeddings(tmp_path / "m" / "block03")
    i = int(np.flatnonzero((meta[PLATE] == "2") & (meta[WELL] == "B03") & (meta[SITE] == 2))[0])
    tiles = torch.from_numpy(grid_tiles(screen.read_field(i), 64))
    with torch.inference_mode():
        ref = model.forward_features(tiles, channels=screen.channels, blocks=[3], pool="cls")[3].mean(0).numpy()
    row = sites[(sites[PLATE] == "2") & (sites[WELL] == "B03") & (sites[SITE] == 2)]
    np.testing.assert_allclose(row[feature_columns(row)].to_numpy()[0], ref, rtol=1e-4, atol=1e-5)
    well_sites = sites[(sites[PLATE] == "2") & (sites[WELL] == "B03")]
    well = wells[(wells[PLATE] == "2") & (wells[WELL] == "B03")]
    np.testing.assert_allclose(well[feature_columns(well)].to_numpy()[0],
                               well_sites[feature_columns(well_sites)].to_numpy().mean(0), rtol=1e-5, atol=1e-6)


def test_several_blocks_in_one_pass_equal_separate_runs(small_screen, tmp_path, camae4):
    run_embedding(small_screen, camae4, tmp_path / "both", blocks="1,3", **FAST)
    for b in (1, 3):
        run_embedding(small_screen, camae4, tmp_path / f"only{b}", blocks=[b], **FAST)
        df_both, f_both = _features(tmp_path / "both" / f"block{b:02d}")
        df_one, f_one = _features(tmp_path / f"only{b}" / f"block{b:02d}")
        pd.testing.assert_frame_equal(df_both.drop(columns=feature_columns(df_both)),
                                      df_one.drop(columns=feature_columns(df_one)))
        np.testing.assert_allclose(f_both, f_one, rtol=1e-5, atol=1e-6)
    _, f1 = _features(tmp_path / "both" / "block01")
    _, f3 = _features(tmp_path / "both" / "block03")
    assert not np.allclose(f1, f3)


@pytest.mark.parametrize("channels", [("DNA", "ER", "RNA"), CELLPAINTING_CHANNELS, None])
def test_camae_embeds_3_5_and_6_channel_screens(tmp_path, small_screen, camae4, channels):
    screen = small_screen if channels is None else write_rxrx_screen(tmp_path / "s", channels, plates=1, wells=4, size=64)
    s = run_embedding(screen, camae4, tmp_path / "out", blocks=[2], pool="channel_concat", **FAST)
    n = 6 if channels is None else len(channels)
    df, f = _features(s.paths[2])
    assert f.shape[1] == 192 * n and np.isfinite(f).all()
    assert s.extra["channels"] == list(channels or open_screen(screen).channels)


def test_fixed_channel_model_on_wrong_channels_fails_naming_both(tmp_path):
    screen = write_rxrx_screen(tmp_path / "cp", CELLPAINTING_CHANNELS, plates=1, wells=2, size=64)
    with pytest.raises(ValueError) as err:  # a fixed-channel preset named as a random-init baseline
        embed_screen(screen, "random-init:mae_vit_tiny_patch8_64", tmp_path / "out", **FAST)
    msg = str(err.value)
    assert "expects channels" in msg and "'Actin'" in msg and "'AGP'" in msg
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_fixed_channel_model_maps_channels_by_name(tmp_path, small_screen):
    """The same images with channel files in another order give the same embeddings."""
    screen = open_screen(small_screen)
    order = (4, 0, 5, 2, 1, 3)
    shuffled = tuple(screen.channels[k] for k in order)
    other = write_rxrx_screen(tmp_path / "shuffled", shuffled, wells=4, size=64, seed=1)  # same seed: same images per channel index
    # write_rxrx_screen draws channel k's content by position; re-map the files so names follow content
    for png in sorted(other.rglob("*_w*.png")):
        k = int(png.stem.rsplit("_w", 1)[1]) - 1
        src = small_screen / png.relative_to(other).parent / png.name.replace(f"_w{k + 1}.", f"_w{order[k] + 1}.")
        png.write_bytes(src.read_bytes())
    model = create_model("mae_vit_tiny_patch8_64", depth=2, decoder_depth=1)
    a = embed_screen(small_screen, model, tmp_path / "a", blocks=[2], **FAST)
    b = embed_screen(other, model, tmp_path / "b", blocks=[2], **FAST)
    np.testing.assert_allclose(_features(a[2])[1], _features(b[2])[1], rtol=1e-5, atol=1e-6)


def test_random_init_baseline_of_a_checkpoint(tmp_path, small_screen):
    torch.manual_seed(123)
    ckpt = save_pretrained(create_model("camae_vit_tiny_patch8_64", depth=2, decoder_depth=1), tmp_path / "train" / "camae")
    trained = embed_screen(small_screen, ckpt, tmp_path / "embed" / "camae", blocks=[2], **FAST)
    rand1 = embed_screen(small_screen, f"random-init:{ckpt}", tmp_path / "embed" / "random-init", blocks=[2], **FAST)
    rand2 = embed_screen(small_screen, f"random-init:{ckpt}", tmp_path / "r2", blocks=[2], **FAST)
    f_trained, f_rand = _features(trained[2])[1], _features(rand1[2])[1]
    assert f_trained.shape == f_rand.shape
    assert not np.allclose(f_trained, f_rand)  # other weights
    np.testing.assert_array_equal(f_rand, _features(rand2[2])[1])  # seeded: the same baseline every run
    # retrained weights in the same checkpoint folder must not be mixed into the old output on resume
    save_pretrained(create_model("camae_vit_tiny_patch8_64", depth=2, decoder_depth=1), ckpt)
    with pytest.raises(ValueError, match="other settings.*source"):
        embed_screen(small_screen, ckpt, tmp_path / "embed" / "camae", blocks=[2], **FAST)


def test_block_auto_reads_best_block_json(tmp_path, small_screen, camae4):
    bench = tmp_path / "RUN" / "bench" / "camae"
    bench.mkdir(parents=True)
    (bench / "best_block.json").write_text(json.dumps({"block": 2, "metric": "recall"}))
    paths = embed_screen(small_screen, camae4, tmp_path / "RUN" / "embed" / "camae", blocks="auto", **FAST)
    assert list(paths) == [2]
    with pytest.raises(ValueError, match=r"1\.\.4"):
        embed_screen(small_screen, camae4, tmp_path / "x", blocks="5", **FAST)


def test_resume_adds_blocks_and_rejects_other_settings(tmp_path, small_screen, camae4):
    out = tmp_path / "out"
    run_embedding(small_screen, camae4, out, blocks=[1], **FAST)
    part = out / "block01" / "Metadata_Experiment=EXP1" / "Metadata_Plate=1" / "part-0.parquet"
    stamp = part.stat().st_mtime_ns
    again = run_embedding(small_screen, camae4, out, blocks=[1], **FAST)
    assert again.plates_skipped == 2 and again.plates_done == 0 and again.images == 0
    more = run_embedding(small_screen, camae4, out, blocks=[1, 2], **FAST)
    assert more.plates_done == 2 and part.stat().st_mtime_ns == stamp  # block 1 was not rewritten
    assert (out / "block02" / "Metadata_Experiment=EXP1" / "Metadata_Plate=2" / "part-0.parquet").exists()
    assert set(json.loads((out / "manifest.json").read_text())["blocks"]) == {"block01", "block02"}
    only2 = run_embedding(small_screen, camae4, out, blocks=[2], **FAST)
    assert only2.plates_skipped == 2 and set(json.loads((out / "manifest.json").read_text())["blocks"]) == {"block01", "block02"}
    with pytest.raises(ValueError, match="other settings.*pool"):
        run_embedding(small_screen, camae4, out, blocks=[1], pool="cls", **FAST)
    redo = run_embedding(small_screen, camae4, out, blocks=[1], pool="cls", overwrite=True, **FAST)
    assert redo.plates_done == 2 and not (out / "block02").exists()


def test_anndata_export(tmp_path, small_screen, camae4):
    import anndata as ad

    out = tmp_path / "out"
    run_embedding(small_screen, camae4, out, blocks=[1], anndata=True, **FAST)
    adata = ad.read_h5ad(out / "anndata" / "block01.h5ad")
    df, f = _features(out / "block01")
    np.testing.assert_array_equal(adata.X, f)
    assert list(adata.obs[PERTURBATION]) == list(df[PERTURBATION])
