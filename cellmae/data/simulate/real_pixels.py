"""Sites cut from real microscopy fields, with planted perturbation effects (``base_images`` presets).

The simulator's biology (genes, groups, compounds, guides, well layout, batches) is drawn as for a
rendered screen; only the pixels differ: each site is a randomly placed, randomly flipped/rotated
crop of a real field (e.g. the ExampleFly images), and the well's effect vector in morphology space
(biology.MORPHOLOGY_PARAMS) is planted into it as image operations: per-channel brightness, a zoom
(bigger or smaller cells), an anisotropic stretch (elongation), per-channel blur or sharpening
(texture, spread of a stain), and a per-channel gamma (contrast of bright structures). The pixels
are real, the perturbation effects are planted, and truth/ records exactly what was planted.

Hand-written because no library plants parametric phenotypes into images; the image operations
themselves are scipy.ndimage's.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from cellmae.data.simulate.batch_effects import CHANNEL_MIX, vignette_field
from cellmae.data.simulate.biology import MORPHOLOGY_PARAMS

_P = {name: i for i, name in enumerate(MORPHOLOGY_PARAMS)}

# Effect axis -> image operation, per output channel position (0 = the nuclear stain, 1 and 2 the
# others). Coefficients are per unit of the effect vector (cell-to-cell standard deviations).
_BRIGHTNESS = (  # log gain of each channel
    {"dna_intensity": 0.17, "nucleoli": 0.08},
    {"er_intensity": 0.12, "mito_intensity": 0.12, "multinucleation": 0.06},
    {"actin_intensity": 0.17, "membrane_ruffling": 0.06},
)
_BLUR = (  # Gaussian sigma (px) of each channel; negative values sharpen (unsharp mask)
    {"texture_coarseness": 0.6, "nucleus_irregularity": -0.3},
    {"er_spread": 0.8, "mito_spread": 0.6, "golgi_dispersal": 0.6},
    {"actin_fibers": -0.4, "texture_coarseness": 0.5},
)
_GAMMA = (  # log gamma of each channel (contrast of bright structures against dim ones)
    {"nucleus_irregularity": 0.08, "multinucleation": 0.06},
    {"golgi_dispersal": -0.08},
    {"actin_fibers": 0.1, "membrane_ruffling": 0.06},
)
_ZOOM = {"cell_size": 0.05, "nucleus_size": 0.04, "density": -0.05}  # log zoom factor
_STRETCH = {"cell_elongation": 0.05}  # log aspect ratio of the zoom
_PLACEMENT_TRIES = 4


def _lin(z: np.ndarray, weights: dict[str, float]) -> float:
    return float(sum(w * z[_P[k]] for k, w in weights.items()))


@cache
def base_fields(folder: str, channels: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The real fields of ``folder`` as float32 (C, H, W) in [0, ~1]: each channel scaled so that its
    99.5th percentile over all fields sits at 0.6 (real 8-bit fields are often dim)."""
    from cellmae.data.readers import open_screen

    screen = open_screen(Path(folder))
    if tuple(screen.channels) != tuple(channels) and len(screen.channels) != len(channels):
        raise ValueError(f"simulate: base_images {folder} has channels {list(screen.channels)}, but the spec "
                         f"asks for {len(channels)} ({list(channels)}); set channels to {len(screen.channels)} names")
    fields = [screen.read_field(i).astype(np.float32) for i in range(len(screen))]
    if not fields:
        raise ValueError(f"simulate: base_images {folder} holds no readable fields")
    hi = np.percentile(np.concatenate([f.reshape(len(f), -1) for f in fields], axis=1), 99.5, axis=1)
    scale = (0.6 / np.maximum(hi, 1e-6)).astype(np.float32)[:, None, None]
    return tuple(f * scale for f in fields)


def _crop(fields: tuple[np.ndarray, ...], size: int, zoom: float, aspect: float,
          rng: np.random.Generator) -> np.ndarray:
    """A (C, size, size) view of a random field at a random place, zoomed by ``zoom`` (y by
    ``zoom*sqrt(aspect)``, x by ``zoom/sqrt(aspect)``), flipped and rotated at random."""
    f = fields[int(rng.integers(len(fields)))]
    zy, zx = zoom * np.sqrt(aspect), zoom / np.sqrt(aspect)
    hy, hx = int(np.ceil(size / zy)) + 2, int(np.ceil(size / zx)) + 2
    hy, hx = min(hy, f.shape[1]), min(hx, f.shape[2])
    floor = 0.5 * float(f[0].mean())
    for _ in range(_PLACEMENT_TRIES):  # skip nearly empty places (as a field QC would): up to a few tries
        y0 = int(rng.integers(0, f.shape[1] - hy + 1))
        x0 = int(rng.integers(0, f.shape[2] - hx + 1))
        src = f[:, y0:y0 + hy, x0:x0 + hx]
        if float(src[0].mean()) >= floor:
            break
    out = np.stack([ndimage.zoom(c, (size / hy, size / hx), order=1)[:size, :size] for c in src])
    out = np.rot90(out, k=int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def real_pixel_site(spec, rng: np.random.Generator, effect: np.ndarray, penetrance: float,
                    batch: pd.Series) -> np.ndarray:
    """uint8 (C, H, W) site: a real crop carrying ``penetrance * effect`` plus the batch's shifts."""
    from cellmae.data.simulate.batch_effects import SHIFT_COLUMNS

    fields = base_fields(str(spec.base_images), tuple(spec.channels))
    z = penetrance * np.asarray(effect, np.float64) + batch[list(SHIFT_COLUMNS)].to_numpy(np.float64)
    size = spec.field_size
    img = _crop(fields, size, float(np.exp(_lin(z, _ZOOM))), float(np.exp(_lin(z, _STRETCH))), rng)
    names = list(CHANNEL_MIX)  # batch gains/offsets are drawn per known stain name; channel k takes the k-th
    sigma_b = max(0.0, float(batch["blur_sigma"]) + rng.normal(0.0, 0.1))
    vig = vignette_field(size, float(batch["vignette"]), float(batch["vignette_cy"]), float(batch["vignette_cx"]))
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    out = np.empty(img.shape, np.uint8)
    for k in range(len(img)):
        j = min(k, len(_BRIGHTNESS) - 1)
        x = img[k]
        s = _lin(z, _BLUR[j])
        if s > 0.05:
            x = ndimage.gaussian_filter(x, s)
        elif s < -0.05:  # unsharp mask: sharper edges and finer texture
            x = np.clip(x + (-s * 3.0) * (x - ndimage.gaussian_filter(x, 1.5)), 0.0, None)
        x = np.power(np.clip(x, 0.0, None) / 0.6, np.float32(np.exp(_lin(z, _GAMMA[j])))) * 0.6
        x = x * np.float32(np.exp(_lin(z, _BRIGHTNESS[j])))
        if sigma_b > 0.3:
            x = ndimage.gaussian_filter(x, sigma_b)
        name = names[k % len(names)]
        x = x * vig * float(batch[f"gain_{name}"]) + float(batch[f"offset_{name}"])
        x = x + noise[k] * (0.004 + 0.02 * np.sqrt(np.clip(x, 0.0, None)))
        out[k] = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return out
