import numpy as np
import pytest

from cellmae.data.tiling import crops_at, grid_positions, grid_tiles, random_crop_positions


def test_grid_of_512_gives_the_four_quadrants() -> None:
    img = np.random.default_rng(0).integers(0, 256, (2, 512, 512)).astype(np.uint8)
    tiles = grid_tiles(img, 256)
    assert tiles.shape == (4, 2, 256, 256)
    np.testing.assert_array_equal(tiles[0], img[:, :256, :256])
    np.testing.assert_array_equal(tiles[1], img[:, :256, 256:])
    np.testing.assert_array_equal(tiles[3], img[:, 256:, 256:])


def test_grid_is_centred_when_tiles_do_not_fill_the_field() -> None:
    pos = grid_positions(1006, 1000, 256)
    assert len(pos) == 9
    assert pos[0] == (119, 116) and pos[-1] == (119 + 512, 116 + 512)


def test_random_crops_are_slices_and_deterministic() -> None:
    img = np.arange(3 * 50 * 60, dtype=np.int32).reshape(3, 50, 60)
    a = crops_at(img, random_crop_positions(50, 60, 16, 10, np.random.default_rng(5)), 16)
    b = crops_at(img, random_crop_positions(50, 60, 16, 10, np.random.default_rng(5)), 16)
    np.testing.assert_array_equal(a, b)
    for crop in a:
        y, x = divmod(int(crop[0, 0, 0]), 60)
        np.testing.assert_array_equal(crop, img[:, y : y + 16, x : x + 16])


def test_crop_larger_than_image_raises() -> None:
    with pytest.raises(ValueError, match="smaller than the crop size"):
        grid_tiles(np.zeros((1, 10, 10), np.uint8), 16)
