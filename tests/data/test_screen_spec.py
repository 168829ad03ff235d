"""One screen spec: recorded by `shards build` and `embed`, reused by `embed`, so both see the same pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data.readers import open_screen
from cellmae.data.readers.base import decode_image, read_plane
from cellmae.data.readers.storage import StorageError, parse_storage_options, public_options
from cellmae.data.spec import ScreenSpec, load_spec
from cellmae.utils.errors import InputError

runner = CliRunner()


def _embed(screen, out, *extra):
    res = runner.invoke(app, ["embed", str(screen), "--model", "handcrafted", "--out", str(out), "--num-workers", "0",
                              *extra])
    assert res.exit_code == 0, res.output
    from cellmae.embed import read_embeddings

    return read_embeddings(out / "block00"), json.loads((out / "embed_config.json").read_text())


def test_shards_record_the_spec_and_embed_reuses_it(make_cellpainting, tmp_path):
    csv, _ = make_cellpainting(size=48)
    shards = tmp_path / "shards"
    res = runner.invoke(app, ["shards", "build", str(csv), "--out", str(shards), "--crop-size", "32",
                              "--crops-per-field", "1", "--low-pct", "5", "--high-pct", "95", "--channels", "DNA,ER,RNA"])
    assert res.exit_code == 0, res.output
    spec = load_spec(shards)
    assert (spec.layout, spec.low_pct, spec.high_pct, spec.channels) == ("cellpainting", 5.0, 95.0, ["DNA", "ER", "RNA"])
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["settings"]["screen_spec"]["low_pct"] == 5.0

    reused, config = _embed(csv, tmp_path / "e1", "--screen-spec", str(shards))
    explicit, _ = _embed(csv, tmp_path / "e2", "--low-pct", "5", "--high-pct", "95", "--channels", "DNA,ER,RNA",
                         "--layout", "cellpainting")
    default, _ = _embed(csv, tmp_path / "e3", "--channels", "DNA,ER,RNA")
    assert config["screen_spec"]["low_pct"] == 5.0 and config["channels"] == ["DNA", "ER", "RNA"]
    feats = [c for c in reused.columns if c.startswith("feature_")]
    np.testing.assert_array_equal(reused[feats].to_numpy(), explicit[feats].to_numpy())
    assert not np.allclose(reused[feats].to_numpy(), default[feats].to_numpy())
    # an option given on the command line wins over the recorded one; the embed folder is a spec source too
    _, over = _embed(csv, tmp_path / "e4", "--screen-spec", str(shards), "--low-pct", "1")
    assert over["screen_spec"]["low_pct"] == 1.0 and over["screen_spec"]["high_pct"] == 95.0
    assert load_spec(tmp_path / "e4").low_pct == 1.0


def test_embed_takes_the_spec_from_the_models_training_run(make_cellpainting, tmp_path):
    from cellmae.models import create_model, save_pretrained

    csv, _ = make_cellpainting(size=64)
    shards = tmp_path / "shards"
    res = runner.invoke(app, ["shards", "build", str(csv.parent), "--out", str(shards), "--crop-size", "64",
                              "--crops-per-field", "1", "--low-pct", "2", "--high-pct", "98"])
    assert res.exit_code == 0, res.output
    model = tmp_path / "train" / "camae"
    save_pretrained(create_model("camae_vit_tiny_patch8_64", depth=1, decoder_depth=1), model,
                    extra={"train": {"shards": str(shards)}})
    out = tmp_path / "embed" / "camae"
    res = runner.invoke(app, ["embed", str(csv.parent), "--model", str(model), "--out", str(out), "--num-workers", "0",
                              "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assert "screen spec: the training run's" in res.stderr
    spec = json.loads((out / "embed_config.json").read_text())["screen_spec"]
    assert (spec["layout"], spec["low_pct"], spec["high_pct"]) == ("cellpainting", 2.0, 98.0)


def test_another_screen_takes_only_the_pixel_scaling(make_cellpainting, make_rxrx, tmp_path):
    from cellmae.embed.screens import open_embed_screen
    from cellmae.models import create_model, save_pretrained

    csv, _ = make_cellpainting(size=48)
    shards = tmp_path / "shards"
    res = runner.invoke(app, ["shards", "build", str(csv), "--out", str(shards), "--crop-size", "32",
                              "--crops-per-field", "1", "--low-pct", "3", "--no-illum"])
    assert res.exit_code == 0, res.output
    model = tmp_path / "model"
    save_pretrained(create_model("camae_vit_tiny_patch8_64", depth=1, decoder_depth=1), model,
                    extra={"train": {"shards": str(shards)}})
    other, _ = make_rxrx(sites=1)
    screen, note = open_embed_screen(str(other), model_source=str(model))
    assert screen.layout == "rxrx" and screen.spec.low_pct == 3.0 and "another screen" in note
    with pytest.raises(ValueError, match="load_data CSV not found"):  # --screen-spec applies it all, layout too
        open_embed_screen(str(other), screen_spec=str(model))


def test_spec_errors_and_storage_options(tmp_path):
    with pytest.raises(InputError, match="neither"):
        load_spec(tmp_path)
    (tmp_path / "s.json").write_text(json.dumps({"layout": "rxrx", "low_pc": 1}))
    with pytest.raises(InputError, match=r"s.json: unknown screen spec key\(s\) \['low_pc'\]"):
        load_spec(tmp_path / "s.json")
    assert parse_storage_options(["anon=false", "endpoint_url=http://h:9000", "retries=3"]) == {
        "anon": False, "endpoint_url": "http://h:9000", "retries": 3}
    with pytest.raises(StorageError, match="KEY=VALUE"):
        parse_storage_options(["endpoint_url"])
    assert public_options({"key": "k", "secret": "s", "token": "t", "region_name": "eu"}) == {"region_name": "eu"}
    record = ScreenSpec(storage_options={"secret": "s", "endpoint_url": "e"}).record()
    assert record["storage_options"] == {"endpoint_url": "e"} and "s" not in json.dumps(record["storage_options"])
    with pytest.raises(InputError, match="--pattern: only for layout"):
        ScreenSpec(pattern="{field}_{channel}.png").reader_options("rxrx")


def test_decoders_are_chosen_by_content_not_name(tmp_path):
    plane = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(plane).save(tmp_path / "x.png")
    (tmp_path / "mislabelled.tif").write_bytes((tmp_path / "x.png").read_bytes())
    np.testing.assert_array_equal(read_plane(tmp_path / "mislabelled.tif"), plane)
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle.npy: cannot decode image"):
        decode_image(buf.getvalue(), "pickle.npy")  # object arrays need unpickling: refused


def test_generic_and_rxrx_readers_take_urls(make_rxrx, s3_server):
    endpoint, s3 = s3_server
    root, fields = make_rxrx(sites=1, n_channels=3)
    s3.create_bucket(Bucket="rxrx-screen", ACL="public-read")
    for f in root.rglob("*"):
        if f.is_file():
            s3.put_object(Bucket="rxrx-screen", Key=str(f.relative_to(root)), Body=f.read_bytes(), ACL="public-read")
    screen = open_screen("s3://rxrx-screen", storage_options={"endpoint_url": endpoint})
    assert screen.layout == "rxrx" and len(screen) == len(fields)
    key = tuple(screen.metadata.iloc[0][["Metadata_Experiment", "Metadata_Plate", "Metadata_Well", "Metadata_Site"]])
    np.testing.assert_array_equal(screen.read_field(0), fields[(key[0], str(key[1]), key[2], int(key[3]))])


def test_storage_failures_are_one_line_naming_the_url():
    res = runner.invoke(app, ["shards", "inspect", "s3://bucket/load_data.csv", "--storage-option", "bogus_option=1"])
    assert res.exit_code == 2 and "--storage-option: s3://bucket/load_data.csv does not take it" in res.stderr
    res = runner.invoke(app, ["shards", "inspect", "s3://bucket/load_data.csv", "--storage-option",
                              "endpoint_url=http://127.0.0.1:1", "--storage-option",
                              'config_kwargs={"retries": {"max_attempts": 1}}'])
    assert res.exit_code == 2 and "s3://bucket/load_data.csv: cannot reach the storage" in res.stderr
    res = runner.invoke(app, ["shards", "inspect", "nosuchfs://bucket/x.csv"])
    assert res.exit_code == 2 and "nosuchfs://bucket/x.csv: cannot open this URL" in res.stderr
