"""Reshape saved stage outputs into what one figure draws (no new metrics are computed here).

Bench tables are read by the column names their writers export (cellmae.bench.recall,
.consistency, .probes); 2-D projections (PCA) and cosine-similarity matrices are drawn straight
from the saved Parquet embeddings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from cellmae import layout
from cellmae.bench.consistency import MEAN_COSINE, NULL_MEAN
from cellmae.bench.probes import BLOCK, SCORES, TASK
from cellmae.bench.recall import SOURCE, recall_column, recall_value_columns
from cellmae.data import schema
from cellmae.report.load import MethodResult, ReportInputError

CONTROL_LABEL = "control"


def _require(method: MethodResult, file: str, df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        where = method.bench_dir / file if method.bench_dir is not None else file
        raise ReportInputError(f"{where}: no column(s) {missing} (not a table written by `cellmae bench`)")


def recall_long(method: MethodResult) -> pd.DataFrame:
    """Columns ``method, database, recall`` from one method's ``recall.csv``: per source (database),
    the first recall column, the strictest thresholds."""
    df = method.recall
    if df is None or df.empty:
        return pd.DataFrame(columns=["method", "database", "recall"])
    values = recall_value_columns(df.columns)
    _require(method, layout.BENCH_RECALL_FILE, df, [SOURCE, *(values[:1] or [recall_column(0.05, 0.95)])])
    out = df.drop_duplicates(SOURCE, keep="first")
    res = pd.DataFrame({"database": out[SOURCE].astype(str), "recall": pd.to_numeric(out[values[0]], errors="coerce")})
    res.insert(0, "method", method.label)
    return res.reset_index(drop=True)


def consistency_values(method: MethodResult) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Per-perturbation replicate-consistency scores and the per-perturbation ``null_mean`` of random
    well sets of the same size."""
    df = method.consistency
    if df is None or df.empty:
        return np.zeros(0), None, ""
    _require(method, layout.BENCH_CONSISTENCY_FILE, df, [MEAN_COSINE, NULL_MEAN])
    return (pd.to_numeric(df[MEAN_COSINE], errors="coerce").to_numpy(float),
            pd.to_numeric(df[NULL_MEAN], errors="coerce").to_numpy(float), MEAN_COSINE)


EVALUATION_RECALL = "recall (evaluation)"


def probe_curve(method: MethodResult) -> tuple[pd.DataFrame, str, int | None] | None:
    """(table of block number and metric, metric name, chosen block number), from ``best_block.json``:
    its per-block ``values`` are the numbers the block was chosen on."""
    best = method.best_block or {}
    chosen = best.get("block") if isinstance(best.get("block"), int) else None
    if not (isinstance(best.get("values"), dict) and best["values"]):
        return None
    metric = str(best.get("metric", "value"))
    items = [(pd.to_numeric(k, errors="coerce"), v) for k, v in best["values"].items()]
    table = pd.DataFrame(items, columns=["block", metric]).dropna().sort_values("block")
    table["block"] = table["block"].astype(int)
    recall = best.get("evaluation_recall")
    if isinstance(recall, dict) and recall:  # shown next to the probe, never used for the choice
        by_block = {int(k): float(v) for k, v in recall.items() if str(k).isdigit()}
        table[EVALUATION_RECALL] = table["block"].map(by_block)
    return table.reset_index(drop=True), metric, chosen


def probe_table(method: MethodResult) -> pd.DataFrame | None:
    """``probes.csv`` as blocks x (task score) columns, for the table under the probe curve."""
    df = method.probes
    if df is None or df.empty:
        return None
    _require(method, layout.BENCH_PROBES_FILE, df, [BLOCK, TASK])
    scores = [c for c in (*SCORES, "chance") if c in df.columns]
    wide = df.pivot_table(index=BLOCK, columns=TASK, values=scores, sort=True)
    wide.columns = [f"{task} {score}" for score, task in wide.columns]
    return wide.reset_index()


