"""Tiny screens written by the tests, in every layout the readers support."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

RXRX_COLUMNS = [
    "well_id",
    "experiment",
    "plate",
    "well",
    "site",
    "gene",
    "treatment",
    "concentration",
    "perturbation_type",
    "well_type",
]


def write_png(path: Path, plane: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(plane).save(path)


def rxrx_fields(rows: pd.DataFrame, n_channels: int, size: int, seed: int, dtype=np.uint8) -> dict:
    rng = np.random.default_rng(seed)
    hi = 256 if dtype == np.uint8 else 4096
    return {
        (r.experiment, str(r.plate), r.well, int(r.site)): rng.integers(
            0, hi, (n_channels, size, size)
        ).astype(dtype)
        for r in rows.itertuples()
    }


@pytest.fixture
def make_rxrx(tmp_path: Path):
    """Write a simulator-style RxRx screen; returns (root, {(exp, plate, well, site): (C, H, W) array})."""

    def make(
        n_channels: int = 6,
        size: int = 48,
        sites: int = 2,
        channels_json: list[str] | None = None,
        dtype=np.uint8,
        root: Path | None = None,
    ):
        root = root or tmp_path / "rxrx"
        rows = []
        for exp in ("EXP-1", "EXP-2"):
            for well, gene, treat, conc, ptype, wtype in (
                ("B02", "EMPTY", None, None, "CONTROL", "negative_control"),
                ("B03", "TP53", None, None, "CRISPR", "treatment"),
                ("C04", "MTOR", "cmpd-7", 0.5, "COMPOUND", "treatment"),
            ):
                for s in range(1, sites + 1):
                    rows.append([f"{exp}_1_{well}", exp, 1, well, s, gene, treat, conc, ptype, wtype])
        meta = pd.DataFrame(rows, columns=RXRX_COLUMNS)
        root.mkdir(parents=True, exist_ok=True)
        meta.to_csv(root / "metadata.csv", index=False)
        if channels_json:
            (root / "channels.json").write_text(json.dumps({"channels": channels_json}))
        fields = rxrx_fields(meta, n_channels, size, seed=1, dtype=dtype)
        for (exp, plate, well, site), arr in fields.items():
            for k in range(n_channels):
                write_png(root / exp / f"Plate{plate}" / f"{well}_s{site}_w{k + 1}.png", arr[k])
        return root, fields

    return make


@pytest.fixture
def make_cellpainting(tmp_path: Path):
    """Write a JUMP-style load_data CSV + 16-bit TIFFs; returns (csv path, {(plate, well, site): (5, H, W) uint16})."""

    def make(size: int = 40, column_order=("Mito", "DNA", "AGP", "ER", "RNA")):
        root = tmp_path / "cp"
        rng = np.random.default_rng(2)
        rows, fields = [], {}
        for plate in ("P1", "P2"):
            for well in ("A01", "b02"):
                for site in (1, 2):
                    arr = rng.integers(100, 30000, (5, size, size)).astype(np.uint16)
                    fields[(plate, well.upper(), site)] = arr
                    row = {
                        "Metadata_Source": "source_4",
                        "Metadata_Batch": "batch1",
                        "Metadata_Plate": plate,
                        "Metadata_Well": well,
                        "Metadata_Site": site,
                    }
                    for ch in column_order:
                        k = ("DNA", "ER", "RNA", "AGP", "Mito").index(ch)
                        name = f"{plate}_{well}_s{site}_{ch}.tiff"
                        (root / "images" / plate).mkdir(parents=True, exist_ok=True)
                        tifffile.imwrite(root / "images" / plate / name, arr[k])
                        row[f"FileName_Orig{ch}"] = name
                        row[f"PathName_Orig{ch}"] = f"images/{plate}"
                    rows.append(row)
        csv = root / "load_data.csv"
        pd.DataFrame(rows).to_csv(csv, index=False)
        return csv, fields

    return make


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on localhost (moto's server mode): (endpoint_url, boto3 client).

    Buckets and objects are public-read unless a test says otherwise, as public screens are."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:  # a free port; the server binds it right after
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    yield endpoint, client
    server.stop()
