"""Linear probes per block (ViTally Consistent): which encoder block carries the most biology?

For each extracted block's aligned well embeddings, a standardised multinomial logistic
regression (scikit-learn) is cross-validated on proxy tasks:

* ``perturbation``: predict the perturbation of wells from held-out plates (folds grouped by
  ``fold_column``, ``Metadata_Plate`` by default, so replicates of one plate never sit on both
  sides; a class needs wells on at least two plates);
* ``group``: predict the functional group (complex) of wells of held-out *genes* (folds grouped
  by perturbation, so a gene is never in train and test).

The block must not be chosen on the labels the evaluation scores: ``exclude`` names perturbations
left out of every probe (``evaluation_perturbations`` collects those of the relationship tables
and functional groups of the evaluation), and the group task takes a groups table of its own.
Accuracy, balanced accuracy and macro-F1 come from the pooled out-of-fold predictions; the best
block (by ``mean_balanced_accuracy`` unless asked otherwise) goes to ``best_block.json``;
``cellmae embed --block auto`` reads it via :func:`read_best_block`.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae.bench.inputs import ALIGNED_FILE, read_profiles
from cellmae.data.profiles import Profiles, perturbation_key
from cellmae.data.schema import EXPERIMENT, IS_CONTROL, PERTURBATION, PLATE
from cellmae.layout import map_aligned_file
from cellmae.utils.atomic import atomic_path, write_text_atomic

TASKS = ("perturbation", "group")
SCORES = ("balanced_accuracy", "accuracy", "f1")
DEFAULT_METRIC = "mean_balanced_accuracy"
PROBE_COLUMNS = ["block", "task", "balanced_accuracy", "accuracy", "f1", "chance", "n_samples", "n_classes", "n_folds"]
PROBES_FILE = "probes.csv"
BEST_BLOCK_FILE = "best_block.json"
_BLOCK_RE = re.compile(r"^block(\d+)$")


def block_dirs(map_model_dir: str | Path) -> dict[int, Path]:
    """``{block number: dir}`` for the ``block{NN}`` subfolders that hold an aligned.parquet."""
    root = Path(map_model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    found = {}
    for d in sorted(root.iterdir()):
        m = _BLOCK_RE.match(d.name)
        if m and map_aligned_file(d) is not None:
            found[int(m.group(1))] = d
    if not found:
        raise FileNotFoundError(f"{root}: no block{{NN}}/{ALIGNED_FILE} subfolders (expected `cellmae map` outputs per block)")
    return found


def _classifier(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0, random_state=seed))


def _scores(x: np.ndarray, y: np.ndarray, cv, groups: np.ndarray | None, seed: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    from sklearn.model_selection import cross_val_predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Few replicates per class is the normal case for perturbation probes, not a regression target.
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        pred = cross_val_predict(_classifier(seed), x, y, cv=cv, groups=groups)
    counts = pd.Series(y).value_counts()
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, average="macro")),
        "chance": float(counts.max() / counts.sum()),
        "n_samples": int(len(y)),
        "n_classes": int(len(counts)),
        "n_folds": int(cv.get_n_splits()),
    }


def _cap_classes(labels: pd.Series, max_classes: int | None, rng: np.random.Generator) -> np.ndarray:
    classes = np.sort(labels.unique())
    if max_classes is not None and len(classes) > max_classes:
        classes = np.sort(rng.choice(classes, max_classes, replace=False))
    return labels.isin(classes).to_numpy()


def _probed(meta: pd.DataFrame, exclude: set[str] | frozenset[str] | None) -> np.ndarray:
    """Non-control wells whose perturbation is not in ``exclude``."""
    keep = ~meta[IS_CONTROL].to_numpy(bool)
    if exclude:
        keep &= ~meta[PERTURBATION].astype(str).isin(exclude).to_numpy()
    return keep


def perturbation_probe(profiles: Profiles, *, fold_column: str = PLATE, exclude: set[str] | None = None,
                       n_splits: int = 4, max_classes: int | None = 500, seed: int = 0) -> dict | None:
    """Perturbation-identity probe on wells of held-out plates (folds grouped by ``fold_column``; a plate is
    experiment + plate, since plate names repeat across experiments).

    Only classes with wells in at least two fold groups are used; None when fewer than 2 such classes.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    meta = profiles.meta
    if fold_column not in meta.columns:
        raise ValueError(f"probe folds: no {fold_column} column in the aligned table; choose another fold column")
    treat = _probed(meta, exclude)
    labels = perturbation_key(meta)[treat].reset_index(drop=True)
    folds = meta[fold_column].astype(str)
    if fold_column == PLATE and EXPERIMENT in meta.columns:  # plate names repeat across experiments (RxRx)
        folds = meta[EXPERIMENT].astype(str) + "/" + folds
    folds = folds.to_numpy()[treat]
    x = profiles.features[treat]
    spread = pd.DataFrame({"y": labels, "f": folds}).groupby("y")["f"].nunique()
    keep = labels.map(spread).to_numpy() >= 2
    keep &= _cap_classes(labels, max_classes, np.random.default_rng(seed))
    y = labels[keep].to_numpy()
    if len(np.unique(y)) < 2:
        return None
    k = int(min(n_splits, len(np.unique(folds[keep]))))
    return _scores(x[keep], y, StratifiedGroupKFold(k, shuffle=True, random_state=seed), folds[keep], seed)


