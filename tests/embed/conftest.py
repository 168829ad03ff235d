"""Small screens in the RxRx layout (CONTRACTS section 1), written by the tests themselves.

Fields hold Gaussian "nuclei" on a noisy background; wells of gene ``BIG`` have a planted
strong phenotype (larger, brighter nuclei and a brighter channel 2), the rest are controls or
neutral genes. Kept tiny: a few plates of a few wells, 2 sites, 128 x 128 pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellmae.data.schema import RXRX_CHANNELS


def _field(rng: np.random.Generator, n_channels: int, size: int, phenotype: bool) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    img = rng.normal(12, 3, size=(n_channels, size, size))
    radius = 7.0 if phenotype else 4.0
    for _ in range(10):
        cy, cx = rng.uniform(10, size - 10, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        img[0] += 200 * blob  # DNA
        for c in range(1, n_channels):
            img[c] += (60 + 20 * c) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (2.2 * radius) ** 2))
    if phenotype and n_channels > 2:
        img[2] *= 1.8
    return np.clip(img, 0, 255).astype(np.uint8)


def write_rxrx_screen(
    root: Path,
    channels: tuple[str, ...] = RXRX_CHANNELS,
    *,
    experiments: tuple[str, ...] = ("EXP1",),
    plates: int = 2,
    wells: int = 6,
    sites: int = 2,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a screen; each plate has controls, 'BIG' (phenotype) and neutral gene wells."""
    rng = np.random.default_rng(seed)
    rows = []
    genes = ["EMPTY", "BIG", "GENE1", "BIG", "EMPTY", "GENE2", "BIG", "GENE3"]
    for exp in experiments:
        for p in range(1, plates + 1):
            for w in range(wells):
                well = f"B{w + 2:02d}"
                gene = genes[w % len(genes)]
                control = gene == "EMPTY"
                for s in range(1, sites + 1):
                    rows.append({
                        "well_id": f"{exp}_{p}_{well}", "experiment": exp, "plate": p, "well": well, "site": s,
                        "gene": gene, "treatment": gene, "concentration": np.nan,
                        "perturbation_type": "CONTROL" if control else "CRISPR",
                        "well_type": "negative_control" if control else "treatment",
                    })
                    img = _field(rng, len(channels), size, gene == "BIG")
                    folder = root / exp / f"Plate{p}"
                    folder.mkdir(parents=True, exist_ok=True)
                    for k in range(len(channels)):
                        Image.fromarray(img[k]).save(folder / f"{well}_s{s}_w{k + 1}.png")
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    (root / "channels.json").write_text(json.dumps({"channels": list(channels)}))
    return root


@pytest.fixture(scope="session")
def rxrx_screen(tmp_path_factory) -> Path:
    """6-channel RxRx screen: 2 plates x 6 wells x 2 sites."""
    return write_rxrx_screen(tmp_path_factory.mktemp("screen6"))


@pytest.fixture(scope="session")
def small_screen(tmp_path_factory) -> Path:
    """6-channel RxRx screen of 64 x 64 fields (one tile each): 2 plates x 4 wells x 2 sites."""
    return write_rxrx_screen(tmp_path_factory.mktemp("small6"), wells=4, size=64, seed=1)


@pytest.fixture(scope="session")
def camae4():
    """A random-init channel-agnostic CA-MAE, 4 blocks deep (cheap on a loaded 2-core CPU)."""
    import torch

    from cellmae.models import create_model

    torch.manual_seed(0)
    return create_model("camae_vit_tiny_patch8_64", depth=4, decoder_depth=1).eval()
