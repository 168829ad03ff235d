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
from cellmae.bench.inputs import perturbation_keys, profiles_from_frame
from cellmae.data import schema
from cellmae.embed.aggregate import wells_from_sites
from cellmae.embed.io import read_embeddings
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


def read_well_embeddings(path: str | Path) -> pd.DataFrame:
    """Well-level embedding table from a Parquet file or folder; site rows are averaged per well."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: embeddings not found")
    df = read_embeddings(path) if path.is_dir() else pd.read_parquet(path)
    missing = [c for c in (*schema.WELL_KEYS, schema.PERTURBATION) if c not in df.columns]
    if missing:
        raise schema.SchemaError(f"{path}: missing column(s) {missing} needed to curate wells")
    feats = schema.feature_columns(df)
    if not feats:
        raise schema.SchemaError(f"{path}: no feature_ columns")
    if df.duplicated(list(schema.WELL_KEYS)).any():  # site-level table: mean per well, as embed does
        meta, x = wells_from_sites(df[schema.metadata_columns(df)], df[feats].to_numpy(np.float32))
        df = schema.embeddings_frame(meta, x)
    return df


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
    df = embeddings if isinstance(embeddings, pd.DataFrame) else read_well_embeddings(embeddings)
    profiles = profiles_from_frame(df, source=str(embeddings) if not isinstance(embeddings, pd.DataFrame) else "<frame>")
    meta = profiles.meta
    table = replicate_consistency(profiles, n_null=n_null, seed=seed)
    table["q_value"] = false_discovery_control(table["p_value"].to_numpy(), method="bh") if len(table) else []
    table["kept"] = table["q_value"] <= alpha
    significant = set(table.loc[table["kept"], "perturbation_key"])

    keys = perturbation_keys(meta).to_numpy()
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