def group_probe(profiles: Profiles, groups: pd.DataFrame, *, exclude: set[str] | None = None, n_splits: int = 4,
                max_classes: int | None = 500, seed: int = 0) -> dict | None:
    """Functional-group probe over wells of genes held out whole; None when < 2 usable groups.

    Genes in several groups are left out (a single-label probe cannot score them fairly); groups
    need >= 2 member genes in the map.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    meta = profiles.meta
    treat = _probed(meta, exclude)
    names = meta[PERTURBATION].astype(str)
    n_groups = groups.groupby("gene")["group"].nunique()
    single = groups[groups["gene"].isin(n_groups[n_groups == 1].index)].drop_duplicates("gene")
    gene_to_group = single.set_index("gene")["group"]
    label = names.map(gene_to_group)
    ok = treat & label.notna().to_numpy()
    genes_per_group = pd.DataFrame({"g": names[ok], "k": label[ok]}).drop_duplicates().groupby("k").size()
    usable = np.sort(genes_per_group[genes_per_group >= 2].index.to_numpy())
    if max_classes is not None and len(usable) > max_classes:
        usable = np.sort(np.random.default_rng(seed).choice(usable, max_classes, replace=False))
    ok &= label.isin(usable).to_numpy()
    y = label[ok].to_numpy()
    if len(np.unique(y)) < 2:
        return None
    k = int(min(n_splits, genes_per_group[usable].min()))
    return _scores(profiles.features[ok], y, StratifiedGroupKFold(k, shuffle=True, random_state=seed),
                   names[ok].to_numpy(), seed)


def probe_block(profiles: Profiles, groups: pd.DataFrame | None = None, *, fold_column: str = PLATE,
                exclude: set[str] | None = None, **kwargs) -> list[dict]:
    """Rows ``{task, balanced_accuracy, accuracy, f1, chance, ...}`` for the tasks that can run."""
    rows = []
    res = perturbation_probe(profiles, fold_column=fold_column, exclude=exclude, **kwargs)
    if res is not None:
        rows.append({"task": "perturbation", **res})
    if groups is not None:
        res = group_probe(profiles, groups, exclude=exclude, **kwargs)
        if res is not None:
            rows.append({"task": "group", **res})
    return rows


def evaluation_perturbations(relationships: dict[str, pd.DataFrame] | None = None,
                             groups: pd.DataFrame | None = None) -> set[str]:
    """Every perturbation the evaluation labels name: genes of the relationship tables (``load_relationships``)
    and of a functional-group table. Pass it as ``exclude`` so the block is not chosen on them."""
    names: set[str] = set()
    for df in (relationships or {}).values():
        names |= set(df["entity1"].astype(str)) | set(df["entity2"].astype(str))
    if groups is not None:
        names |= set(groups["gene"].astype(str))
    return names


def probe_blocks(map_model_dir: str | Path, groups: pd.DataFrame | None = None, *, exclude: set[str] | None = None,
                 fold_column: str = PLATE, progress: bool = False, **kwargs) -> pd.DataFrame:
    """Probe every ``block{NN}`` of a map folder; one row per (block, task)."""
    dirs = block_dirs(map_model_dir)
    rows = []
    if progress:
        from rich.progress import track

        items = track(list(dirs.items()), description="probing blocks")
    else:
        items = dirs.items()
    for block, d in items:
        for r in probe_block(read_profiles(map_aligned_file(d)), groups, fold_column=fold_column, exclude=exclude,
                             **kwargs):
            rows.append({"block": block, **r})
    table = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    if table.empty:
        held_out = f" outside the {len(exclude)} evaluation perturbations" if exclude else ""
        raise ValueError(f"{map_model_dir}: no probe could run (need >= 2 perturbations{held_out} with wells on "
                         f">= 2 different {fold_column} values, or a probe groups table)")
    return table


def best_block(table: pd.DataFrame, metric: str = DEFAULT_METRIC) -> dict:
    """The block maximising ``metric``: ``mean_<score>`` (over tasks) or ``<task>_<score>``, score one of
    balanced_accuracy, accuracy, f1.

    Ties go to the earlier block (cheaper to extract). Returns ``{"block", "metric", "value", "values"}``.
    """
    agg, _, score = metric.partition("_")
    if score not in SCORES or agg not in ("mean", *TASKS):
        raise ValueError(f"--probe-metric: must be <mean|{'|'.join(TASKS)}>_<{'|'.join(SCORES)}>, got {metric!r}")
    if score not in table.columns:
        raise ValueError(f"probe table has no {score!r} column (written by an older cellmae?); rerun the probes")
    t = table if agg == "mean" else table[table["task"] == agg]
    if t.empty:
        raise ValueError(f"no probe rows for metric {metric!r} (tasks present: {sorted(table['task'].unique())})")
    per_block = t.groupby("block")[score].mean().sort_index()
    block = int(per_block.idxmax())
    return {"block": block, "metric": metric, "value": float(per_block[block]),
            "values": {str(int(b)): float(v) for b, v in per_block.items()}}


def evaluation_recall_by_block(bench_model_dir: str | Path, key: str = "recall_0.05_0.95") -> dict[str, float]:
    """``{block number: mean recall over sources}`` from the per-block ``summary.json`` files of a bench
    folder: the evaluation shown next to the probe curve, never an input to the choice."""
    from cellmae.bench.summary import SUMMARY_FILE, read_summary

    out = {}
    for d in sorted(Path(bench_model_dir).glob("block*")):
        m = _BLOCK_RE.match(d.name)
        if not (m and (d / SUMMARY_FILE).is_file()):
            continue
        vals = [r.get(key) for r in (read_summary(d).get("recall") or {}).values()]
        vals = [float(v) for v in vals if v is not None]
        if vals:
            out[str(int(m.group(1)))] = float(np.mean(vals))
    return out


def write_probes(table: pd.DataFrame, out_dir: str | Path, metric: str = DEFAULT_METRIC, *,
                 protocol: dict | None = None, evaluation_recall: dict[str, float] | None = None) -> dict:
    """Write ``probes.csv`` and ``best_block.json`` atomically into ``out_dir``; return the best-block record.

    ``protocol`` (what the probes held out, the fold column) and ``evaluation_recall`` (per-block recall,
    recorded for comparison only) are stored in ``best_block.json`` next to the choice."""
    out_dir = Path(out_dir)
    best = best_block(table, metric)
    if protocol is not None:
        best["protocol"] = protocol
    if evaluation_recall:
        best["evaluation_recall"] = {str(k): float(v) for k, v in evaluation_recall.items()}
    with atomic_path(out_dir / PROBES_FILE) as tmp:
        table.to_csv(tmp, index=False)
    write_text_atomic(out_dir / BEST_BLOCK_FILE, json.dumps(best, indent=2) + "\n")
    return best


def read_best_block(path: str | Path) -> int:
    """The block number recorded in ``best_block.json`` (or in the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_BLOCK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `cellmae bench` on a map folder with block subfolders first)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    block = record.get("block") if isinstance(record, dict) else None
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"{path}: 'block' must be a positive integer, got {block!r}")
    return block
