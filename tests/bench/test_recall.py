from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellmae.bench import null_quantiles
from cellmae.bench.recall import known_relationship_recall
from cellmae.bench.relationships import load_relationships, normalize_pairs


def reference_recall(features: np.ndarray, labels: list[str], rels: dict, thresholds) -> pd.DataFrame:
    """EFAAR_benchmarking's compute_recall with the null of all distinct pairs, brute force."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = x @ x.T
    null = np.sort(sims[np.triu_indices(len(x), k=1)])
    index = {g: i for i, g in enumerate(labels)}
    rows = []
    for src, df in rels.items():
        pairs = normalize_pairs(df, index)
        q = sims[pairs.entity1.map(index).to_numpy(), pairs.entity2.map(index).to_numpy()]
        left = np.searchsorted(null, q, side="left") / len(null)
        right = np.searchsorted(null, q, side="right") / len(null)
        row = {"null_distribution_size": len(null), "query_distribution_size": len(q)}
        for pair in thresholds:
            lo, hi = np.min(pair), np.max(pair)
            row[f"recall_{lo}_{hi}"] = sum((right <= lo) | (left >= hi)) / len(q)
        row["source"] = src
        rows.append(row)
    return pd.DataFrame(rows)


def test_hand_computed_case() -> None:
    # A=(1,0) B=(0,1) C=(-1,0) D=(1,1): null = [-1, -.707, 0, 0, .707, .707] (6 pairs).
    feats = np.array([[1, 0], [0, 1], [-1, 0], [1, 1]], dtype=np.float32)
    known = pd.DataFrame({"entity1": ["A", "D", "B", "A", "A", "A"], "entity2": ["C", "B", "D", "A", "B", "Z"]})
    out = known_relationship_recall(feats, list("ABCD"), {"toy": known}, thresholds=[(0.34, 0.66), (0.8, 0.2)])
    assert list(out.columns) == [
        "null_distribution_size", "query_distribution_size", "recall_0.34_0.66", "recall_0.2_0.8", "source",
    ]
    row = out.iloc[0]
    assert row["null_distribution_size"] == 6
    assert row["query_distribution_size"] == 3  # AC, BD, AB (BD/DB once, AA self, AZ outside the map)
    # (0.34, 0.66): at most 2 null values <= q, or at least 4 below q -> AC (-1) and BD (.707); AB (0) not.
    assert row["recall_0.34_0.66"] == pytest.approx(2 / 3)
    # (0.2, 0.8): at most 1 null value <= q (only AC), or at least 5 below q (none).
    assert row["recall_0.2_0.8"] == pytest.approx(1 / 3)


def test_agrees_with_brute_force_reference_on_structured_data(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n, d = 1500, 24
    groups = rng.integers(0, 30, n)
    centers = rng.standard_normal((30, d))
    feats = (centers[groups] * 0.8 + rng.standard_normal((n, d))).astype(np.float32)
    labels = [f"G{i}" for i in range(n)]
    same = [(labels[i], labels[j]) for i in range(0, n, 7) for j in range(i + 1, min(n, i + 40)) if groups[i] == groups[j]]
    rand = rng.integers(0, n, (400, 2))
    rels = {
        "complexes": pd.DataFrame(same, columns=["entity1", "entity2"]),
        "random": pd.DataFrame({"entity1": [labels[i] for i in rand[:, 0]], "entity2": [labels[j] for j in rand[:, 1]]}),
    }
    thresholds = [(0.05, 0.95), (0.1, 0.9), (0.01, 0.99)]
    expected = reference_recall(feats.astype(np.float64), labels, rels, thresholds)
    monkeypatch.setattr(null_quantiles, "BRUTE_FORCE_MAX_PAIRS", 0)  # force the chunked exact path
    got = known_relationship_recall(feats, labels, rels, thresholds)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-12, rtol=0)
    assert got.loc[0, "recall_0.05_0.95"] > 0.5  # structure is recalled, random pairs are not
    assert got.loc[1, "recall_0.05_0.95"] < 0.2


def test_chunked_order_statistics_equal_sorting(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1200, 64))
    x[:300] += 3 * rng.standard_normal(64)  # a dense cluster: heavy upper tail
    unit = null_quantiles.unit_rows(x)
    full = null_quantiles.brute_force_null(unit)
    n = len(full)
    ranks = [0, 1, n // 20, n // 10, n // 2, n - n // 10, n - 2, n - 1]
    monkeypatch.setattr(null_quantiles, "BRUTE_FORCE_MAX_PAIRS", 0)
    got = null_quantiles.null_order_statistics(unit, ranks)
    np.testing.assert_allclose([got[k] for k in ranks], full[ranks], rtol=0, atol=1e-15)


def test_test_vector_random_seed0(shared_dir: Path, relationships_dir: Path) -> None:
    vector = shared_dir / "testvectors" / "recall_random_seed0"
    rels = load_relationships(relationships_dir, names=["CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB"])
    symbols = sorted({str(v) for df in rels.values() for v in (*df["entity1"], *df["entity2"])})
    assert len(symbols) == 13183
    symbols += [f"PADGENE{i:05d}" for i in range(17000 - len(symbols))]
    feats = np.random.default_rng(0).standard_normal((17000, 128), dtype=np.float32)
    got = known_relationship_recall(feats, symbols, rels, thresholds=((0.05, 0.95), (0.1, 0.9)))
    expected = pd.read_csv(vector / "expected.csv")
    assert list(got.columns) == list(expected.columns)
    assert got["source"].tolist() == expected["source"].tolist()
    assert got["null_distribution_size"].tolist() == expected["null_distribution_size"].tolist()
    assert got["query_distribution_size"].tolist() == expected["query_distribution_size"].tolist()
    for col in ("recall_0.05_0.95", "recall_0.1_0.9"):
        np.testing.assert_allclose(got[col], expected[col], rtol=0, atol=1e-6)


def test_recall_errors_and_empty_sources() -> None:
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((5, 4)).astype(np.float32)
    rels = {"r": pd.DataFrame({"entity1": ["A"], "entity2": ["B"]})}
    with pytest.raises(ValueError, match="duplicated perturbation label 'A'"):
        known_relationship_recall(feats[:2], ["A", "A"], rels)
    with pytest.raises(ValueError, match="row 1"):
        known_relationship_recall(np.array([[1.0, 0.0], [np.nan, 1.0]]), ["A", "B"], rels)
    empty = known_relationship_recall(feats[:3], ["X", "Y", "Z"], rels)
    assert empty.loc[0, "query_distribution_size"] == 0 and np.isnan(empty.loc[0, "recall_0.05_0.95"])
