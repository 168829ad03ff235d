"""Render one field of cells into six fluorescence stain layers, vectorised over cells and pixels.

Hand-written because no library draws parametric cells: skimage.draw gives polygons but not
per-cell organelle distributions, and per-cell Python loops would be ~50x slower. Each field:

1. draw per-cell morphology (well effect on the cells it penetrates + cell-to-cell noise),
2. place cells without heavy overlap, assign every pixel to the cell whose (elliptic, ruffled)
   outline it lies deepest in (a weighted Voronoi partition, like confluent cells),
3. paint stains from per-pixel geometry (radius in the cell, nucleus distance, cortex) and from
   point organelles (mitochondria, nucleoli, Golgi) splatted then Gaussian-blurred.

Intensities are in [0, ~1]; batch effects and 8-bit conversion happen in batch_effects.py.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cellmae.data.simulate.biology import MORPHOLOGY_PARAMS, N_PARAMS

STAINS: tuple[str, ...] = ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM")
_P = {name: i for i, name in enumerate(MORPHOLOGY_PARAMS)}
MITOTIC_FRACTION = 0.04
CELL_NOISE = 0.55  # cell-to-cell spread of each morphology axis (well effects are in these units)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def cell_properties(z: np.ndarray, radius_px: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Physical per-cell properties from morphology coordinates ``z`` (n_cells, N_PARAMS)."""
    n = len(z)
    c = {k: z[:, i] for k, i in _P.items()}
    mitotic = rng.random(n) < MITOTIC_FRACTION  # rounded cells with small, bright, condensed DNA
    radius = np.clip(radius_px * np.exp(0.16 * c["cell_size"]), 0.45 * radius_px, 2.2 * radius_px)
    aspect = np.clip(np.exp(0.35 + 0.22 * c["cell_elongation"] + 0.1 * rng.normal(size=n)), 1.0, 3.5)
    nuc_rel = np.clip(0.4 * np.exp(0.14 * c["nucleus_size"]), 0.22, 0.7)
    radius = np.where(mitotic, radius * 0.7, radius)
    aspect = np.where(mitotic, 1.0, aspect)
    nuc_rel = np.where(mitotic, 0.5, nuc_rel)
    props = {
        "radius": radius,
        "aspect": aspect,
        "theta": rng.uniform(0, np.pi, n),
        "nuc_rel": nuc_rel,  # nucleus radius / cell radius
        "nuc_aspect": np.clip(1.0 + 0.4 * (np.sqrt(aspect) - 1.0) + 0.08 * np.abs(rng.normal(size=n)), 1.0, 2.0),
        "nuc_irregular": np.clip(0.05 * np.exp(0.45 * c["nucleus_irregularity"]), 0.0, 0.3),
        "multinucleate": (rng.random(n) < _sigmoid(-3.0 + 1.2 * c["multinucleation"])) & ~mitotic,
        "dna": 0.5 * np.exp(0.17 * c["dna_intensity"]) * np.where(mitotic, 1.8, 1.0),
        "er": 0.4 * np.exp(0.17 * c["er_intensity"]),
        "er_spread": np.clip(0.28 * np.exp(0.3 * c["er_spread"]), 0.06, 1.5),
        "actin": 0.32 * np.exp(0.17 * c["actin_intensity"]),
        "fibers": _sigmoid(-0.8 + 1.1 * c["actin_fibers"]),
        "nucleoli": 0.4 * np.exp(0.2 * c["nucleoli"]),
        "n_nucleoli": np.where(mitotic, 0, 1 + rng.poisson(np.clip(1.3 * np.exp(0.35 * c["nucleoli"]), 0, 8))),
        "mito": 0.2 * np.exp(0.17 * c["mito_intensity"]),
        "mito_density": np.clip(0.10 * np.exp(0.3 * c["mito_intensity"]), 0.02, 0.4),
        "mito_spread": np.clip(0.35 * np.exp(0.3 * c["mito_spread"]), 0.08, 1.5),
        "golgi_spread": np.clip(0.09 * np.exp(0.45 * c["golgi_dispersal"]), 0.03, 0.6),
        "texture": _sigmoid(1.3 * c["texture_coarseness"]),
        "ruffle": np.clip(0.06 * np.exp(0.45 * c["membrane_ruffling"]), 0.0, 0.35),
        "harm_amp": rng.normal(0.0, 1.0, (n, 3)),
        "harm_phase": rng.uniform(0, 2 * np.pi, (n, 3)),
        "nharm_amp": rng.normal(0.0, 1.0, (n, 2)),
        "nharm_phase": rng.uniform(0, 2 * np.pi, (n, 2)),
        "fiber_phase": rng.uniform(0, 2 * np.pi, n),
        "golgi_angle": rng.uniform(0, 2 * np.pi, n),
    }
    # float32 throughout: per-pixel maths on float64 costs twice the time for no visible gain
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in props.items()}


