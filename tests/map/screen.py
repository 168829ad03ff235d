"""A tiny synthetic well table with planted biology and a planted batch effect."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellmae.data.schema import (
    CONCENTRATION,
    EXPERIMENT,
    IS_CONTROL,
    PERTURBATION,
    PERTURBATION_TYPE,
    PLATE,
    WELL,
    embeddings_frame,
)


def well_ids(n: int) -> list[str]:
    rows = "BCDEFGHIJKLMNO"
    return [f"{rows[i // 22]}{i % 22 + 2:02d}" for i in range(n)]


def synthetic_wells(
    *, n_batches: int = 3, n_genes: int = 12, reps: int = 2, n_controls: int = 12, dim: int = 8, seed: int = 0,
    batch_shift: float = 3.0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(metadata, float32 features): per batch one plate of genes, 2 compounds x 2 doses, controls.

    Batch b adds a shift (norm ``batch_shift`` per dim) and a per-feature scale to every well.
    """
    rng = np.random.default_rng(seed)
    gene_effect = rng.standard_normal((n_genes, dim)) * 1.5
    cpd_effect = rng.standard_normal((2, dim)) * 1.5
    metas, feats = [], []
    for b in range(n_batches):
        shift = rng.standard_normal(dim) * batch_shift
        scale = rng.uniform(0.5, 2.0, dim)
        rows = []
        for g in range(n_genes):
            rows += [(f"GENE{g}", "CRISPR", np.nan, False, gene_effect[g])] * reps
        for c in range(2):
            for dose in (0.1, 1.0):
                rows += [(f"CPD{c}", "COMPOUND", dose, False, cpd_effect[c] * dose)] * reps
        rows += [("EMPTY", "CONTROL", np.nan, True, np.zeros(dim))] * n_controls
        wells = well_ids(len(rows))
        for i, (pert, ptype, conc, ctrl, effect) in enumerate(rows):
            metas.append({EXPERIMENT: f"EXP{b}", PLATE: f"EXP{b}_P1", WELL: wells[i], PERTURBATION: pert,
                          PERTURBATION_TYPE: ptype, CONCENTRATION: conc, IS_CONTROL: ctrl})
            feats.append((effect + rng.standard_normal(dim) * 0.5) * scale + shift)
    return pd.DataFrame(metas), np.asarray(feats, dtype=np.float32)


def synthetic_table(**kw) -> pd.DataFrame:
    meta, feats = synthetic_wells(**kw)
    return embeddings_frame(meta, feats)
