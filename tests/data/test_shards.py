import json

import numpy as np
import pandas as pd
import pytest
from litdata.utilities.env import _DistributedEnv

from cellmae.data import schema as S
from cellmae.data.crops import field_crops
from cellmae.data.qc import QCConfig
from cellmae.data.readers import ReadError, open_screen
from cellmae.data.shards import build_shards, read_shard_info, shard_dataloader, shard_dataset
from cellmae.utils.errors import InputError


@pytest.fixture
def built(make_rxrx, tmp_path):
    root, _ = make_rxrx(sites=2, size=48)  # 12 fields
    screen = open_screen(root)
    report = build_shards(
        screen,
        tmp_path / "shards",
        crop_size=16,
        crops_per_field=3,
        seed=7,
        progress=False,
        chunk_bytes="20KB",
    )
    return screen, tmp_path / "shards", report


def _keys(batches) -> list[tuple[int, int, int]]:
    return [
        (int(f), int(y), int(x))
        for b in batches
        for f, y, x in zip(b["field_index"], b["crop_y"], b["crop_x"], strict=True)
    ]


def test_round_trip_is_exact_and_batches_follow_the_contract(built) -> None:
    screen, out, report = built
    assert report.crops_written == 36 and report.fields == 12
    info = read_shard_info(out)
    assert info["channels"] == list(S.RXRX_CHANNELS) and info["crops_written"] == 36
    assert (
        len(json.loads((out / "index.json").read_text())["chunks"]) > 1
    )  # several chunks: streaming is exercised
    expected = {}
    for i in range(len(screen)):
        fc = field_crops(screen, i, crop_size=16, crops_per_field=3, seed=7)
        for crop, (y, x) in zip(fc.crops, fc.positions, strict=True):
            expected[(i, y, x)] = crop
    seen = 0
    for b in shard_dataloader(out, batch_size=5, shuffle=True, seed=1):
        assert b["image"].dtype.is_floating_point is False and b["image"].shape[1:] == (6, 16, 16)
        assert b["channels"] == list(S.RXRX_CHANNELS)
        for k, key in enumerate(_keys([b])):
            np.testing.assert_array_equal(b["image"][k].numpy(), expected[key])
            row = screen.metadata.iloc[key[0]]
            assert b[S.WELL][k] == row[S.WELL] and b[S.PERTURBATION][k] == row[S.PERTURBATION]
            assert bool(b[S.IS_CONTROL][k]) == row[S.IS_CONTROL]
            seen += 1
    assert seen == 36
    crops = pd.read_parquet(out / "crops.parquet")
    assert len(crops) == 36 and set(S.REQUIRED_COLUMNS) <= set(crops.columns)


def test_shuffle_is_deterministic_by_seed(built) -> None:
    _, out, _ = built
    a = _keys(shard_dataloader(out, batch_size=4, seed=3))
    b = _keys(shard_dataloader(out, batch_size=4, seed=3))
    c = _keys(shard_dataloader(out, batch_size=4, seed=4))
    plain = _keys(shard_dataloader(out, batch_size=4, shuffle=False))
    assert a == b and a != c and sorted(a) == sorted(c) == sorted(plain) and len(set(a)) == 36
    assert plain == sorted(plain, key=lambda k: k[0])  # unshuffled: field order


def test_ranks_get_disjoint_shares(built) -> None:
    _, out, _ = built
    shares = []
    for rank in (0, 1):
        ds = shard_dataset(out, shuffle=True, seed=0, drop_last=False)
        ds.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        shares.append({(int(s["field_index"]), s["crop_y"], s["crop_x"]) for s in ds})
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert len(shares[0] | shares[1]) == 36


def test_two_workers_cover_the_epoch_once_and_resume_mid_epoch(built) -> None:
    _, out, _ = built
    full = _keys(shard_dataloader(out, batch_size=3, num_workers=2, seed=5))
    assert sorted(full) == sorted(set(full)) and len(full) == 36
    loader = shard_dataloader(out, batch_size=3, num_workers=2, seed=5)
    first = []
    for j, b in enumerate(loader):
        first += _keys([b])
        if j == 4:
            state = loader.state_dict()
            break
    resumed = shard_dataloader(out, batch_size=3, num_workers=2, seed=5)
    resumed.load_state_dict(state)
    rest = _keys(resumed)
    assert first + rest == full


def test_grid_mode_qc_counts_and_overwrite_guard(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=1, size=48, n_channels=2, channels_json=["DNA", "Mito"])
    screen = open_screen(root)
    rep = build_shards(
        screen, tmp_path / "g", crop_size=16, crops_per_field=None, mode="grid", progress=False
    )
    assert rep.crops_written == 6 * 9
    with pytest.raises(InputError, match="already exists"):
        build_shards(screen, tmp_path / "g", crop_size=16, mode="grid", progress=False)
    # a focus bar no crop can pass: the build must fail without leaving a folder behind
    strict = QCConfig(min_focus=100.0)
    with pytest.raises(ValueError, match="no crops to write"):
        build_shards(screen, tmp_path / "q", crop_size=16, crops_per_field=2, qc=strict, progress=False)
    assert not (tmp_path / "q").exists()
    rep = build_shards(
        screen, tmp_path / "q2", crop_size=16, crops_per_field=2, qc=QCConfig(), progress=False, workers=2
    )
    assert rep.qc_candidates == 12 and rep.crops_written + rep.qc_empty + rep.qc_out_of_focus == 12
    assert read_shard_info(tmp_path / "q2")["qc"]["min_focus"] == QCConfig().min_focus


def test_interrupted_build_resumes_from_finished_parts(make_rxrx, tmp_path) -> None:
    root, _ = make_rxrx(sites=2, size=32, n_channels=2, channels_json=["DNA", "Mito"])
    screen = open_screen(root)
    bad = screen.path(9)[1]
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:40])
    opts = {"crop_size": 16, "crops_per_field": 2, "seed": 1, "progress": False, "part_fields": 4}
    with pytest.raises(ReadError, match=str(bad)):
        build_shards(screen, tmp_path / "out", **opts)
    partial = tmp_path / ".out.partial"
    assert not (tmp_path / "out").exists()
    assert sorted(p.parent.name for p in partial.glob("part-*/part.json")) == ["part-00000", "part-00001"]
    bad.write_bytes(good_bytes)
    reads = []
    original = screen.read_field
    screen.read_field = lambda i: reads.append(i) or original(i)
    rep = build_shards(screen, tmp_path / "out", **opts)
    assert reads == [8, 9, 10, 11] and rep.crops_written == 24 and not partial.exists()
    fresh = build_shards(open_screen(root), tmp_path / "fresh", **opts)
    assert fresh.crops_written == 24
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "out" / "crops.parquet"),
        pd.read_parquet(tmp_path / "fresh" / "crops.parquet"),
    )
    a = [b["image"] for b in shard_dataloader(tmp_path / "out", batch_size=8, shuffle=False)]
    b = [b["image"] for b in shard_dataloader(tmp_path / "fresh", batch_size=8, shuffle=False)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
