import numpy as np
import pytest

from cellmae.data.scaling import scale_range, to_uint8


def test_uint8_is_kept_unchanged_by_default() -> None:
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8)).astype(np.uint8)
    assert to_uint8(x) is x
    assert not np.array_equal(to_uint8(x, 10, 90, rescale_uint8=True), x)


def test_uint16_percentiles_map_to_0_and_255_per_channel() -> None:
    ramp = np.arange(7 * 143, dtype=np.uint16).reshape(1, 7, 143)
    stack = np.concatenate([ramp, ramp * 10 + 500]).astype(np.uint16)
    out = to_uint8(stack, 0.0, 100.0)
    assert out.dtype == np.uint8 and out.shape == stack.shape
    # a linear ramp over the full percentile range becomes a linear ramp 0..255, whatever its gain/offset
    assert out[0].min() == 0 and out[0].max() == 255
    np.testing.assert_array_equal(out[0], out[1])
    expected = np.rint(ramp[0].astype(np.float64) * 255 / ramp.max()).astype(np.uint8)
    np.testing.assert_array_equal(out[0], expected)


def test_outliers_are_clipped_and_constant_channel_is_zero() -> None:
    x = np.full((2, 10, 10), 1000, dtype=np.uint16)
    x[0, :5] = 2000
    x[0, 0, 0] = 65535  # one hot pixel must not compress the rest
    out = to_uint8(x, 1.0, 98.0)
    assert out[0, 0, 0] == 255 and out[0, 1, 0] == 255 and out[0, 9, 9] == 0
    assert (out[1] == 0).all()


def test_float_input_and_errors() -> None:
    x = np.linspace(0, 1, 100, dtype=np.float32).reshape(1, 10, 10)
    assert to_uint8(x, 0, 100).max() == 255
    with pytest.raises(ValueError, match="low_pct"):
        to_uint8(x, 50, 10)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        to_uint8(x[0])


def test_scale_range_is_fixed_across_fields() -> None:
    x = np.array([[[0, 32767, 65535]]], dtype=np.uint16)
    np.testing.assert_array_equal(scale_range(x, 0, 65535), [[[0, 127, 255]]])
