"""Batch effects per experiment and plate, and the stain -> channel -> 8-bit image path.

Real screens differ between experiments (cell lot, staining, microscope) far more than between
plates of one experiment, so most variance is drawn per experiment and a smaller deviation per
plate: per-channel gain and offset, illumination vignetting with an off-centre optical axis, focus
blur, cell density, and a small shift of the cells' baseline morphology. Controls share all of it,
which is what lets alignment (center-scale, TVN on controls) remove it while keeping the biology.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from cellmae.data.simulate.biology import N_PARAMS
from cellmae.data.simulate.render import STAINS

# Output channel -> weights of the rendered stain layers. Cell Painting's AGP channel images
# actin, Golgi and plasma membrane together; the RxRx set images them separately.
CHANNEL_MIX: dict[str, dict[str, float]] = {
    "DNA": {"DNA": 1.0},
    "ER": {"ER": 1.0},
    "Actin": {"Actin": 1.0},
    "RNA": {"RNA": 1.0},
    "Mito": {"Mito": 1.0},
    "GolgiPM": {"GolgiPM": 1.0},
    "AGP": {"Actin": 0.8, "GolgiPM": 0.8},
}
SHIFT_COLUMNS = tuple(f"shift_{i}" for i in range(N_PARAMS))


def mixing_matrix(channels: tuple[str, ...]) -> np.ndarray:
    """(n_channels, n_stains) weights that turn stain layers into the requested channels."""
    unknown = [c for c in channels if c not in CHANNEL_MIX]
    if unknown:
        raise ValueError(f"simulate: cannot render channel(s) {unknown}; supported: {list(CHANNEL_MIX)}")
    m = np.zeros((len(channels), len(STAINS)), np.float32)
    for i, c in enumerate(channels):
        for stain, w in CHANNEL_MIX[c].items():
            m[i, STAINS.index(stain)] = w
    return m


def sample_batch_effects(plates: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
    """One row of batch parameters per (experiment, plate) row of ``plates``.

    Draws do not depend on the channel set (gains/offsets are drawn for every known channel name),
    so RxRx and Cell Painting variants of one seed share their batches.
    """
    s = float(strength)
    names = list(CHANNEL_MIX)
    rows = []
    for exp, g in plates.groupby("experiment", sort=True):
        e_gain = rng.normal(0.0, 0.3 * s, len(names))
        e_off = np.abs(rng.normal(0.0, 0.035 * s, len(names)))
        e_vig = rng.uniform(0.15, 0.5) * s
        e_axis = rng.normal(0.0, 0.15 * s, 2)
        e_blur = abs(rng.normal(0.0, 0.7 * s))
        e_density = rng.normal(0.0, 0.25 * s)
        e_shift = rng.normal(0.0, 0.35 * s, N_PARAMS)
        for plate in sorted(g["plate"]):
            row = {"experiment": exp, "plate": int(plate)}
            gain = np.exp(e_gain + rng.normal(0.0, 0.06 * s, len(names)))
            off = 0.01 + e_off + np.abs(rng.normal(0.0, 0.005 * s, len(names)))
            row |= {f"gain_{c}": float(v) for c, v in zip(names, gain, strict=True)}
            row |= {f"offset_{c}": float(v) for c, v in zip(names, off, strict=True)}
            row["vignette"] = float(np.clip(e_vig + rng.normal(0.0, 0.03 * s), 0.0, 0.8))
            axis = e_axis + rng.normal(0.0, 0.03 * s, 2)
            row["vignette_cy"], row["vignette_cx"] = float(axis[0]), float(axis[1])
            row["blur_sigma"] = float(e_blur + abs(rng.normal(0.0, 0.15 * s)))
            row["density"] = float(np.exp(e_density + rng.normal(0.0, 0.05 * s)))
            shift = e_shift + rng.normal(0.0, 0.05 * s, N_PARAMS)
            row |= {c: float(v) for c, v in zip(SHIFT_COLUMNS, shift, strict=True)}
            rows.append(row)
    return pd.DataFrame(rows)


def vignette_field(size: int, strength: float, cy: float, cx: float) -> np.ndarray:
    """Multiplicative illumination falloff (1 at the optical axis, offset by (cy, cx) field fractions)."""
    ax = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    d2 = (ax[:, None] - cy) ** 2 + (ax[None, :] - cx) ** 2
    return np.clip(1.0 - strength * d2 / 0.5, 0.15, 1.0).astype(np.float32)


def channels_uint8(
    stains: np.ndarray, batch: pd.Series, channels: tuple[str, ...], rng: np.random.Generator
) -> np.ndarray:
    """Apply optics (blur, vignetting), staining (gain, offset) and camera noise; return uint8 (C, H, W)."""
    mix = mixing_matrix(channels)
    size = stains.shape[-1]
    sigma = max(0.0, float(batch["blur_sigma"]) + rng.normal(0.0, 0.1))  # focus varies a little per field
    vig = vignette_field(size, float(batch["vignette"]), float(batch["vignette_cy"]), float(batch["vignette_cx"]))
    noise = rng.standard_normal((len(channels), size, size), dtype=np.float32)  # last draw: channel count shifts none
    out = np.empty((len(channels), size, size), np.uint8)
    for i, c in enumerate(channels):
        x = sum(np.float32(w) * stains[j] for j, w in enumerate(mix[i]) if w)  # mostly one layer: skip zeros
        x = ndimage.gaussian_filter(x, sigma) if sigma > 0.3 else x
        # python floats keep float32 arrays float32 (NEP 50); numpy float64 scalars would not
        x = x * vig * float(batch[f"gain_{c}"]) + float(batch[f"offset_{c}"])
        x = x + noise[i] * (0.004 + 0.02 * np.sqrt(np.clip(x, 0.0, None)))  # read + shot noise
        out[i] = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return out
