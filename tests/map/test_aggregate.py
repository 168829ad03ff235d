from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellmae.data.schema import CONCENTRATION, IS_CONTROL, PERTURBATION, PERTURBATION_TYPE
from cellmae.map.aggregate import NUM_WELLS, aggregate


@pytest.fixture()
def wells() -> tuple[np.ndarray, pd.DataFrame]:
    meta = pd.DataFrame(
        {
            PERTURBATION: ["B", "A", "B", "A", "B", "EMPTY", "EMPTY", "CPD", "CPD", "CPD", "CPD"],
            PERTURBATION_TYPE: ["CRISPR"] * 5 + ["CONTROL"] * 2 + ["COMPOUND"] * 4,
            CONCENTRATION: [np.nan] * 7 + [0.1, 1.0, 0.1, 1.0],
            IS_CONTROL: [False] * 5 + [True] * 2 + [False] * 4,
        }
    )
    x = np.array(
        [[1, 10], [2, 20], [3, 30], [4, 40], [8, 80], [100, 100], [100, 100], [1, 1], [5, 5], [3, 3], [7, 7]],
        dtype=np.float32,
    )
    return x, meta


def test_mean_per_perturbation_and_dose_controls_excluded(wells) -> None:
    x, meta = wells
    groups, prof = aggregate(x, meta, "mean")
    assert groups[PERTURBATION].tolist() == ["CPD", "CPD", "A", "B"]  # sorted by type, name, dose
    assert groups[CONCENTRATION].tolist()[:2] == [0.1, 1.0] and groups[CONCENTRATION].isna().tolist()[2:] == [True, True]
    assert groups[NUM_WELLS].tolist() == [2, 2, 2, 3]
    assert not groups[IS_CONTROL].any() and "EMPTY" not in set(groups[PERTURBATION])
    np.testing.assert_allclose(prof, [[2, 2], [6, 6], [3, 30], [4, 40]])
    assert prof.dtype == np.float32


def test_median(wells) -> None:
    x, meta = wells
    _, prof = aggregate(x, meta, "median")
    np.testing.assert_allclose(prof, [[2, 2], [6, 6], [3, 30], [3, 30]])


def test_matches_pandas_groupby_on_random_data() -> None:
    rng = np.random.default_rng(0)
    n = 500
    meta = pd.DataFrame(
        {
            PERTURBATION: rng.integers(0, 60, n).astype(str),
            PERTURBATION_TYPE: "CRISPR",
            IS_CONTROL: rng.random(n) < 0.1,
        }
    )
    x = rng.standard_normal((n, 5)).astype(np.float32)
    for method in ("mean", "median"):
        groups, prof = aggregate(x, meta, method)
        df = pd.DataFrame(x)
        df["p"] = meta[PERTURBATION]
        want = getattr(df[~meta[IS_CONTROL]].groupby("p"), method)()
        np.testing.assert_allclose(prof, want.loc[groups[PERTURBATION]].to_numpy(), atol=1e-5)


def test_errors(wells) -> None:
    x, meta = wells
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate(x, meta, "max")
    with pytest.raises(ValueError, match="no non-control wells"):
        aggregate(x, meta.assign(**{IS_CONTROL: True}))
    with pytest.raises(ValueError, match="lacks column"):
        aggregate(x, meta.drop(columns=[PERTURBATION_TYPE]))
