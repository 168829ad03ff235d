"""Exact order statistics of the all-pairs cosine-similarity null, without an N x N matrix.

Known-relationship recall compares each known pair's cosine similarity with the distribution of
cosine similarities over ALL distinct pairs of perturbations (N (N - 1) / 2 values: 144 M for
17,000 perturbations). Sorting that (the reference) costs seconds and gigabytes; but recall only
needs a handful of order statistics of it. No library computes selected order statistics of an
implicit Gram matrix in bounded memory, hence this module.

How (one pass over the upper triangle, in tiles, float32 BLAS on unit vectors):

1. A random sample of rows gives a bracket ``[a, b]`` around each wanted rank.
2. One pass counts the values below each ``a`` and keeps the (few) values inside ``[a, b]``
   with their pair indices.
3. float32 similarities differ from the float64 ones by at most ``eps`` (a rounding-error bound,
   ``(d + 8) * 2**-23`` for d dimensions). Order statistics move by at most ``eps`` under such a
   perturbation, so the float64 order statistic lies within ``eps`` of the float32 one. The values
   within ``2 eps`` of it are recomputed in float64 and the exact rank is read among them.

The result equals ``np.sort(null64)[k]`` of the float64 similarities (checked in the tests);
if a bracket misses its rank (unlucky sample), the pass is repeated with a bracket built from
the float32 answer, so the result never depends on luck, only the time does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

# Below this many pairs the null is built in float64 and sorted: exact and cheap.
BRUTE_FORCE_MAX_PAIRS = 4_000_000
_SAMPLE_VALUES = 2_000_000
_TILE_ROWS = 256  # similarity tile: 256 x 2048 float32 = 2 MB
_TILE_COLS = 2048


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64 (zero rows stay zero, as sklearn's ``normalize``)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (perturbations x dimensions), got shape {x.shape}")
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"features row {row} has a NaN or infinite value")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def _workers() -> int:
    """Worker threads for the tile pass: the CPUs this process may use (at most 16)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


def null_size(n_items: int) -> int:
    """Number of distinct unordered pairs of ``n_items`` items."""
    return n_items * (n_items - 1) // 2


def brute_force_null(unit: np.ndarray) -> np.ndarray:
    """Sorted float64 cosine similarities of all distinct pairs (small maps and tests only)."""
    sims = unit @ unit.T
    iu = np.triu_indices(len(unit), k=1)
    return np.sort(sims[iu])


def null_order_statistics(unit: np.ndarray, ranks: Sequence[int], *, seed: int = 0) -> dict[int, float]:
    """``{k: sorted_null[k]}`` for each 0-based rank ``k`` of the float64 all-pairs cosine null.

    ``unit`` holds unit-norm rows (see :func:`unit_rows`). Memory stays O(N d + tiles); the
    N x N matrix is never materialised.
    """
    n_items = len(unit)
    n = null_size(n_items)
    ranks = sorted({int(k) for k in ranks})
    if not ranks:
        return {}
    if ranks[0] < 0 or ranks[-1] >= n:
        raise ValueError(f"ranks must lie in [0, {n}); got {ranks[0]}..{ranks[-1]}")
    if n <= BRUTE_FORCE_MAX_PAIRS:
        null = brute_force_null(unit)
        return {k: float(null[k]) for k in ranks}

    unit32 = np.ascontiguousarray(unit, dtype=np.float32)
    eps = (unit.shape[1] + 8) * 2.0**-23  # bound on |float32 dot - float64 dot| for unit vectors
    brackets = _sample_brackets(unit32, ranks, n, eps, np.random.default_rng(seed))
    result: dict[int, float] = {}
    for _attempt in range(8):
        counts, values, rows, cols = _bracket_pass(unit32, brackets)
        retry: dict[int, tuple[float, float]] = {}
        for k, (a, b) in brackets.items():
            resolved = _resolve_rank(unit, k, a, b, counts[k], values[k], rows[k], cols[k], eps)
            if isinstance(resolved, tuple):
                retry[k] = resolved
            else:
                result[k] = resolved
        if not retry:
            return result
        brackets = retry  # only the missed ranks go round again
    raise RuntimeError(f"could not bracket null ranks {sorted(brackets)}; report this as a bug")


def _resolve_rank(
    unit: np.ndarray,
    k: int,
    a: float,
    b: float,
    count_below_a: int,
    values: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    eps: float,
) -> float | tuple[float, float]:
    """The exact float64 value of rank ``k``, or a wider bracket to try when ``[a, b]`` missed it."""
    v32 = values
    pos = k - count_below_a
    if not 0 <= pos < len(v32):  # the rank lies outside the bracket: grow it on that side
        width = 4 * (b - a) + 8 * eps
        return (a - width, b) if pos < 0 else (a, b + width)
    t32 = float(np.partition(v32, pos)[pos])  # selection, not a sort
    lo, hi = t32 - 2 * eps, t32 + 2 * eps
    # The band must sit inside the bracket with room to spare: the tile comparisons round a and b
    # to float32 (a few 1e-9), which the extra eps covers.
    if lo - eps < a or hi + eps > b:
        return (min(a, lo - 2 * eps), max(b, hi + 2 * eps))
    band = (v32 >= lo) & (v32 <= hi)
    below = count_below_a + int(np.count_nonzero(v32 < lo))
    r, c = rows[band], cols[band]
    exact = np.einsum("ij,ij->i", unit[r], unit[c])
    if np.abs(v32[band].astype(np.float64) - exact).max(initial=0.0) > eps:
        raise RuntimeError("float32 similarity error exceeded its bound; report this as a bug")
    exact.sort()
    v = float(exact[k - below])
    if not t32 - eps <= v <= t32 + eps:
        raise RuntimeError("exact order statistic outside its float32 band; report this as a bug")
    return v


