"""Training-set curation as in ViTally Consistent (Kenyon-Dean et al. 2025): a benchmark-level step.

A previous model's well embeddings score every perturbation's replicate consistency (mean pairwise
cosine of its replicate wells vs. random well sets, ``cellmae.bench.consistency``). Wells of
perturbations with a significant phenotype (Benjamini-Hochberg FDR <= alpha) are kept, plus
control wells capped at a share of the kept set; everything else (perturbations that look like
controls) is dropped. The kept list feeds ``data.keep_wells`` when shards are built from a screen
(read by :func:`cellmae.data.readers.subset.read_well_list`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.bench.consistency import replicate_consistency
from cellmae.data import schema
from cellmae.data.profiles import Profiles, perturbation_key
from cellmae.embed.aggregate import wells_from_sites
from cellmae.embed.io import read_embedding_profiles
from cellmae.layout import BENCH_CONSISTENCY_FILE as CONSISTENCY_FILE
from cellmae.layout import CURATION_KEPT_FILE as KEPT_FILE
from cellmae.layout import CURATION_REPORT_FILE as REPORT_FILE
from cellmae.utils.atomic import atomic_path, write_text_atomic


@dataclass
class CurationResult:
    kept_wells: pd.DataFrame
    consistency: pd.DataFrame
    report: dict
    out_dir: Path

    def summary_text(self) -> str:
        r = self.report
        return (f"kept {r['wells_kept']} of {r['wells_total']} wells: {r['treatment_wells_kept']} wells of "
                f"{r['perturbations_significant']}/{r['perturbations_scored']} significant perturbations "
                f"(FDR <= {r['alpha']}) + {r['control_wells_kept']} of {r['control_wells_total']} control wells "
                f"(share cap {r['control_share']}); wrote {self.out_dir / KEPT_FILE}")


def read_well_embeddings(path: str | Path) -> Profiles:
    """Well profiles from an embed block folder or any profile table (Parquet, CSV, h5ad, zarr);
    site rows are averaged per well."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: embeddings not found")
    prof = read_embedding_profiles(path)
    return _wells(prof, path)


def _wells(prof: Profiles, source: str | Path) -> Profiles:
    missing = [c for c in (*schema.WELL_KEYS, schema.PERTURBATION) if c not in prof.meta.columns]
    if missing:
        raise schema.SchemaError(f"{source}: missing column(s) {missing} needed to curate wells")
    if prof.meta.duplicated(list(schema.WELL_KEYS)).any():  # site-level table: mean per well, as embed does
        meta, x = wells_from_sites(prof.meta[schema.metadata_columns(prof.meta)], prof.features)
        return Profiles(meta, x, prof.feature_names, prof.provenance)
    return prof


def curate_wells(
    embeddings: str | Path | pd.DataFrame,
    out_dir: str | Path,
    *,
    alpha: float = 0.05,
    control_share: float = 0.1,
    n_null: int = 1000,
    seed: int = 0,
) -> CurationResult:
    """Score replicate consistency, keep significant perturbations' wells + capped controls, write the list.

    Writes ``kept_wells.csv`` (well keys, perturbation, type, control flag), ``consistency.csv`` (one row per
    perturbation: mean cosine, null, p and BH q values, kept) and ``curation_report.json``.
    """
    from scipy.stats import false_discovery_control

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 <= control_share < 1:
        raise ValueError(f"control_share must be in [0, 1), got {control_share}")
    if isinstance(embeddings, pd.DataFrame):
        profiles = Profiles.from_frame(embeddings, source="<frame>")
    else:
        profiles = read_well_embeddings(embeddings)
    meta = profiles.meta
    table = replicate_consistency(profiles, n_null=n_null, seed=seed)
    table["q_value"] = false_discovery_control(table["p_value"].to_numpy(), method="bh") if len(table) else []
    table["kept"] = table["q_value"] <= alpha
    significant = set(table.loc[table["kept"], "perturbation_key"])

    keys = perturbation_key(meta).to_numpy()
    control = meta[schema.IS_CONTROL].to_numpy(bool)
    keep_treat = ~control & np.isin(keys, list(significant))
    n_treat = int(keep_treat.sum())
    ctrl_idx = np.flatnonzero(control)
    # controls at most control_share of the kept set: c / (n_treat + c) <= share
    cap = int(np.floor(control_share * n_treat / (1 - control_share))) if n_treat else 0
    rng = np.random.default_rng(seed)
    ctrl_keep = rng.choice(ctrl_idx, size=min(cap, len(ctrl_idx)), replace=False) if cap and len(ctrl_idx) else []
    keep = keep_treat.copy()
    keep[np.asarray(ctrl_keep, dtype=int)] = True

    cols = [c for c in (*schema.WELL_KEYS, schema.PERTURBATION, schema.PERTURBATION_TYPE, schema.CONCENTRATION,
                        schema.IS_CONTROL) if c in meta.columns]
    kept = meta.loc[keep, cols].reset_index(drop=True)
    report = {
        "embeddings": str(embeddings) if not isinstance(embeddings, pd.DataFrame) else "<frame>",
        "alpha": alpha, "control_share": control_share, "n_null": n_null, "seed": seed,
        "wells_total": int(len(meta)), "wells_kept": int(keep.sum()),
        "treatment_wells_total": int((~control).sum()), "treatment_wells_kept": n_treat,
        "control_wells_total": int(control.sum()), "control_wells_kept": int(len(ctrl_keep)),
        "perturbations_scored": int(len(table)), "perturbations_significant": int(len(significant)),
        "perturbations_unscored": int(len(set(keys[~control]) - set(table["perturbation_key"]))),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in ((CONSISTENCY_FILE, table), (KEPT_FILE, kept)):
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False)
    write_text_atomic(out_dir / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    return CurationResult(kept, table, report, out_dir)
