"""RxRx3-core as published: Parquet shards of JPEG-2000 planes (``__key__``, ``jp2``) + its metadata CSV."""

from __future__ import annotations

import json
from pathlib import Path

import imagecodecs
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cellmae.cli import app
from cellmae.data import schema as S
from cellmae.data.readers import ReadError, detect_layout, open_screen

SIZE = 64
WELLS = [  # (experiment_name, plate, address, gene, treatment, perturbation_type)
    ("gene-001", "1", "AA02", "GENEA", None, "CRISPR"),
    ("gene-001", "1", "AA03", "EMPTY_control", None, "CRISPR"),
    ("compound-001", "2", "AB10", None, "Esomeprazole", "COMPOUND"),
    ("compound-001", "2", "AB11", None, "Esomeprazole", "COMPOUND"),
]
runner = CliRunner()


def _planes(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"{exp}/Plate{plate}/{well}_s{site}_{ch}": rng.integers(0, 256, (SIZE, SIZE)).astype(np.uint8)
            for exp, plate, well, *_ in WELLS for site in (1, 2) for ch in range(1, 7)}


def _metadata(path) -> None:
    rows = [{"well_id": f"{e}_{p}_{w}", "experiment_name": e, "plate": p, "address": w, "gene": g, "treatment": t,
             "SMILES": "CCO" if t else None, "concentration": 0.25 if t else None, "perturbation_type": pt,
             "cell_type": "HUVEC", "well_type_label": "treatment"} for e, p, w, g, t, pt in WELLS]
    pd.DataFrame(rows).to_csv(path, index=False)


def write_core(root, planes: dict[str, np.ndarray], *, shards: int = 2, struct: bool = True, row_group: int = 10):
    """The Hugging Face layout: data/train-0000k-of-0000n.parquet (keys sorted) + metadata_rxrx3_core.csv."""
    (root / "data").mkdir(parents=True)
    keys = sorted(planes)
    for k, part in enumerate(np.array_split(np.arange(len(keys)), shards)):
        ks = [keys[i] for i in part]
        blobs = [imagecodecs.jpeg2k_encode(planes[key], level=0) for key in ks]  # level 0: lossless
        col = (pa.array([{"bytes": b, "path": None} for b in blobs],
                        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])) if struct else pa.array(blobs))
        table = pa.table({"__key__": ks, "jp2": col})
        pq.write_table(table, root / "data" / f"train-{k:05d}-of-{shards:05d}.parquet", row_group_size=row_group)
    _metadata(root / "metadata_rxrx3_core.csv")
    return root


@pytest.fixture
def core(tmp_path):
    planes = _planes()
    return write_core(tmp_path / "rxrx3-core", planes), planes


def test_reads_parquet_jp2_shards_with_their_metadata(core):
    root, planes = core
    assert detect_layout(root) == "rxrx3-core"
    screen = open_screen(root)
    assert screen.layout == "rxrx3-core" and screen.channels == S.RXRX_CHANNELS and len(screen) == 8
    m = screen.metadata
    assert list(m[S.EXPERIMENT].unique()) == ["gene-001", "compound-001"]
    i = int(np.flatnonzero((m[S.WELL] == "AB10") & (m[S.SITE] == 2))[0])
    stack = screen.read_field(i)
    np.testing.assert_array_equal(stack[3], planes["compound-001/Plate2/AB10_s2_4"])  # lossless round trip
    row = m.iloc[i]
    assert row[S.PERTURBATION] == "Esomeprazole" and row[S.PERTURBATION_TYPE] == "COMPOUND"
    assert row[S.CONCENTRATION] == 0.25
    ctrl = m[m[S.WELL] == "AA03"]
    assert ctrl[S.IS_CONTROL].all() and not m.loc[m[S.WELL] == "AA02", S.IS_CONTROL].any()


def test_plain_binary_column_and_plain_jp2_files(tmp_path):
    planes = _planes(1)
    root = write_core(tmp_path / "bin", planes, shards=1, struct=False)
    np.testing.assert_array_equal(open_screen(root, layout="rxrx3-core").read_field(0)[0],
                                  planes["gene-001/Plate1/AA02_s1_1"])
    files = tmp_path / "files"
    for key, plane in planes.items():
        (files / key).parent.mkdir(parents=True, exist_ok=True)
        (files / f"{key}.jp2").write_bytes(imagecodecs.jpeg2k_encode(plane, level=0))
    _metadata(files / "metadata_rxrx3_core.csv")
    assert detect_layout(files) == "rxrx3-core"
    screen = open_screen(files)
    assert len(screen) == 8
    j = int(np.flatnonzero(screen.metadata[S.WELL] == "AA03")[0])
    np.testing.assert_array_equal(screen.read_field(j)[5], planes["gene-001/Plate1/AA03_s1_6"])


