"""Screens cut from real ExampleFly fields: planted effects are in the pixels and truth/ matches them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from cellmae.data.simulate import simulate_screen
from cellmae.data.simulate.batch_effects import SHIFT_COLUMNS
from cellmae.data.simulate.biology import MORPHOLOGY_PARAMS, N_PARAMS
from cellmae.data.simulate.presets import resolve_spec
from cellmae.data.simulate.real_pixels import real_pixel_site


@pytest.fixture(scope="module")
def fly_screen(tmp_path_factory, example_fly_dir: Path) -> Path:
    return simulate_screen(tmp_path_factory.mktemp("fly") / "fly", "examplefly-tiny", seed=0,
                           base_images=str(example_fly_dir), workers=1)


def _neutral_batch(spec) -> pd.Series:
    """A batch without any effect (gain 1, offset 0, no vignetting, blur or morphology shift)."""
    from cellmae.data.simulate.batch_effects import CHANNEL_MIX

    row = {f"gain_{c}": 1.0 for c in CHANNEL_MIX} | {f"offset_{c}": 0.0 for c in CHANNEL_MIX}
    row |= {"vignette": 0.0, "vignette_cy": 0.0, "vignette_cx": 0.0, "blur_sigma": 0.0, "density": 1.0}
    return pd.Series(row | {c: 0.0 for c in SHIFT_COLUMNS})


def _sites(spec, effect: np.ndarray, n: int) -> np.ndarray:
    batch = _neutral_batch(spec)
    return np.stack([real_pixel_site(spec, np.random.default_rng(i), effect, 1.0, batch) for i in range(n)])


def test_planted_brightness_and_blur_are_in_the_pixels(example_fly_dir: Path) -> None:
    spec = resolve_spec("examplefly-tiny", base_images=str(example_fly_dir), field_size=96)
    none, up, coarse = np.zeros(N_PARAMS), np.zeros(N_PARAMS), np.zeros(N_PARAMS)
    up[MORPHOLOGY_PARAMS.index("dna_intensity")] = 3.0
    coarse[MORPHOLOGY_PARAMS.index("er_spread")] = 3.0  # sigma 2.4 px
    # the same random streams draw the same real crops, so the ratios isolate the planted effect
    base, bright, blurred = (_sites(spec, e, 8).astype(np.float64) for e in (none, up, coarse))
    ratio = bright[:, 0].mean() / base[:, 0].mean()
    assert ratio == pytest.approx(np.exp(0.17 * 3.0), rel=0.1)  # DNA gain exp(0.17 per unit), rounding aside
    assert bright[:, 1:].mean() == pytest.approx(base[:, 1:].mean(), rel=0.02)  # other channels untouched
    # texture at the scale of cell structures: gradients of the image smoothed past the camera noise
    grad = lambda x: np.abs(np.diff(ndimage.gaussian_filter(x, (0, 1.5, 1.5)), axis=-1)).mean()  # noqa: E731
    assert grad(blurred[:, 1]) < 0.85 * grad(base[:, 1])  # ER spread blurs the FITC channel only
    assert grad(blurred[:, 0]) == pytest.approx(grad(base[:, 0]), rel=0.05)


def test_sites_are_deterministic_and_cut_from_the_real_fields(example_fly_dir: Path) -> None:
    spec = resolve_spec("examplefly-tiny", base_images=str(example_fly_dir), field_size=96)
    a, b = (_sites(spec, np.zeros(N_PARAMS), 3) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert len({x.tobytes() for x in a}) == 3  # different streams, different places
    # real cells: the nuclear channel is dark background with bright nuclei (heavy upper tail)
    dna = a[:, 0].astype(np.float64)
    assert np.percentile(dna, 99) > 4 * np.median(dna)


def test_truth_matches_the_screen_and_groups_share_a_direction(fly_screen: Path, helpers) -> None:
    truth = fly_screen / "truth"
    genes, pairs = pd.read_csv(truth / "genes.csv"), pd.read_csv(truth / "relationships.csv")
    meta = pd.read_csv(fly_screen / "metadata.csv")
    assert set(meta.loc[meta["perturbation_type"] == "CRISPR", "gene"]) == set(genes["gene"])
    group = genes.set_index("gene")["group"]
    hit = genes.set_index("gene")["has_phenotype"]
    assert len(pairs) > 0 and (group[pairs["entity1"]].to_numpy() == group[pairs["entity2"]].to_numpy()).all()
    assert hit[pairs["entity1"]].all() and hit[pairs["entity2"]].all()
    assert (pairs["entity1"] < pairs["entity2"]).all()
    assert pd.read_json(fly_screen / "channels.json")["channels"].tolist() == ["DNA", "FITC", "Rhodamine"]

    # the strongest group's members moved away from controls in a shared direction of simple features
    wells = helpers.well_features(fly_screen)
    z = helpers.control_zscores(wells)
    hits = genes[genes["has_phenotype"]]
    top = hits.groupby("group")["strength"].mean().idxmax()
    members = hits.loc[hits["group"] == top, "gene"].tolist()
    prof = np.stack([z[(wells["gene"] == g).to_numpy()].mean(0) for g in members])
    ctrl = z[(wells["perturbation_type"] == "CONTROL").to_numpy()]
    assert np.linalg.norm(prof, axis=1).mean() > np.median(np.linalg.norm(ctrl, axis=1))
    unit = prof / np.linalg.norm(prof, axis=1, keepdims=True)
    assert (unit @ unit.T)[np.triu_indices(len(members), 1)].min() > 0.3


def test_real_pixel_preset_needs_its_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base_images"):
        simulate_screen(tmp_path / "y", "examplefly-demo")
    with pytest.raises(FileNotFoundError, match="base_images"):
        simulate_screen(tmp_path / "x", "examplefly-tiny", base_images=str(tmp_path / "missing"))
