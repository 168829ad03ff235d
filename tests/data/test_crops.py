import numpy as np
import torch

from cellmae.data.crops import CropDataset, field_crops
from cellmae.data.readers import open_screen


def test_crop_dataset_matches_field_crops_and_batches(make_rxrx) -> None:
    root, _ = make_rxrx(sites=1)
    screen = open_screen(root)
    ds = CropDataset(screen, crop_size=16, crops_per_field=2, seed=3)
    assert len(ds) == 12
    fc = field_crops(screen, 4, crop_size=16, crops_per_field=2, seed=3)
    np.testing.assert_array_equal(ds[9]["image"], fc.crops[1])
    assert (ds[9]["crop_y"], ds[9]["crop_x"]) == fc.positions[1]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (4, 6, 16, 16)
    assert batch["Metadata_Well"][:2] == [screen.metadata["Metadata_Well"].iloc[0]] * 2
    grid = CropDataset(screen, crop_size=16, crops_per_field=9, mode="grid")
    np.testing.assert_array_equal(grid[10]["image"], screen.read_field(1)[:, 0:16, 16:32])
