"""A fake run directory with the files every stage writes (docs/CONTRACTS.md sections 4-7).

Embeddings carry a known structure: genes of one group share a direction, each batch adds an
offset that alignment removes, so the report's figures have something real to show.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cellmae.data import schema
from cellmae.utils.manifest import write_manifest

GROUPS = {f"complex{g}": [f"G{g}{k}" for k in range(4)] for g in range(5)}
NULL_GENES = ["N1", "N2", "N3"]
DATABASES = ["CORUM", "HuMAP", "Reactome", "truth"]


def _truth(root: Path) -> pd.DataFrame:
    rows = [{"gene": g, "group": grp, "strength": 1.0, "has_phenotype": True} for grp, gs in GROUPS.items() for g in gs]
    rows += [{"gene": g, "group": "none", "strength": 0.0, "has_phenotype": False} for g in NULL_GENES]
    df = pd.DataFrame(rows)
    (root / "screen" / "truth").mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "screen" / "truth" / "genes.csv", index=False)
    return df


def _wells(rng: np.random.Generator, dim: int, signal: float, channels: list[str], root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    genes = [g for gs in GROUPS.values() for g in gs] + NULL_GENES
    directions = {grp: rng.normal(size=dim) for grp in GROUPS}
    meta, feats, aligned = [], [], []
    for b in range(2):
        offset = rng.normal(scale=3.0, size=dim)
        for p in range(2):
            wells = [(g, False) for g in genes] + [("EMPTY", True)] * 6
            for i, (gene, ctrl) in enumerate(wells):
                grp = next((k for k, v in GROUPS.items() if gene in v), None)
                base = signal * directions[grp] if grp else np.zeros(dim)
                noise = rng.normal(scale=0.5, size=dim)
                meta.append({schema.EXPERIMENT: f"exp{b}", schema.PLATE: f"{b}{p}", schema.WELL: f"B{i + 2:02d}",
                             schema.PERTURBATION: gene, schema.PERTURBATION_TYPE: "CONTROL" if ctrl else "CRISPR",
                             schema.IS_CONTROL: ctrl})
                feats.append(base + noise + offset)
                aligned.append(base + noise)
    meta_df = pd.DataFrame(meta)
    screen = root / "screen"
    screen.mkdir(parents=True, exist_ok=True)
    (screen / "channels.json").write_text(json.dumps({"channels": channels}))
    pd.DataFrame({"well_id": range(len(meta_df)), "experiment": meta_df[schema.EXPERIMENT], "plate": meta_df[schema.PLATE],
                  "well": meta_df[schema.WELL]}).to_csv(screen / "metadata.csv", index=False)
    return schema.embeddings_frame(meta_df, np.asarray(feats)), schema.embeddings_frame(meta_df, np.asarray(aligned))


def _method(root: Path, model: str, blocks: list[int], best: int, recall: float, rng: np.random.Generator,
            channels: list[str], *, probes: bool = True) -> None:
    for b in blocks:
        signal = 2.0 * recall * (1 - abs(b - best) / 8)
        raw, aligned = _wells(rng, 16, signal, channels, root)
        name = f"block{b:02d}"
        for plate, part in raw.groupby(schema.PLATE):
            d = root / "embed" / model / name / f"plate={plate}"
            d.mkdir(parents=True, exist_ok=True)
            part.drop(columns=[schema.PLATE]).to_parquet(d / "part-0.parquet", index=False)
        m = root / "map" / model / name
        m.mkdir(parents=True, exist_ok=True)
        aligned.to_parquet(m / "aligned.parquet", index=False)
        treat = aligned[~aligned[schema.IS_CONTROL]]
        agg = treat.groupby(schema.PERTURBATION, as_index=False)[schema.feature_columns(treat)].mean()
        agg.insert(1, schema.PERTURBATION_TYPE, "CRISPR")
        agg.to_parquet(m / "aggregated.parquet", index=False)
        write_manifest(m, "map")  # as `cellmae map` commits it
        bd = root / "bench" / model / name
        bd.mkdir(parents=True, exist_ok=True)
        r = [recall * (1 - abs(b - best) / 8) * f for f in (1.0, 0.8, 0.6, 1.2)]
        # The layout of cellmae.bench.recall (EFAAR's compute_recall columns).
        pd.DataFrame({"null_distribution_size": 253, "query_distribution_size": [50, 40, 30, 24],
                      "recall_0.05_0.95": r, "recall_0.1_0.9": [min(1.0, 1.3 * v) for v in r],
                      "source": DATABASES}).to_csv(bd / "recall.csv", index=False)
        n = len(agg)
        cons = pd.DataFrame({"perturbation_key": agg[schema.PERTURBATION], schema.PERTURBATION: agg[schema.PERTURBATION],
                             "n_replicates": 4, "mean_cosine": rng.normal(recall, 0.1, n), "null_set_size": 4,
                             "null_mean": rng.normal(0.0, 0.01, n), "null_std": 0.1, "p_value": rng.uniform(0, 0.2, n)})
        cons["significant"] = cons["p_value"] <= 0.05
        cons.to_csv(bd / "consistency.csv", index=False)
        (bd / "summary.json").write_text(json.dumps({
            "model": model, "block": b, "recall": dict(zip(DATABASES, r, strict=True)),
            "consistency": {"median_mean_cosine": float(cons["mean_cosine"].median()), "fraction_p_le_0.05": 0.7},
            "map_copairs": {"mean_mAP": recall / 2}, "n_perturbations": int(len(agg)),
        }))
        write_manifest(bd, "bench")
    if probes:  # the layout of cellmae.bench.probes
        f1 = {b: recall * (1 - abs(b - best) / 8) for b in blocks}
        pr = pd.DataFrame([{"block": b, "task": task, "accuracy": f1[b] + 0.05, "f1": f1[b], "chance": 1 / k,
                            "n_samples": 92, "n_classes": k} for b in blocks for task, k in (("perturbation", 23), ("group", 6))])
        pr.to_csv(root / "bench" / model / "probes.csv", index=False)
        (root / "bench" / model / "best_block.json").write_text(json.dumps(
            {"block": best, "metric": "mean_f1", "value": f1[best], "values": {str(b): f1[b] for b in blocks},
             "evaluation_recall": {str(b): recall * (1 - abs(b - 2) / 8) for b in blocks},
             "protocol": {"probe_screen": str(root / "proxy" / "map" / model)}}))


def write_fake_run(root: Path, *, transfer: bool = True) -> Path:
    """Write a run directory with every stage's output; returns ``root``."""
    rng = np.random.default_rng(0)
    _truth(root)
    rxrx = list(schema.RXRX_CHANNELS)
    train = root / "train" / "camae"
    (train / "recon").mkdir(parents=True)
    steps = np.arange(0, 200, 5)
    pd.DataFrame({"step": steps, "epoch": steps // 100, "loss": 1.0 / (1 + steps / 50) + rng.normal(0, 0.01, len(steps)),
                  "lr": np.minimum(1.0, steps / 20) * 1e-3, "crops_per_s": 40 + rng.normal(0, 2, len(steps))}).to_csv(
        train / "metrics.csv", index=False)
    for s in (0, 195):
        img = (rng.random((96, 192, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(train / "recon" / f"step_{s:06d}.png")
    (train / "config.json").write_text(json.dumps({"name": "camae_vit_tiny", "depth": 4}))
    _method(root, "camae", [1, 2, 3, 4], best=3, recall=0.6, rng=rng, channels=rxrx)
    _method(root, "random-init", [1, 2, 3, 4], best=1, recall=0.2, rng=rng, channels=rxrx)
    _method(root, "handcrafted", [0], best=0, recall=0.4, rng=rng, channels=rxrx, probes=False)
    (root / "demo.json").write_text(json.dumps({"preset": "tiny", "seconds": {"simulate": 1.5, "train": 30.0}}))
    if transfer:
        t = root / "transfer"
        _truth(t)
        cp = list(schema.CELLPAINTING_CHANNELS)
        _method(t, "camae", [3], best=3, recall=0.5, rng=rng, channels=cp, probes=False)
        _method(t, "random-init", [1], best=1, recall=0.15, rng=rng, channels=cp, probes=False)
    return root


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete fake run directory (shared by the report tests, never modified by them)."""
    return write_fake_run(tmp_path_factory.mktemp("run") / "RUN")
