"""--image-stats: per-channel tile mean and spread, what self-standardization removes, appended to the embedding."""

from __future__ import annotations

import numpy as np
import pytest

from cellmae.embed.featurize import tile_image_stats


def test_known_means_and_spreads_in_channel_order() -> None:
    tiles = np.zeros((2, 3, 4, 4), np.uint8)
    tiles[0, 0] = 255  # bright constant channel
    tiles[0, 1, :, :2] = 100  # half the pixels at 100: mean 50, spread 50
    tiles[1, 2] = np.arange(16, dtype=np.uint8).reshape(4, 4)
    out = tile_image_stats(tiles)
    assert out.shape == (2, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], np.array([255, 50, 0, 0, 50, 0]) / 255, atol=1e-6)
    ref = np.arange(16) / 255
    np.testing.assert_allclose(out[1], [0, 0, ref.mean(), 0, 0, ref.std()], atol=1e-6)


def test_a_uniform_brightness_change_survives_only_in_the_statistics() -> None:
    from cellmae.models.standardize import self_standardize

    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    tile = rng.integers(10, 100, (1, 2, 8, 8)).astype(np.uint8)
    brighter = (tile.astype(np.int32) * 2).astype(np.uint8)  # every pixel doubled: the same picture, brighter
    a, b = (self_standardize(torch.from_numpy(t)) for t in (tile, brighter))
    torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)  # invisible to the model's input (eps aside)
    np.testing.assert_allclose(tile_image_stats(brighter), 2 * tile_image_stats(tile), rtol=1e-5)  # visible here