def test_errors_name_the_file_and_row(core, tmp_path):
    root, planes = core
    meta = pd.read_csv(root / "metadata_rxrx3_core.csv", dtype=str)
    extra = meta.iloc[[0]].assign(address="ZZ99")
    pd.concat([meta, extra]).to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(ReadError, match=r"meta.csv: row 5: no image for gene-001/Plate1/ZZ99"):
        open_screen(root, layout="rxrx3-core", metadata_csv=tmp_path / "meta.csv")
    meta.iloc[:3].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ReadError, match=r"images of compound-001/Plate2/AB11 .* have no row in .*short.csv"):
        open_screen(root, layout="rxrx3-core", metadata_csv=tmp_path / "short.csv")
    bad = tmp_path / "badkey"
    write_core(bad, {"gene-001/Plate1/AA02_s1_1": planes["gene-001/Plate1/AA02_s1_1"], "oops": planes["gene-001/Plate1/AA02_s1_1"]},
               shards=1)
    with pytest.raises(ReadError, match=r"train-00000-of-00001.parquet: row 2: key 'oops'"):
        open_screen(bad, layout="rxrx3-core")
    # a corrupt plane: the error names the shard, the key and the metadata row
    corrupt = tmp_path / "corrupt"
    broken = dict(planes)
    write_core(corrupt, broken, shards=1)
    shard = corrupt / "data" / "train-00000-of-00001.parquet"
    t = pq.read_table(shard).to_pydict()
    t["jp2"][0] = {"bytes": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"garbage", "path": None}
    pq.write_table(pa.table(t), shard)
    screen = open_screen(corrupt)
    first = t["__key__"][0]
    i = int(np.flatnonzero(screen.metadata[S.EXPERIMENT].eq(first.split("/")[0]))[0])
    with pytest.raises(ReadError, match=rf"\[{first}\]: cannot decode image .*row \d+ of .*metadata_rxrx3_core.csv"):
        screen.read_field(i)


def test_embed_rxrx3_core_shards(core, tmp_path):
    root, _ = core
    out = tmp_path / "embed" / "handcrafted"
    res = runner.invoke(app, ["embed", str(root), "--model", "handcrafted", "--out", str(out), "--num-workers", "1",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["wells"] == 4
    from cellmae.embed import read_embeddings

    wells = read_embeddings(out / "block00")
    assert len(wells) == 4 and set(wells[S.PERTURBATION_TYPE]) == {"CRISPR", "COMPOUND"}
    spec = json.loads((out / "embed_config.json").read_text())["screen_spec"]
    assert spec["layout"] == "rxrx3-core"


def test_rxrx3_core_over_http(core, tmp_path):
    """https:// (here http on localhost): one shard and the metadata CSV by URL, no listing needed."""
    import functools
    import http.server
    import threading

    root, planes = core

    class RangeHandler(http.server.SimpleHTTPRequestHandler):
        """Serves byte ranges, as https hosts (Hugging Face, S3 websites) do; Python's own handler does not."""

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            path = self.translate_path(self.path)
            if not rng or not Path(path).is_file():
                return super().do_GET()
            data = Path(path).read_bytes()
            start, _, end = rng.removeprefix("bytes=").partition("-")
            start, end = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            self.wfile.write(data[start:end + 1])

    handler = functools.partial(RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        meta = pd.read_csv(root / "metadata_rxrx3_core.csv", dtype=str)
        meta[meta["experiment_name"] == "compound-001"].to_csv(root / "compound.csv", index=False)
        screen = open_screen(f"{base}/data/train-00000-of-00002.parquet", metadata_csv=f"{base}/compound.csv")
        assert screen.layout == "rxrx3-core" and len(screen) == 4
        np.testing.assert_array_equal(screen.read_field(0)[0], planes["compound-001/Plate2/AB10_s1_1"])
        # in a DataLoader worker process too (an async file system made in the parent must not be reused)
        res = runner.invoke(app, ["embed", f"{base}/data/train-00000-of-00002.parquet", "--metadata-csv",
                                  f"{base}/compound.csv", "--model", "handcrafted", "--out", str(tmp_path / "e"),
                                  "--num-workers", "1", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["wells"] == 2
    finally:
        server.shutdown()


def test_rxrx_layout_with_jp2_planes(tmp_path):
    """RxRx's own layout ({well}_s{site}_w{k}) with JPEG-2000 files instead of PNG."""
    rng = np.random.default_rng(3)
    root = tmp_path / "rxrx-jp2"
    planes = {}
    for k in range(1, 4):
        planes[k] = rng.integers(0, 256, (32, 32)).astype(np.uint8)
        (root / "EXP" / "Plate1").mkdir(parents=True, exist_ok=True)
        (root / "EXP" / "Plate1" / f"B02_s1_w{k}.jp2").write_bytes(imagecodecs.jpeg2k_encode(planes[k], level=0))
    pd.DataFrame([{"well_id": "EXP_1_B02", "experiment": "EXP", "plate": 1, "well": "B02", "site": 1, "gene": "G",
                   "perturbation_type": "CRISPR", "well_type": "treatment"}]).to_csv(root / "metadata.csv", index=False)
    screen = open_screen(root)
    assert screen.layout == "rxrx" and screen.channels == S.RXRX_CHANNELS[:3]
    np.testing.assert_array_equal(screen.read_field(0), np.stack([planes[k] for k in (1, 2, 3)]))
