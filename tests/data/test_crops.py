import numpy as np

from cellmae.data.crops import crop_record, field_crops
from cellmae.data.readers import open_screen


def test_field_crops_are_seeded_slices_with_their_metadata(make_rxrx) -> None:
    root, _ = make_rxrx(sites=1)
    screen = open_screen(root)
    fc = field_crops(screen, 4, crop_size=16, crops_per_field=2, seed=3)
    again = field_crops(screen, 4, crop_size=16, crops_per_field=2, seed=3)
    np.testing.assert_array_equal(fc.crops, again.crops)  # (seed, field index) decides the crops
    field = screen.read_field(4)
    for crop, (y, x) in zip(fc.crops, fc.positions, strict=True):
        np.testing.assert_array_equal(crop, field[:, y : y + 16, x : x + 16])
    record = crop_record(screen, fc, 1)
    assert record["image"].dtype == np.uint8 and (record["crop_y"], record["crop_x"]) == fc.positions[1]
    assert record["Metadata_Well"] == screen.metadata["Metadata_Well"].iloc[4]
    grid = field_crops(screen, 1, crop_size=16, crops_per_field=9, mode="grid")
    np.testing.assert_array_equal(grid.crops[1], screen.read_field(1)[:, 0:16, 16:32])
