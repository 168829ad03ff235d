"""Simulated screens shared by the simulator tests, and simple per-well image features."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from cellmae.data.simulate import simulate_screen


def site_image(root: Path, row, n_channels: int) -> np.ndarray:
    """(C, H, W) uint8 of one metadata row, read straight from the PNGs."""
    d = root / row["experiment"] / f"Plate{row['plate']}"
    return np.stack([np.asarray(Image.open(d / f"{row['well']}_s{row['site']}_w{k}.png")) for k in range(1, n_channels + 1)])


def site_features(img: np.ndarray) -> np.ndarray:
    """A few CellProfiler-like numbers: per-channel mean/std inside cells, cell coverage, nucleus count/area.

    Intensities are taken inside the cell mask so that cell count (Poisson noise on small fields)
    does not drive every feature.
    """
    x = img.astype(np.float32)
    smooth = ndimage.gaussian_filter(x, (0, 1.0, 1.0))
    total = smooth.sum(0)
    cells = total > np.percentile(total, 30) + 0.25 * (total.max() - np.percentile(total, 30))
    inside = x[:, cells] if cells.any() else x.reshape(len(x), -1)
    dna = smooth[0]
    nuclei = dna > (np.median(dna) + dna.max()) / 2.5
    _, n = ndimage.label(nuclei)
    return np.concatenate([inside.mean(1), inside.std(1), [cells.mean(), n, nuclei.sum() / max(n, 1)]])


def well_features(root: Path) -> pd.DataFrame:
    """metadata.csv (one row per well) joined with the mean site features of each well."""
    meta = pd.read_csv(root / "metadata.csv")
    n_ch = len(pd.read_json(root / "channels.json")["channels"])
    feats = np.stack([site_features(site_image(root, r, n_ch)) for r in meta.to_dict("records")])
    cols = [f"f{i}" for i in range(feats.shape[1])]
    df = pd.concat([meta, pd.DataFrame(feats, columns=cols)], axis=1)
    keys = ["well_id", "experiment", "plate", "well", "gene", "treatment", "concentration", "perturbation_type", "well_type"]
    return df.groupby(keys, dropna=False, sort=True)[cols].mean().reset_index()


def control_zscores(wells: pd.DataFrame) -> np.ndarray:
    """Features z-scored against the negative controls of the same plate (the simplest alignment)."""
    cols = [c for c in wells.columns if c.startswith("f")]
    out = np.zeros((len(wells), len(cols)))
    for _, idx in wells.groupby(["experiment", "plate"]).groups.items():
        g = wells.loc[idx]
        ctrl = g.loc[g["perturbation_type"] == "CONTROL", cols].to_numpy()
        mu, sd = ctrl.mean(0), ctrl.std(0) + 1e-6
        out[wells.index.get_indexer(idx)] = (g[cols].to_numpy() - mu) / sd
    return out


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """The feature helpers of this conftest, for tests (test modules cannot import conftest)."""
    return SimpleNamespace(site_image=site_image, site_features=site_features, well_features=well_features,
                           control_zscores=control_zscores)


@pytest.fixture(scope="session")
def tiny_screen(tmp_path_factory) -> Path:
    """The ``tiny`` preset, seed 0."""
    return simulate_screen(tmp_path_factory.mktemp("sim") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_wells(tiny_screen: Path) -> pd.DataFrame:
    return well_features(tiny_screen)