def group_labels(meta: pd.DataFrame, truth_genes: pd.DataFrame | None) -> np.ndarray:
    """Group (complex) of each row's perturbation from the simulator's truth, ``control`` for controls.

    Without a truth table, the perturbation type stands in (CRISPR / COMPOUND / control).
    """
    is_ctrl = meta[schema.IS_CONTROL].astype(bool).to_numpy() if schema.IS_CONTROL in meta else np.zeros(len(meta), bool)
    if truth_genes is not None and {"gene", "group"} <= set(truth_genes.columns):
        lookup = dict(zip(truth_genes["gene"].astype(str), truth_genes["group"].astype(str), strict=True))
        labels = meta[schema.PERTURBATION].astype(str).map(lambda g: lookup.get(g, "other")).to_numpy(object, copy=True)
    elif schema.PERTURBATION_TYPE in meta:
        # copy=True: written below, and pandas' copy-on-write (default in pandas 3) hands out read-only views
        labels = meta[schema.PERTURBATION_TYPE].astype(str).to_numpy(object, copy=True)
    else:
        labels = np.full(len(meta), "well", dtype=object)
    if schema.PERTURBATION_TYPE in meta:  # compounds are not genes: name them as such, not "other"
        labels[meta[schema.PERTURBATION_TYPE].astype(str).str.upper().eq("COMPOUND").to_numpy()] = "compound"
    labels[is_ctrl] = CONTROL_LABEL
    return labels


def pca_2d(df: pd.DataFrame, *, max_rows: int = 4000, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """2-D PCA coordinates of an embedding table (subsampled to ``max_rows``) and the kept rows."""
    if len(df) > max_rows:
        df = df.sample(max_rows, random_state=seed)
    x = df[schema.feature_columns(df)].to_numpy(np.float64)
    x = np.nan_to_num(x)
    n_comp = min(2, x.shape[0], x.shape[1])
    xy = PCA(n_components=n_comp, random_state=seed).fit_transform(x - x.mean(0)) if n_comp > 0 else np.zeros((len(x), 0))
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy, df


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of ``x``."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms == 0, 1.0, norms)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def best_group_block(agg: pd.DataFrame, truth_genes: pd.DataFrame | None, *, n_groups: int = 6,
                     max_members: int = 10) -> tuple[np.ndarray, list[str], list[str]] | None:
    """Cosine matrix of the members of the groups whose members are most alike (best recalled).

    Groups come from the simulator's truth; they are ranked by the mean within-group cosine of
    their members' aggregated profiles, the quantity the relationship recall rewards.
    Returns (similarity, member names, group of each member) or None without groups.
    """
    if truth_genes is None or not {"gene", "group"} <= set(truth_genes.columns) or agg is None or agg.empty:
        return None
    if schema.IS_CONTROL in agg:
        agg = agg[~agg[schema.IS_CONTROL].astype(bool)]
    agg = agg.drop_duplicates(schema.PERTURBATION)
    lookup = dict(zip(truth_genes["gene"].astype(str), truth_genes["group"].astype(str), strict=True))
    genes = agg[schema.PERTURBATION].astype(str)
    grp = genes.map(lookup)
    keep = grp.notna().to_numpy(copy=True)  # updated in place below (copy-on-write gives read-only views)
    if "has_phenotype" in truth_genes.columns:  # genes without a phenotype form no complex in the truth
        active = set(truth_genes.loc[truth_genes["has_phenotype"].astype(bool), "gene"].astype(str))
        keep &= genes.isin(active).to_numpy()
    agg, genes, grp = agg[keep], genes[keep], grp[keep]
    if agg.empty:
        return None
    x = agg[schema.feature_columns(agg)].to_numpy(np.float64)
    sim = cosine_matrix(x)
    scores = {}
    for g in dict.fromkeys(grp):
        idx = np.flatnonzero((grp == g).to_numpy())
        if len(idx) >= 2:
            sub = sim[np.ix_(idx, idx)]
            scores[g] = float((sub.sum() - np.trace(sub)) / (len(idx) * (len(idx) - 1)))
    if not scores:
        return None
    top = sorted(scores, key=lambda g: -scores[g])[:n_groups]
    order = [i for g in top for i in np.flatnonzero((grp == g).to_numpy())[:max_members]]
    return sim[np.ix_(order, order)], genes.iloc[order].tolist(), grp.iloc[order].tolist()


def flatten_summary(summary: dict, prefix: str = "") -> dict[str, object]:
    """Nested ``summary.json`` -> flat ``{"a.b": value}`` keeping scalars only."""
    out: dict[str, object] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_summary(v, f"{key}."))
        elif isinstance(v, int | float | str | bool) or v is None:
            out[key] = v
    return out
