"""Batch-effect diagnostics: how well can the batch be read off the embeddings?

A standardised logistic regression (scikit-learn) predicts the batch (``Metadata_Experiment`` by
default) from well embeddings with stratified cross-validation. Accuracy near chance (the largest
batch's share) means the batch is not recoverable; the balanced accuracy is also given because
batches differ in size. Compare the raw embeddings (before alignment) with ``aligned.parquet``.

Control wells are used when every batch has enough of them: they carry the same biology in every
batch, so anything that separates them is technical. Otherwise all wells are used (then a batch
with its own perturbations is partly predictable from biology - the ``wells`` column says which).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from cellmae.bench.inputs import Profiles, batch_labels
from cellmae.data.schema import EXPERIMENT, IS_CONTROL

WELLS = ("auto", "controls", "all")
BATCH_COLUMNS = ["stage", "batch_column", "wells", "n_wells", "n_batches", "accuracy", "balanced_accuracy", "chance"]


def batch_predictability(
    profiles: Profiles,
    *,
    stage: str,
    batch_column: str = EXPERIMENT,
    wells: str = "auto",
    n_splits: int = 5,
    max_wells: int | None = 20000,
    seed: int = 0,
) -> dict:
    """Cross-validated batch-prediction scores for one table of well embeddings.

    ``max_wells`` caps the wells used (a seeded stratified subsample) so the diagnostic stays
    cheap on large screens. With fewer than two batches nothing can be predicted: accuracy
    fields are NaN and ``n_batches`` says why.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if wells not in WELLS:
        raise ValueError(f"wells must be one of {WELLS}, got {wells!r}")
    y_all = batch_labels(profiles.meta, batch_column).to_numpy()
    control = profiles.meta[IS_CONTROL].to_numpy(bool)
    if wells == "auto":
        per_batch = pd.Series(y_all[control]).value_counts().reindex(np.unique(y_all), fill_value=0)
        wells = "controls" if control.any() and per_batch.min() >= n_splits else "all"
    mask = control if wells == "controls" else np.ones(len(y_all), bool)
    x, y = profiles.features[mask], y_all[mask]
    row = {"stage": stage, "batch_column": batch_column, "wells": wells, "n_wells": int(len(y)),
           "n_batches": int(len(np.unique(y)))}
    counts = pd.Series(y).value_counts()
    if len(counts) < 2 or counts.min() < 2:
        return {**row, "accuracy": np.nan, "balanced_accuracy": np.nan,
                "chance": float(counts.max() / counts.sum()) if len(counts) else np.nan}
    if max_wells is not None and len(y) > max_wells:
        keep, _ = train_test_split(np.arange(len(y)), train_size=max_wells, stratify=y, random_state=seed)
        x, y = x[keep], y[keep]
        counts = pd.Series(y).value_counts()
        row["n_wells"] = int(len(y))
    k = int(min(n_splits, counts.min()))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pred = cross_val_predict(clf, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return {**row, "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "chance": float(counts.max() / counts.sum())}


def batch_table(after: Profiles, before: Profiles | None = None, **kwargs) -> pd.DataFrame:
    """Rows for ``before`` (raw embeddings, when given) and ``after`` (aligned) alignment.

    Both use the same well selection so the two numbers are comparable.
    """
    rows = []
    if before is not None:
        first = batch_predictability(before, stage="before", **kwargs)
        kwargs = {**kwargs, "wells": first["wells"]}
        rows.append(first)
    rows.append(batch_predictability(after, stage="after", **kwargs))
    return pd.DataFrame(rows, columns=BATCH_COLUMNS)


def batch_summary(table: pd.DataFrame) -> dict:
    """``{stage: {accuracy, balanced_accuracy, chance, n_batches}}`` with None for what is absent."""
    out = {}
    for stage in ("before", "after"):
        t = table[table["stage"] == stage]
        if t.empty:
            out[stage] = None
            continue
        r = t.iloc[0]
        out[stage] = {k: (None if pd.isna(r[k]) else float(r[k])) for k in ("accuracy", "balanced_accuracy", "chance")}
        out[stage]["n_batches"] = int(r["n_batches"])
    return out
