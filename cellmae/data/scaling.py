"""Bit-depth conversion: any microscope image stack -> uint8 (C, H, W).

Microscopes write 12/16-bit (or float) images whose useful range is a small, field-dependent part
of the dtype's range. Models consume uint8, so each channel is stretched between two of its own
percentiles (robust to hot pixels and empty background), then quantised. uint8 input is kept as-is
by default so that 8-bit screens (RxRx PNGs, ExampleFly) round-trip exactly.
"""

from __future__ import annotations

import numpy as np

DEFAULT_LOW_PCT = 0.1
DEFAULT_HIGH_PCT = 99.9


def to_uint8(
    stack: np.ndarray,
    low_pct: float = DEFAULT_LOW_PCT,
    high_pct: float = DEFAULT_HIGH_PCT,
    *,
    rescale_uint8: bool = False,
) -> np.ndarray:
    """Per-channel percentile scaling of a (C, H, W) stack to uint8.

    Channel c is mapped linearly so that its ``low_pct`` percentile becomes 0 and its ``high_pct``
    percentile becomes 255 (values outside are clipped). A constant channel becomes all zeros.
    uint8 input is returned unchanged unless ``rescale_uint8`` is set.
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"expected a (C, H, W) stack, got shape {stack.shape}")
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got low_pct={low_pct}, high_pct={high_pct}")
    if stack.dtype == np.uint8 and not rescale_uint8:
        return stack
    if stack.dtype == bool or not (
        np.issubdtype(stack.dtype, np.integer) or np.issubdtype(stack.dtype, np.floating)
    ):
        raise ValueError(f"cannot scale images of dtype {stack.dtype} to uint8")
    out = np.empty(stack.shape, dtype=np.uint8)
    for c in range(stack.shape[0]):
        chan = stack[c].astype(np.float32, copy=False)
        lo, hi = np.percentile(chan, [low_pct, high_pct])
        out[c] = _stretch(chan, float(lo), float(hi))
    return out


def scale_range(stack: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fixed linear scaling of a (C, H, W) stack: ``low`` -> 0, ``high`` -> 255 for every channel.

    Use it instead of :func:`to_uint8` when intensities must stay comparable across fields and
    plates (e.g. ``low=0, high=65535`` for plain 16-bit -> 8-bit).
    """
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    stack = np.asarray(stack)
    return _stretch(stack.astype(np.float32, copy=False), float(low), float(high))


def _stretch(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    y = (x - lo) * (255.0 / (hi - lo))
    np.clip(y, 0.0, 255.0, out=y)
    return np.rint(y).astype(np.uint8)
