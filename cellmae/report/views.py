"""Reshape saved stage outputs into what one figure draws (no new metrics are computed here).

Bench tables are read in the long or wide shapes the bench stage may write; 2-D projections
(PCA) and cosine-similarity matrices are drawn straight from the saved Parquet embeddings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from cellmae.data import schema
from cellmae.report.load import MethodResult, block_number

CONTROL_LABEL = "control"
_DB_COLS = ("database", "source", "db", "relationships", "benchmark")
_RECALL_COLS = ("recall", "value", "score")
_CONSISTENCY_COLS = ("mean_cosine", "consistency", "score", "value", "median_cosine", "cosine", "similarity")
_NULL_COLS = ("null", "null_recall", "expected", "random")


def _first(columns, candidates) -> str | None:
    lower = {str(c).lower(): c for c in columns}
    return next((lower[c] for c in candidates if c in lower), None)


def recall_long(method: MethodResult) -> pd.DataFrame:
    """Columns ``method, database, recall`` (+ ``null``) from one method's ``recall.csv``.

    Accepts the long shape (a database column and a recall column, one row per database, extra
    rows per threshold are reduced to the first) or the wide shape (one column per database).
    """
    df = method.recall
    if df is None or df.empty:
        return pd.DataFrame(columns=["method", "database", "recall"])
    db_col, rec_col = _first(df.columns, _DB_COLS), _first(df.columns, _RECALL_COLS)
    # bench writes EFAAR's layout: recall_<lo>_<hi> per threshold pair; the first is the strictest.
    rec_col = rec_col or next((c for c in df.columns if str(c).startswith("recall_")), None)
    if db_col is not None and rec_col is not None:
        out = df.drop_duplicates(db_col, keep="first")
        res = pd.DataFrame({"database": out[db_col].astype(str), "recall": pd.to_numeric(out[rec_col], errors="coerce")})
        null_col = _first(df.columns, _NULL_COLS)
        if null_col is not None:
            res["null"] = pd.to_numeric(out[null_col], errors="coerce").to_numpy()
    else:  # wide: the numeric columns are the databases
        num = df.select_dtypes("number").iloc[0]
        res = pd.DataFrame({"database": num.index.astype(str), "recall": num.to_numpy(dtype=float)})
    res.insert(0, "method", method.label)
    return res.reset_index(drop=True)


def consistency_values(method: MethodResult) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Per-perturbation replicate-consistency scores and null values.

    The null is either rows marked ``null`` in a kind column or, as bench writes it, the
    per-perturbation ``null_mean`` of random well sets of the same size.
    """
    df = method.consistency
    if df is None or df.empty:
        return np.zeros(0), None, ""
    if "mean_cosine" in df.columns and "null_mean" in df.columns:
        return (pd.to_numeric(df["mean_cosine"], errors="coerce").to_numpy(float),
                pd.to_numeric(df["null_mean"], errors="coerce").to_numpy(float), "mean_cosine")
    col = _first(df.columns, _CONSISTENCY_COLS)
    if col is None:
        nums = [c for c in df.select_dtypes("number").columns if not str(c).startswith("Metadata_")
                and str(c).lower() not in ("p_value", "pvalue", "n", "n_replicates", "q_value")]
        if not nums:
            return np.zeros(0), None, ""
        col = nums[0]
    kind = _first(df.columns, ("kind", "distribution", "type"))
    vals = pd.to_numeric(df[col], errors="coerce")
    if kind is not None and df[kind].astype(str).str.lower().eq("null").any():
        is_null = df[kind].astype(str).str.lower().eq("null")
        return vals[~is_null].to_numpy(float), vals[is_null].to_numpy(float), str(col)
    return vals.to_numpy(float), None, str(col)


EVALUATION_RECALL = "recall (evaluation)"


def probe_curve(method: MethodResult) -> tuple[pd.DataFrame, str, int | None] | None:
    """(table of block number and metric, metric name, chosen block number).

    From ``best_block.json``'s per-block ``values`` when present (the numbers the block was
    chosen on), else from a metric column of ``probes.csv``.
    """
    best = method.best_block or {}
    chosen_raw = best.get("block")
    chosen_n = chosen_raw if isinstance(chosen_raw, int) else (
        block_number(str(chosen_raw)) or (int(chosen_raw) if str(chosen_raw).isdigit() else None)) if chosen_raw is not None else None
    if isinstance(best.get("values"), dict) and best["values"]:
        metric = str(best.get("metric", "value"))
        items = [(pd.to_numeric(k, errors="coerce"), v) for k, v in best["values"].items()]
        table = pd.DataFrame(items, columns=["block", metric]).dropna().sort_values("block")
        table["block"] = table["block"].astype(int)
        recall = best.get("evaluation_recall")
        if isinstance(recall, dict) and recall:  # shown next to the probe, never used for the choice
            by_block = {int(k): float(v) for k, v in recall.items() if str(k).isdigit()}
            table[EVALUATION_RECALL] = table["block"].map(by_block)
        return table.reset_index(drop=True), metric, chosen_n
    df = method.probes
    if df is None or df.empty:
        return None
    bcol = _first(df.columns, ("block",))
    if bcol is None:
        return None
    blocks = df[bcol].map(lambda b: b if isinstance(b, int | np.integer) else block_number(str(b)) or pd.to_numeric(b, errors="coerce"))
    metric = best.get("metric")
    if metric not in df.columns:
        nums = [c for c in df.select_dtypes("number").columns if c != bcol]
        if not nums:
            return None
        metric = nums[0]
    table = pd.DataFrame({"block": pd.to_numeric(blocks, errors="coerce"), metric: pd.to_numeric(df[metric], errors="coerce")})
    table = table.dropna().groupby("block", as_index=False)[metric].mean()
    return table, str(metric), chosen_n


def probe_table(method: MethodResult) -> pd.DataFrame | None:
    """``probes.csv`` as blocks x (task score) columns, for the table under the probe curve."""
    df = method.probes
    if df is None or df.empty or "block" not in df.columns:
        return None
    if "task" in df.columns:
        scores = [c for c in ("balanced_accuracy", "f1", "accuracy", "chance") if c in df.columns]
        if scores:
            wide = df.pivot_table(index="block", columns="task", values=scores, sort=True)
            wide.columns = [f"{task} {score}" for score, task in wide.columns]
            return wide.reset_index()
    return df


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