def _sample_brackets(
    unit32: np.ndarray, ranks: list[int], n: int, eps: float, rng: np.random.Generator
) -> dict[int, tuple[float, float]]:
    """Brackets [a, b] that hold each rank with overwhelming probability, from random rows."""
    n_items = len(unit32)
    n_rows = min(n_items, max(8, math.ceil(_SAMPLE_VALUES / n_items)))
    picked = np.sort(rng.choice(n_items, size=n_rows, replace=False))
    sims = unit32[picked] @ unit32.T
    sims[np.arange(n_rows), picked] = np.nan  # self pairs are not in the null
    sample = sims[~np.isnan(sims)]
    m = len(sample)
    probs = np.array([k / n for k in ranks])
    # 8 binomial standard errors (rows are correlated samples; the retry loop covers the rest).
    half = 8 * np.sqrt(probs * (1 - probs) / m) + 2e-4
    lo_idx = np.clip(np.floor((probs - half) * m).astype(np.int64), 0, m - 1)
    hi_idx = np.clip(np.ceil((probs + half) * m).astype(np.int64), 0, m - 1)
    part = np.partition(sample, np.unique(np.concatenate([lo_idx, hi_idx])))
    out = {}
    for k, i, j in zip(ranks, lo_idx, hi_idx, strict=True):
        a = float(part[i]) - 4 * eps if i > 0 else -np.inf
        b = float(part[j]) + 4 * eps if j < m - 1 else np.inf
        out[k] = (a, b)
    return out


def _bracket_pass(
    unit32: np.ndarray, brackets: dict[int, tuple[float, float]]
) -> tuple[dict[int, int], dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """One pass over the upper triangle in tiles.

    Returns, per rank: the number of null values below its ``a``, and the float32 values inside
    ``[a, b]`` with their (row, col) pair indices. Ranks in the lower half are served from the
    lower tail (values <= max b), the others from the upper tail (values >= min a), so only the
    tails are ever copied out of a tile.
    """
    n_items = len(unit32)
    half = null_size(n_items) // 2
    lower = {k: ab for k, ab in brackets.items() if k < half}
    upper = {k: ab for k, ab in brackets.items() if k not in lower}
    lo_cut = max((b for _, b in lower.values()), default=-np.inf)
    hi_cut = min((a for a, _ in upper.values()), default=np.inf)
    th = min(n_items, _TILE_ROWS)
    tw = min(n_items, _TILE_COLS)
    tril = np.tril(np.ones((th, th), dtype=bool))  # lower triangle + diagonal: not distinct pairs

    def row_block(r0: int) -> tuple[dict[int, int], dict[int, list[tuple[np.ndarray, np.ndarray]]]]:
        # Cache-sized tiles: every pass after the matmul (compare, nonzero, gather) runs on data
        # still in L2 instead of streaming a large block from memory several times.
        counts = dict.fromkeys(brackets, 0)
        parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in brackets}
        r1 = min(r0 + th, n_items)
        h = r1 - r0
        left = unit32[r0:r1]
        buf = np.empty(th * tw, dtype=np.float32)
        mask_buf = np.empty(th * tw, dtype=bool)  # reused: no allocation per tile and comparison
        for c0 in range(r0, n_items, tw):
            c1 = min(c0 + tw, n_items)
            w = c1 - c0
            sims = buf[: h * w].reshape(h, w)  # contiguous, so flat indices are i * w + j
            np.matmul(left, unit32[c0:c1].T, out=sims)
            n_valid = h * w
            if c0 == r0:  # the diagonal tile: keep only j > i
                d = min(h, w)
                sims[:, :d][tril[:h, :d]] = np.nan  # NaN fails every comparison: out of both tails
                n_valid -= int(np.count_nonzero(tril[:h, :d]))
            for side, cut, group in (("lo", lo_cut, lower), ("hi", hi_cut, upper)):
                if not group:
                    continue
                flat = sims.reshape(-1)
                mask = mask_buf[: h * w]
                (np.less_equal if side == "lo" else np.greater_equal)(flat, np.float32(cut), out=mask)
                idx = np.flatnonzero(mask)
                vals = flat[idx]
                for k, (a, b) in group.items():
                    below = int(np.count_nonzero(vals < a))
                    counts[k] += below if side == "lo" else n_valid - len(vals) + below
                    inside = np.flatnonzero((vals >= a) & (vals <= b))  # few: index, do not compress
                    sel = idx[inside]
                    parts[k].append((vals[inside], (r0 + sel // w) * n_items + (c0 + sel % w)))
        return counts, parts

    # Row blocks run on a thread pool with single-threaded BLAS: numpy releases the GIL in matmul
    # and in the elementwise passes, and one BLAS thread per worker avoids OpenBLAS's thread
    # hand-off per small matmul, which is very slow when other processes share the cores.
    counts = dict.fromkeys(brackets, 0)
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in brackets}
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(max_workers=_workers()) as pool:
        for block_counts, block_parts in pool.map(row_block, range(0, n_items, th)):
            for k in brackets:
                counts[k] += block_counts[k]
                parts[k].extend(block_parts[k])
    values, rows, cols = {}, {}, {}
    for k, items in parts.items():
        values[k] = np.concatenate([p[0] for p in items]) if items else np.empty(0, np.float32)
        code = np.concatenate([p[1] for p in items]).astype(np.int64) if items else np.empty(0, np.int64)
        rows[k], cols[k] = np.divmod(code, n_items)
    return counts, values, rows, cols