def sample_cells(
    effect: np.ndarray, penetrance: float, n_cells: int, radius_px: float, rng: np.random.Generator,
    baseline: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Cells of one field: each carries the full ``effect`` with probability ``penetrance``, all
    share ``baseline`` (the batch's shift of normal morphology)."""
    hit = rng.random(n_cells) < penetrance  # knockout is per cell; unedited cells look like controls
    z = rng.normal(0.0, CELL_NOISE, (n_cells, N_PARAMS)) + hit[:, None] * effect[None, :]
    if baseline is not None:
        z += baseline[None, :]
    return cell_properties(z, radius_px, rng)


def place_cells(radius: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Centres (n, 2) as (y, x); cells may be cut by the border; neighbours keep ~0.7 radii apart."""
    n = len(radius)
    centres = np.empty((n, 2))
    k = 0
    margin = 0.3 * float(np.median(radius)) if n else 0.0
    cand = rng.uniform(-margin, size + margin, (8 * n + 8, 2))
    for p in cand:  # dart throwing: O(n^2) but n is ~100 per field
        if k == n:
            break
        if k == 0 or np.min(np.hypot(*(centres[:k] - p).T) / (radius[:k] + radius[k])) > 0.7:
            centres[k] = p
            k += 1
    return centres[:k].astype(np.float32)  # a very crowded field keeps the cells that fit


def _harmonics(phi: np.ndarray, amp: np.ndarray, phase: np.ndarray, scale: np.ndarray, k0: int) -> np.ndarray:
    """Outline radius factor 1 + scale * sum_k amp_k cos(k phi + phase_k), k = k0, k0+1, ..."""
    out = np.ones_like(phi)
    for j in range(amp.shape[-1]):
        out += scale * amp[..., j] * np.cos((k0 + j) * phi + phase[..., j]) / (j + 1)
    return np.maximum(out, 0.5)


def _ellipse_coords(dy, dx, theta, a, b):
    """Coordinates along (u) and across (v) the major axis, in units of the semi-axes a, b."""
    ct, st = np.cos(theta), np.sin(theta)
    return (dx * ct + dy * st) / a, (-dx * st + dy * ct) / b


def cell_labels(cells: dict, centres: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Label image (-1 background) and normalised radius r in [0, 1) of each pixel within its cell."""
    n = len(centres)
    labels = np.full(size * size, -1, dtype=np.int64)
    if n == 0:
        return labels.reshape(size, size), np.ones((size, size), np.float32)
    a = cells["radius"][:n] * np.sqrt(cells["aspect"][:n])
    b = cells["radius"][:n] / np.sqrt(cells["aspect"][:n])
    half = int(np.ceil(np.max(a) * (1 + 2.5 * np.max(cells["ruffle"][:n])))) + 1
    off = np.arange(-half, half + 1)
    cy0 = np.round(centres[:, 0]).astype(np.int64)
    cx0 = np.round(centres[:, 1]).astype(np.int64)
    py = cy0[:, None, None] + off[None, :, None]  # (n, B, 1)
    px = cx0[:, None, None] + off[None, None, :]  # (n, 1, B)
    offf = off.astype(np.float32)
    dy = offf[None, :, None] + (cy0 - centres[:, 0])[:, None, None]
    dx = offf[None, None, :] + (cx0 - centres[:, 1])[:, None, None]
    r = _normalised_radius(cells, np.arange(n)[:, None, None], dy, dx, a[:, None, None], b[:, None, None])
    inside = (r < 1.0) & (py >= 0) & (py < size) & (px >= 0) & (px < size)
    flat = (py * size + px)[inside]
    cell = np.broadcast_to(np.arange(n)[:, None, None], r.shape)[inside]
    # pixel -> cell it lies deepest in: one ufunc.minimum.at over a packed (radius, cell id) key
    key = (r[inside] * 1e6).astype(np.int64) * 4096 + cell
    best = np.full(size * size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, flat, key)
    fg = best != np.iinfo(np.int64).max
    labels[fg] = best[fg] % 4096
    rad = np.ones(size * size, np.float32)
    rad[fg] = (best[fg] // 4096) / 1e6
    return labels.reshape(size, size), rad.reshape(size, size)


def _normalised_radius(cells, idx, dy, dx, a, b):
    u, v = _ellipse_coords(dy, dx, cells["theta"][idx], a, b)
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    shape = _harmonics(phi, cells["harm_amp"][idx], cells["harm_phase"][idx], cells["ruffle"][idx], 2)
    return rho / shape


def _splat(img: np.ndarray, y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """Add point weights at (y, x) (rounded) into ``img`` in place, ignoring points outside."""
    yi, xi = np.round(y).astype(np.int64), np.round(x).astype(np.int64)
    ok = (yi >= 0) & (yi < img.shape[0]) & (xi >= 0) & (xi < img.shape[1])
    np.add.at(img, (yi[ok], xi[ok]), w[ok])


def _cell_points(cells, centres, idx, r, ang) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions of points at normalised radius r and angle ang inside cells ``idx``."""
    a = cells["radius"][idx] * np.sqrt(cells["aspect"][idx])
    b = cells["radius"][idx] / np.sqrt(cells["aspect"][idx])
    shape = _harmonics(ang, cells["harm_amp"][idx], cells["harm_phase"][idx], cells["ruffle"][idx], 2)
    u, v = r * shape * np.cos(ang) * a, r * shape * np.sin(ang) * b
    th = cells["theta"][idx]
    return centres[idx, 0] + u * np.sin(th) + v * np.cos(th), centres[idx, 1] + u * np.cos(th) - v * np.sin(th)


def _unit_noise(size: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sigma, mode="wrap")
    return f / (f.std() + 1e-6)


def render_stains(cells: dict, centres: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The six stain layers (STAINS order) of one field as float32 (6, size, size)."""
    out = np.zeros((len(STAINS), size, size), np.float32)
    n = len(centres)
    fine, coarse = _unit_noise(size, 0.8, rng), _unit_noise(size, 2.2, rng)
    if n == 0:
        return out
    labels, r = cell_labels(cells, centres, size)
    fg = labels >= 0
    lab = labels[fg]
    r = r[fg]
    yy, xx = (c.astype(np.float32) for c in np.nonzero(fg))
    p = {k: v[lab] for k, v in cells.items()}
    dy, dx = yy - centres[lab, 0], xx - centres[lab, 1]
    cell_edge = np.clip((1.0 - r) / 0.12, 0.0, 1.0)  # soft outline (~1 px)

    # nuclei: one, or two side by side along the cell's major axis when multinucleate
    rn_px = p["radius"] * p["nuc_rel"]
    shift = np.where(p["multinucleate"], 0.75 * rn_px, 0.0)
    ct, st = np.cos(p["theta"]), np.sin(p["theta"])
    scale = np.where(p["multinucleate"], 0.8, 1.0)
    an = rn_px * scale * np.sqrt(p["nuc_aspect"])
    bn = rn_px * scale / np.sqrt(p["nuc_aspect"])
    rn = np.full(r.shape, np.inf)
    for sgn in (1.0, -1.0):
        u, v = _ellipse_coords(dy - sgn * shift * st, dx - sgn * shift * ct, p["theta"], an, bn)
        nshape = _harmonics(np.arctan2(v, u), p["nharm_amp"], p["nharm_phase"], p["nuc_irregular"], 2)
        rn = np.minimum(rn, np.sqrt(u * u + v * v) / nshape)
    nuc = np.clip((1.0 - rn) / 0.15, 0.0, 1.0) * cell_edge
    cyto = cell_edge * (1.0 - nuc)

    tex = p["texture"] * coarse[fg] + (1.0 - p["texture"]) * fine[fg]
    tex01 = np.clip(0.5 + 0.22 * tex, 0.0, 1.0)
    # cortex: free cell edges (r -> 1) and cell-cell junctions (label changes between neighbours)
    junction = np.zeros((size, size), bool)
    junction[:-1] |= labels[:-1] != labels[1:]
    junction[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    junction = ndimage.gaussian_filter(junction.astype(np.float32), 0.7)[fg]
    cortex = np.clip(np.exp(-(((1.0 - r) / 0.1) ** 2)) + 2.0 * junction, 0.0, 1.0) * cell_edge

    nuc_r = p["nuc_rel"]
    er_prof = np.exp(-np.clip(r - nuc_r, 0.0, None) / p["er_spread"])
    out[0][fg] = p["dna"] * nuc * (0.55 + 0.7 * tex01)
    out[1][fg] = p["er"] * er_prof * cyto * (0.35 + 0.9 * tex01) + 0.15 * p["er"] * nuc * (rn > 0.8)
    u_px = dx * ct + dy * st  # along the major axis: stress fibres run along it
    v_px = -dx * st + dy * ct
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * v_px / 3.5 + p["fiber_phase"] + 0.3 * fine[fg])
    stripes *= np.clip(1.0 - np.abs(u_px) / (p["radius"] * np.sqrt(p["aspect"])), 0.0, 1.0)
    out[2][fg] = p["actin"] * (0.25 * cyto + 1.2 * cortex + 0.9 * p["fibers"] * stripes * cyto)
    out[3][fg] = 0.22 * p["nucleoli"] * (0.6 * er_prof * cyto + 0.5 * nuc) * (0.6 + 0.6 * tex01)
    out[5][fg] = 0.35 * cortex * p["actin"]  # plasma membrane part of the Golgi/PM stain
    _render_points(out, cells, centres, size, rng)
    return out


def _render_points(out: np.ndarray, cells: dict, centres: np.ndarray, size: int, rng: np.random.Generator) -> None:
    """Mitochondria (Mito), nucleoli (RNA) and Golgi (GolgiPM) as blurred point clouds."""
    n = len(centres)
    idx_all = np.arange(n)
    # mitochondria: count ~ cell area; radial position from the nucleus outwards, spread per cell
    area = np.pi * cells["radius"][:n] ** 2
    counts = rng.poisson(cells["mito_density"][:n] * area)
    idx = np.repeat(idx_all, counts)
    nr = cells["nuc_rel"][idx]
    rr = np.clip(nr + np.abs(rng.normal(0.0, 1.0, len(idx))) * cells["mito_spread"][idx], 0.0, 0.97)
    y, x = _cell_points(cells, centres, idx, rr, rng.uniform(0, 2 * np.pi, len(idx)))
    layer = np.zeros((size, size), np.float32)
    _splat(layer, y, x, cells["mito"][idx] * rng.uniform(0.5, 1.5, len(idx)))
    out[4] += ndimage.gaussian_filter(layer, 0.9) * (2 * np.pi * 0.9**2)

    # nucleoli: a few bright spots inside the (first) nucleus
    idx = np.repeat(idx_all, cells["n_nucleoli"][:n])
    rr = cells["nuc_rel"][idx] * 0.55 * np.sqrt(rng.random(len(idx)))
    y, x = _cell_points(cells, centres, idx, rr, rng.uniform(0, 2 * np.pi, len(idx)))
    layer[:] = 0
    _splat(layer, y, x, cells["nucleoli"][idx])
    out[3] += ndimage.gaussian_filter(layer, 1.3) * (2 * np.pi * 1.3**2) * 0.8

    # Golgi: a compact cap beside the nucleus; dispersal spreads it through the cytoplasm
    idx = np.repeat(idx_all, 10)
    spread = cells["golgi_spread"][idx]
    ang = cells["golgi_angle"][idx] + rng.normal(0, 1.0, len(idx)) * np.clip(spread * 4, 0.2, 3.0)
    rr = np.clip(cells["nuc_rel"][idx] * 1.15 + np.abs(rng.normal(0, 1.0, len(idx))) * spread, 0, 0.95)
    y, x = _cell_points(cells, centres, idx, rr, ang)
    layer[:] = 0
    _splat(layer, y, x, np.full(len(idx), 0.2, np.float32))
    out[5] += ndimage.gaussian_filter(layer, 1.2) * (2 * np.pi * 1.2**2)
