"""The real ExampleFly fields go reader -> crops -> LitData shards -> batches with every byte intact."""

import numpy as np
import tifffile

from cellmae.data.readers import open_screen
from cellmae.data.shards import build_shards, shard_dataloader
from cellmae.data.tiling import grid_tiles


def test_example_fly_round_trip_is_exact(example_fly_dir, tmp_path) -> None:
    screen = open_screen(
        example_fly_dir, pattern="{field}_{channel}.TIF", channels={"D": "DNA", "F": "FITC", "R": "Rhodamine"}
    )
    fields = [screen.read_field(i) for i in range(len(screen))]
    for i, f in enumerate(fields):  # the reader itself is exact on 8-bit files
        stem = screen.metadata["Metadata_Field"].iloc[i]
        np.testing.assert_array_equal(f[0], tifffile.imread(example_fly_dir / f"{stem}_D.TIF"))
    rep = build_shards(
        screen,
        tmp_path / "fly",
        crop_size=256,
        crops_per_field=None,
        mode="grid",
        progress=False,
        chunk_bytes="2MB",
    )
    assert rep.crops_written == 3 * 9
    expected = {(i, k): t for i, f in enumerate(fields) for k, t in enumerate(grid_tiles(f, 256))}
    got = {}
    for b in shard_dataloader(tmp_path / "fly", batch_size=4, shuffle=True, seed=0, num_workers=0):
        assert b["channels"] == ["DNA", "FITC", "Rhodamine"]
        for img, i, y, x in zip(b["image"].numpy(), b["field_index"], b["crop_y"], b["crop_x"], strict=True):
            k = [(yy, xx) for yy in (119, 375, 631) for xx in (116, 372, 628)].index((int(y), int(x)))
            got[(int(i), k)] = img
    assert got.keys() == expected.keys()
    for key, img in got.items():
        assert img.tobytes() == expected[key].tobytes()
