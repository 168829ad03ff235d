"""Tiny synthetic screens with planted structure for the bench tests.

24 genes in 6 functional groups of 4: groups grp0-grp3 share a phenotype direction (plus a
gene-specific part), grp4 genes have phenotypes that share nothing, grp5 genes have none. 4 compounds hit G00, G04, G08, G12 at two
concentrations (profile = strength x target's effect + noise). Two batches with a strong additive
offset; controls in every batch. ``align`` removes the offset (control centring per batch), a
stand-in for ``cellmae map`` so the bench tests do not depend on the profiles package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellmae.data.schema import (
    CONCENTRATION,
    EXPERIMENT,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    PLATE,
    WELL,
    embeddings_frame,
    feature_columns,
)

DIM = 16
GENES = [f"G{i:02d}" for i in range(24)]
GROUP_OF = {g: f"grp{i // 4}" for i, g in enumerate(GENES)}
GROUPED_GENES = GENES[:16]
ACTIVE_GENES = GENES[:20]
INERT_GENES = GENES[20:]
COMPOUND_TARGETS = {"C0": "G00", "C1": "G04", "C2": "G08", "C3": "G12"}


def _well(i: int) -> str:
    return f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}"


def make_screen(seed: int = 0, *, signal: float = 1.0, batch_shift: float = 4.0, noise: float = 0.35,
                replicates_per_batch: int = 2, n_controls: int = 8) -> pd.DataFrame:
    """Well-level embedding table (schema columns + feature_ columns) with planted biology."""
    rng = np.random.default_rng(seed)
    group_dir = {f"grp{k}": rng.normal(size=DIM) for k in range(4)}
    effect = {g: np.zeros(DIM) for g in INERT_GENES}
    effect |= {g: rng.normal(size=DIM) * signal for g in ACTIVE_GENES}
    effect |= {g: (group_dir[GROUP_OF[g]] + 0.5 * rng.normal(size=DIM)) * signal for g in GROUPED_GENES}
    rows, feats = [], []
    for b, exp in enumerate(("exp1", "exp2")):
        shift = batch_shift * rng.normal(size=DIM)
        w = 0

        def add(pert, ptype, conc, ctrl, vec, exp=exp, shift=shift, b=b):
            nonlocal w
            rows.append({EXPERIMENT: exp, PLATE: f"P{b + 1}", WELL: _well(w), PERTURBATION: pert,
                         PERTURBATION_TYPE: ptype, CONCENTRATION: conc, IS_CONTROL: ctrl})
            feats.append(vec + shift + noise * rng.normal(size=DIM))
            w += 1

        for _ in range(n_controls):
            add("EMPTY", "CONTROL", np.nan, True, np.zeros(DIM))
        for g in GENES:
            for _ in range(replicates_per_batch):
                add(g, "CRISPR", np.nan, False, effect[g])
        for c, t in COMPOUND_TARGETS.items():
            for conc, strength in ((0.1, 0.5), (1.0, 1.0)):
                for _ in range(replicates_per_batch):
                    add(c, "COMPOUND", conc, False, -strength * effect[t] if c == "C1" else strength * effect[t])
    return embeddings_frame(pd.DataFrame(rows), np.asarray(feats))


def align(wells: pd.DataFrame) -> pd.DataFrame:
    """Subtract each batch's control mean (a minimal batch correction)."""
    out = wells.copy()
    feats = feature_columns(out)
    for _, idx in out.groupby(EXPERIMENT).groups.items():
        ctrl = out.loc[idx][out.loc[idx, IS_CONTROL]]
        out.loc[idx, feats] = out.loc[idx, feats] - ctrl[feats].mean()
    out[feats] = out[feats].astype(np.float32)
    return out


def aggregate(aligned: pd.DataFrame) -> pd.DataFrame:
    """Mean per perturbation (x concentration), controls excluded."""
    treat = aligned[~aligned[IS_CONTROL]].copy()
    treat["_conc"] = treat[CONCENTRATION].fillna(-1.0)
    keys = [PERTURBATION, PERTURBATION_TYPE, "_conc"]
    agg = treat.groupby(keys, sort=True)[feature_columns(treat)].mean().reset_index()
    agg[CONCENTRATION] = agg.pop("_conc").replace(-1.0, np.nan)
    agg[IS_CONTROL] = False
    return agg[[PERTURBATION, PERTURBATION_TYPE, CONCENTRATION, IS_CONTROL, *feature_columns(agg)]]


def write_map_dir(path: Path, wells: pd.DataFrame) -> Path:
    """A `cellmae map`-like folder: aligned.parquet + aggregated.parquet, and the manifest written last."""
    from cellmae.utils.manifest import write_manifest

    path.mkdir(parents=True, exist_ok=True)
    aligned = align(wells)
    aligned.to_parquet(path / "aligned.parquet", index=False)
    aggregate(aligned).to_parquet(path / "aggregated.parquet", index=False)
    write_manifest(path, "map")
    return path


def groups_table() -> pd.DataFrame:
    return pd.DataFrame({"gene": GENES, "group": [GROUP_OF[g] for g in GENES]})


def targets_table() -> pd.DataFrame:
    return pd.DataFrame({"compound": list(COMPOUND_TARGETS), "target_gene": list(COMPOUND_TARGETS.values())})


@pytest.fixture(scope="session")
def screen_wells() -> pd.DataFrame:
    return make_screen(0)


@pytest.fixture(scope="session")
def aligned_wells(screen_wells: pd.DataFrame) -> pd.DataFrame:
    return align(screen_wells)


@pytest.fixture(scope="session")
def synth():
    """The helpers of this module, for tests that build their own variants."""
    import sys

    return sys.modules[__name__]
