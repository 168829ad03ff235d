"""A JUMP-style gene screen served by a real S3 server on localhost: load_data_with_illum + JUMP tables."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data import schema as S
from cellmae.data.readers import ReadError, open_screen

BUCKET, PRIVATE = "jump-test", "jump-private"
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")
SIZE = 64
# plate -> [(well, JCP2022)]: a CRISPR plate and an ORF plate, each with a negative control
PLATES = {
    "CP1": [("A01", "JCP2022_800100"), ("A02", "JCP2022_800200"), ("A03", "JCP2022_800002")],
    "OR1": [("A01", "JCP2022_900100"), ("A02", "JCP2022_915131"), ("A03", "JCP2022_900200")],
}
runner = CliRunner()


def _csv(df: pd.DataFrame, gz: bool = False) -> bytes:
    data = df.to_csv(index=False).encode()
    return gzip.compress(data, mtime=0) if gz else data


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture(scope="module")
def jump_s3(s3_server):
    """Upload the screen; returns (endpoint, {url names}, {(plate, well, channel): raw plane}, {(plate, ch): illum})."""
    endpoint, s3 = s3_server
    s3.create_bucket(Bucket=BUCKET, ACL="public-read")

    s3.create_bucket(Bucket=PRIVATE)

    def put(key: str, body: bytes, public: bool = True) -> str:
        bucket = BUCKET if public else PRIVATE
        s3.put_object(Bucket=bucket, Key=key, Body=body, **({"ACL": "public-read"} if public else {}))
        return f"s3://{bucket}/{key}"

    rng = np.random.default_rng(0)
    rows, planes, illums = [], {}, {}
    for plate, wells in PLATES.items():
        for k, ch in enumerate(CHANNELS):
            yy = np.linspace(1.0, 2.0, SIZE, dtype=np.float32)[:, None]
            illums[plate, ch] = np.broadcast_to(yy * (1 + 0.1 * k), (SIZE, SIZE)).astype(np.float32).copy()
            put(f"illum/{plate}/{plate}_Illum{ch}.npy", _npy(illums[plate, ch]))
        for well, _ in wells:
            row = {"Metadata_Source": "source_x", "Metadata_Batch": "batch1", "Metadata_Plate": plate,
                   "Metadata_Well": well, "Metadata_Site": "1"}
            for k, ch in enumerate(CHANNELS):
                plane = rng.integers(100, 4000, (SIZE, SIZE)).astype(np.uint16)
                planes[plate, well, ch] = plane
                name = f"r01c{well[1:]}f01p01-ch{k + 1}sk1fk1fl1.tiff"
                put(f"images/{plate}/Images/{name}", _tiff(plane))
                row |= {f"FileName_Orig{ch}": name, f"PathName_Orig{ch}": f"s3://{BUCKET}/images/{plate}/Images/",
                        f"FileName_Illum{ch}": f"{plate}_Illum{ch}.npy", f"PathName_Illum{ch}": f"s3://{BUCKET}/illum/{plate}"}
            rows.append(row)
    urls = {"load_data": put("workspace/load_data_with_illum.csv", _csv(pd.DataFrame(rows)))}
    well = pd.DataFrame([{"Metadata_Source": "source_x", "Metadata_Plate": p, "Metadata_Well": w, "Metadata_JCP2022": j}
                         for p, wells in PLATES.items() for w, j in wells])
    urls["well"] = put("metadata/well.csv.gz", _csv(well, gz=True))
    urls["plate"] = put("metadata/plate.csv.gz", _csv(pd.DataFrame({
        "Metadata_Source": ["source_x"] * 2, "Metadata_Batch": ["batch1"] * 2, "Metadata_Plate": ["CP1", "OR1"],
        "Metadata_PlateType": ["CRISPR", "ORF"]}), gz=True))
    urls["crispr"] = put("metadata/crispr.csv.gz", _csv(pd.DataFrame({
        "Metadata_JCP2022": ["JCP2022_800100", "JCP2022_800200", "JCP2022_800002"],
        "Metadata_NCBI_Gene_ID": ["1", "2", ""], "Metadata_Symbol": ["GENEA", "GENEB", "non-targeting"]}), gz=True))
    urls["orf"] = put("metadata/orf.csv.gz", _csv(pd.DataFrame({
        "Metadata_JCP2022": ["JCP2022_900100", "JCP2022_915131", "JCP2022_900200"],
        "Metadata_broad_sample": ["ccsbBroad_1", "ccsbBroad_2", "ccsbBroad_3"],
        "Metadata_Symbol": ["GENEA", "LacZ", "GENEC"], "Metadata_pert_type": ["trt", "negcon", "trt"]}), gz=True))
    urls["control"] = put("metadata/perturbation_control.csv", _csv(pd.DataFrame({
        "Metadata_JCP2022": ["JCP2022_800002", "JCP2022_915131", "JCP2022_033924"],
        "Metadata_pert_type": ["negcon", "negcon", "negcon"], "Metadata_Name": ["non-targeting", "LacZ", "DMSO"],
        "Metadata_modality": ["crispr", "orf", "compound"]})))
    urls["private"] = put("private/load_data.csv", _csv(pd.DataFrame(rows)), public=False)
    return endpoint, urls, planes, illums


def _tables(urls: dict) -> list[str]:
    return [urls[k] for k in ("well", "plate", "crispr", "orf", "control")]


def test_jump_tables_type_genes_and_controls_as_published(jump_s3):
    endpoint, urls, _, _ = jump_s3
    screen = open_screen(urls["load_data"], perturbation_csv=_tables(urls), storage_options={"endpoint_url": endpoint})
    assert screen.layout == "cellpainting" and screen.channels == CHANNELS and len(screen) == 6
    m = screen.metadata.set_index([S.PLATE, S.WELL])
    assert m.loc[("CP1", "A01"), S.PERTURBATION] == "GENEA" and m.loc[("CP1", "A01"), S.PERTURBATION_TYPE] == "CRISPR"
    assert m.loc[("OR1", "A01"), S.PERTURBATION] == "GENEA" and m.loc[("OR1", "A01"), S.PERTURBATION_TYPE] == "ORF"
    assert m.loc[("CP1", "A03"), S.PERTURBATION] == "non-targeting" and bool(m.loc[("CP1", "A03"), S.IS_CONTROL])
    assert m.loc[("OR1", "A02"), S.PERTURBATION] == "LacZ" and bool(m.loc[("OR1", "A02"), S.IS_CONTROL])
    assert int(m[S.IS_CONTROL].sum()) == 2
    assert m.loc[("CP1", "A02"), "Metadata_JCP2022"] == "JCP2022_800200"
    assert screen.summary()["perturbation_types"] == {"CRISPR": 3, "ORF": 3}


def test_illumination_functions_divide_each_plane(jump_s3):
    endpoint, urls, planes, illums = jump_s3
    screen = open_screen(urls["load_data"], storage_options={"endpoint_url": endpoint})
    assert screen.illum and screen.spec.illum is True
    i = int(np.flatnonzero((screen.metadata[S.PLATE] == "OR1") & (screen.metadata[S.WELL] == "A02"))[0])
    raw = screen.read_raw(i)
    for k, ch in enumerate(CHANNELS):
        expected = planes["OR1", "A02", ch].astype(np.float32) / illums["OR1", ch]
        np.testing.assert_array_equal(raw[k], expected)
    plain = open_screen(urls["load_data"], storage_options={"endpoint_url": endpoint}, illum=False)
    np.testing.assert_array_equal(plain.read_raw(i)[0], planes["OR1", "A02", "DNA"])
    assert screen.read_field(i).dtype == np.uint8


def test_embed_jump_gene_screen_from_s3_with_no_hand_conversion(jump_s3, tmp_path):
    endpoint, urls, _, _ = jump_s3
    out, cache = tmp_path / "embed" / "handcrafted", tmp_path / "cache"
    args = ["embed", urls["load_data"], "--model", "handcrafted", "--out", str(out), "--num-workers", "2",
            "--storage-option", f"endpoint_url={endpoint}", "--cache-dir", str(cache)]
    for t in _tables(urls):
        args += ["--perturbation-csv", t]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    from cellmae.embed import read_embeddings

    wells = read_embeddings(out / "block00")
    assert len(wells) == 6 and set(wells[S.PERTURBATION_TYPE]) == {"CRISPR", "ORF"}
    assert set(wells.loc[wells[S.IS_CONTROL], S.PERTURBATION]) == {"non-targeting", "LacZ"}
    spec = json.loads((out / "embed_config.json").read_text())["screen_spec"]
    assert spec["layout"] == "cellpainting" and spec["illum"] is True
    assert spec["storage_options"] == {"endpoint_url": endpoint} and spec["perturbation_csv"] == _tables(urls)
    assert any(cache.iterdir())  # remote images were kept in the local cache
    # ... and on through map and bench with the README's commands: the JUMP types reach the benchmark
    # (one gene is both knocked out and overexpressed here, so bench scores one modality at a time)
    genes = sorted(set(wells.loc[~wells[S.IS_CONTROL], S.PERTURBATION]))
    rels = tmp_path / "rels.csv"
    rels.write_text("entity1,entity2\n" + "".join(f"{a},{b}\n" for a, b in zip(genes, genes[1:], strict=False)))
    res = runner.invoke(app, ["map", str(out / "block00"), "--out", str(tmp_path / "map"), "--align", "none"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["bench", str(tmp_path / "map"), "--out", str(tmp_path / "bench"), "-r", str(rels)])
    if res.exit_code != 0:  # the one-line refusal says how to choose the modality
        assert res.exit_code == 2 and "--gene-types" in res.stderr, res.output
        res = runner.invoke(app, ["bench", str(tmp_path / "map"), "--out", str(tmp_path / "bench"), "-r", str(rels),
                                  "--gene-types", "CRISPR"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert summary["n_perturbations"] >= 2


def test_credentials_are_used_but_never_recorded(jump_s3, tmp_path):
    endpoint, urls, _, _ = jump_s3
    with pytest.raises(ReadError, match="access denied|Forbidden|cannot read"):
        open_screen(urls["private"], storage_options={"endpoint_url": endpoint})
    secret = "s3cr3t-value"
    shards = tmp_path / "shards"
    res = runner.invoke(app, ["shards", "build", urls["private"], "--out", str(shards), "--crop-size", "32",
                              "--crops-per-field", "1", "--storage-option", f"endpoint_url={endpoint}",
                              "--storage-option", "key=testing", "--storage-option", f"secret={secret}"])
    assert res.exit_code == 0, res.output
    for f in shards.iterdir():
        if f.suffix == ".json":
            assert secret not in f.read_text()
    info = json.loads((shards / "cellmae_shards.json").read_text())
    assert info["screen_spec"]["storage_options_not_recorded"] == ["key", "secret"]


def test_missing_remote_image_names_the_url_and_row(jump_s3, s3_server):
    endpoint, urls, _, _ = jump_s3
    _, s3 = s3_server
    key = "images/CP1/Images/r01c02f01p01-ch3sk1fk1fl1.tiff"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=key)
    try:
        screen = open_screen(urls["load_data"], storage_options={"endpoint_url": endpoint})
        assert [(i, str(p)) for i, p in screen.missing_files()] == [(1, f"s3://{BUCKET}/{key}")]  # listed, not probed
        with pytest.raises(ReadError, match=rf"s3://{BUCKET}/{key}: file not found \(metadata row 2 of .*1 missing file"):
            screen.check_files()
        with pytest.raises(ReadError, match=rf"s3://{BUCKET}/{key}: file not found \(row 2 of s3://{BUCKET}/workspace"):
            screen.read_field(1)
    finally:
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ACL="public-read")


def test_jump_table_errors_name_file_and_row(jump_s3, tmp_path):
    endpoint, urls, _, _ = jump_s3
    bad = tmp_path / "well.csv"
    pd.DataFrame({"Metadata_Plate": ["CP1", "CP1"], "Metadata_Well": ["A01", "a01"],
                  "Metadata_JCP2022": ["x", "y"]}).to_csv(bad, index=False)
    with pytest.raises(ReadError, match=r"well.csv: row 2: duplicated"):
        open_screen(urls["load_data"], perturbation_csv=[str(bad)], storage_options={"endpoint_url": endpoint})
    short = tmp_path / "short.csv"
    pd.DataFrame({"Metadata_Plate": ["CP1"], "Metadata_Well": ["A01"], "Metadata_JCP2022": ["x"]}).to_csv(short, index=False)
    with pytest.raises(ReadError, match=r"short.csv: no row for plate 'CP1', well 'A02' \(row 2 of the load_data CSV"):
        open_screen(urls["load_data"], perturbation_csv=[str(short)], storage_options={"endpoint_url": endpoint})
