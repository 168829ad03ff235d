import numpy as np
import pytest

from cellmae.bench.batch_effects import batch_predictability, batch_summary, batch_table
from cellmae.bench.inputs import profiles_from_frame


def test_batch_predictability_drops_after_alignment(screen_wells, aligned_wells):
    t = batch_table(profiles_from_frame(aligned_wells), profiles_from_frame(screen_wells), seed=0)
    assert list(t["stage"]) == ["before", "after"]
    assert (t["wells"] == "controls").all()  # 8 controls per batch: enough for 5 folds
    before, after = t.iloc[0], t.iloc[1]
    assert before["accuracy"] == pytest.approx(1.0)
    assert after["accuracy"] < 0.8
    assert before["chance"] == pytest.approx(0.5)
    s = batch_summary(t)
    assert s["before"]["n_batches"] == 2 and s["after"]["accuracy"] == pytest.approx(after["accuracy"])


def test_all_wells_and_single_batch(screen_wells):
    r = batch_predictability(profiles_from_frame(screen_wells), stage="before", wells="all", seed=0)
    assert r["wells"] == "all" and r["n_wells"] == len(screen_wells) and r["accuracy"] > 0.95
    one = screen_wells[screen_wells["Metadata_Experiment"] == "exp1"]
    r1 = batch_predictability(profiles_from_frame(one), stage="after")
    assert r1["n_batches"] == 1 and np.isnan(r1["accuracy"])
    assert batch_summary(batch_table(profiles_from_frame(one)))["after"]["accuracy"] is None
    with pytest.raises(ValueError, match="wells"):
        batch_predictability(profiles_from_frame(one), stage="x", wells="some")
