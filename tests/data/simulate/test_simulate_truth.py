"""The ground truth is in the pixels: strong groups separate from controls, batches are measurable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier


def _loo_control_distance(wells: pd.DataFrame) -> np.ndarray:
    """Distance of each well from its plate's controls (z units); a control is left out of its own reference."""
    cols = [c for c in wells.columns if c.startswith("f")]
    out = np.zeros(len(wells))
    for _, idx in wells.groupby(["experiment", "plate"]).groups.items():
        g = wells.loc[idx]
        x, ctrl = g[cols].to_numpy(), (g["perturbation_type"] == "CONTROL").to_numpy()
        for j, i in enumerate(wells.index.get_indexer(idx)):
            ref = ctrl.copy()
            ref[j] = False
            out[i] = np.linalg.norm((x[j] - x[ref].mean(0)) / (x[ref].std(0) + 1e-6))
    return out


def _strong_group(root: Path) -> tuple[str, list[str]]:
    genes = pd.read_csv(root / "truth" / "genes.csv")
    hits = genes[genes["has_phenotype"]]
    top = hits.groupby("group")["strength"].mean().idxmax()
    return top, hits.loc[hits["group"] == top, "gene"].tolist()


def test_strong_group_separates_from_controls(tiny_screen: Path, tiny_wells: pd.DataFrame) -> None:
    _, members = _strong_group(tiny_screen)
    assert len(members) >= 2
    dist = _loo_control_distance(tiny_wells)
    strong = tiny_wells["gene"].isin(members).to_numpy()
    ctrl = (tiny_wells["perturbation_type"] == "CONTROL").to_numpy()
    labels = np.r_[np.ones(strong.sum()), np.zeros(ctrl.sum())]
    assert roc_auc_score(labels, np.r_[dist[strong], dist[ctrl]]) >= 0.95
    assert dist[strong].min() > np.median(dist[ctrl])


def test_group_members_share_a_phenotype_direction(tiny_screen: Path, tiny_wells: pd.DataFrame, helpers) -> None:
    _, members = _strong_group(tiny_screen)
    z = helpers.control_zscores(tiny_wells)
    profiles = np.stack([z[(tiny_wells["gene"] == g).to_numpy()].mean(0) for g in members])
    unit = profiles / np.linalg.norm(profiles, axis=1, keepdims=True)
    cos = unit @ unit.T
    assert cos[np.triu_indices(len(members), 1)].min() > 0.5


def test_compound_effect_grows_with_dose(tiny_screen: Path, tiny_wells: pd.DataFrame) -> None:
    cpds = pd.read_csv(tiny_screen / "truth" / "compounds.csv")
    best = cpds.groupby("compound")["strength"].max().idxmax()
    dist = _loo_control_distance(tiny_wells)
    doses = sorted(cpds.loc[cpds["compound"] == best, "concentration"])
    per_dose = [dist[((tiny_wells["treatment"] == best) & np.isclose(tiny_wells["concentration"], d)).to_numpy()].mean()
                for d in doses]
    assert per_dose[-1] > per_dose[0]
    # truth strengths follow the Hill curve: monotone in dose
    s = cpds[cpds["compound"] == best].sort_values("concentration")["strength"].to_numpy()
    assert np.all(np.diff(s) > 0)


def test_batch_effects_measurable_before_alignment_and_removed_by_it(tiny_wells: pd.DataFrame, helpers) -> None:
    cols = [c for c in tiny_wells.columns if c.startswith("f")]
    raw = tiny_wells[cols].to_numpy()
    raw = (raw - raw.mean(0)) / raw.std(0)
    batch = tiny_wells["experiment"].to_numpy()
    knn = KNeighborsClassifier(n_neighbors=1)
    before = cross_val_score(knn, raw, batch, cv=4).mean()
    after = cross_val_score(knn, helpers.control_zscores(tiny_wells), batch, cv=4).mean()
    assert before >= 0.95  # unaligned wells cluster by experiment
    assert after <= 0.75  # per-plate control alignment removes most of it (chance is 0.5)


def test_without_batch_effects_wells_do_not_cluster_by_experiment(tmp_path: Path, helpers) -> None:
    """The batch signal above comes from the batch model: switched off, experiments look alike."""
    from cellmae.data.simulate import simulate_screen

    wells = helpers.well_features(simulate_screen(tmp_path / "nobatch", "tiny", seed=0, batch_strength=0.0))
    cols = [c for c in wells.columns if c.startswith("f")]
    raw = wells[cols].to_numpy()
    raw = (raw - raw.mean(0)) / raw.std(0)
    acc = cross_val_score(KNeighborsClassifier(n_neighbors=1), raw, wells["experiment"].to_numpy(), cv=4).mean()
    assert acc <= 0.75
