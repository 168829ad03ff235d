from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from cellmae.data.schema import EXPERIMENT, IS_CONTROL
from cellmae.map.align import (
    DEFAULT_ALIGN,
    align,
    center_scale,
    center_scale_on_controls,
    pca_center_scale,
    tvn,
)

from .screen import synthetic_wells


def reference_tvn(x: np.ndarray, batches: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    """EFAAR_benchmarking's tvn_on_controls(batch_col=...), transcribed."""
    e = StandardScaler().fit(x[ctrl]).transform(x.astype(np.float64))
    e = PCA().fit(e[ctrl]).transform(e)
    e = StandardScaler().fit(e[ctrl]).transform(e)
    for b in np.unique(batches):
        bi = batches == b
        cov = np.cov(e[bi & ctrl], rowvar=False, ddof=1) + 0.5 * np.eye(e.shape[1])
        e[bi] = e[bi] @ linalg.fractional_matrix_power(cov, -0.5)
    return e


def reference_centerscale_by_batch(x: np.ndarray, batches: np.ndarray) -> np.ndarray:
    """EFAAR_benchmarking's centerscale_by_batch, transcribed: StandardScaler per batch on all wells."""
    out = x.astype(np.float64).copy()
    for b in np.unique(batches):
        bi = batches == b
        out[bi] = StandardScaler().fit_transform(out[bi])
    return out


def batch_accuracy(x: np.ndarray, batches: np.ndarray) -> float:
    clf = LogisticRegression(max_iter=2000)
    return float(cross_val_score(clf, x, batches, cv=4).mean())


@pytest.fixture(scope="module")
def wells():
    meta, x = synthetic_wells(n_batches=3, n_genes=20, reps=2, n_controls=60, dim=8, seed=1)
    return x, meta[EXPERIMENT].to_numpy(), meta[IS_CONTROL].to_numpy()


def test_tvn_matches_reference(wells) -> None:
    x, b, c = wells
    got = tvn(x, b, c)
    want = reference_tvn(x, b, c)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())


def test_tvn_whitens_controls_per_batch(wells) -> None:
    x, b, c = wells
    y = tvn(x, b, c).astype(np.float64)
    covs = []
    for batch in np.unique(b):
        cov = np.cov(y[(b == batch) & c], rowvar=False)
        vals = np.linalg.eigvalsh(cov)
        # W C W with W = (C + I/2)^(-1/2): eigenvalues l / (l + 1/2), all in (0, 1)
        assert vals.min() > 0 and vals.max() < 1
        covs.append(cov)
    before = [np.cov(x[(b == batch) & c].astype(np.float64), rowvar=False) for batch in np.unique(b)]
    spread_before = np.linalg.norm(before[0] - before[1]) / np.linalg.norm(before[0])
    spread_after = np.linalg.norm(covs[0] - covs[1]) / np.linalg.norm(covs[0])
    assert spread_after < 0.5 * spread_before


def test_align_by_name_tvn_is_the_bare_reference(wells) -> None:
    x, b, c = wells
    want = reference_tvn(x, b, c)
    np.testing.assert_allclose(align(x, b, c, "tvn"), want, atol=2e-5 * np.abs(want).max())


def test_align_tvn_batch_centered_is_centerscale_then_reference_tvn(wells) -> None:
    x, b, c = wells
    want = reference_tvn(reference_centerscale_by_batch(x, b), b, c)
    got = align(x, b, c, "tvn-batch-centered")
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
    assert DEFAULT_ALIGN == "tvn-batch-centered"
    np.testing.assert_array_equal(align(x, b, c), got)  # the default


def test_bare_tvn_leaves_the_batch_mean_shift(wells) -> None:
    x, b, c = wells
    assert batch_accuracy(align(x, b, c, "tvn"), b) > 0.9
    assert batch_accuracy(align(x, b, c, "tvn-batch-centered"), b) < 0.6


@pytest.mark.parametrize("method", ["tvn-batch-centered", "pca_center_scale", "center_scale"])
def test_alignment_removes_planted_batch_effect(wells, method: str) -> None:
    x, b, c = wells
    assert batch_accuracy(x, b) > 0.95
    y = align(x, b, c, method)
    assert np.isfinite(y).all() and y.dtype == np.float32
    assert batch_accuracy(y, b) < 0.6  # chance is 1/3


def test_bare_tvn_keeps_biology_and_center_scale_stats(wells) -> None:
    x, b, c = wells
    y = center_scale(x, b)
    for batch in np.unique(b):
        np.testing.assert_allclose(y[b == batch].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(y[b == batch].std(axis=0), 1, atol=1e-4)
    z = center_scale_on_controls(x, b, c)
    for batch in np.unique(b):
        np.testing.assert_allclose(z[(b == batch) & c].mean(axis=0), 0, atol=1e-5)
    p = pca_center_scale(x, b, c, n_components=4)
    assert p.shape == (len(x), 4)


def test_alignment_errors_name_the_problem(wells) -> None:
    x, b, c = wells
    few = c.copy()
    few[(b == "EXP2") & c] = False
    few[np.flatnonzero(b == "EXP2")[-1]] = True
    with pytest.raises(ValueError, match="EXP2.*1 control"):
        tvn(x, b, few)
    with pytest.raises(ValueError, match="unknown alignment 'bogus'"):
        align(x, b, c, "bogus")
    with pytest.raises(ValueError, match="do not match"):
        tvn(x, b[:-1], c)


def test_tvn_with_fewer_controls_than_dimensions_stays_bounded() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 40)).astype(np.float32)
    b = np.repeat(["E0", "E1"], 30)
    c = np.zeros(60, bool)
    c[[0, 1, 2, 3, 4, 5, 30, 31, 32, 33, 34, 35]] = True  # 12 controls, 40 dimensions
    y = tvn(x, b, c)
    assert y.shape == (60, 11)  # rank of 12 centred controls
    assert np.isfinite(y).all() and np.abs(y).max() < 100
