"""Handcrafted per-field features: the classical CellProfiler-style baseline, on plain numpy arrays.

Per channel: intensity distribution (mean, std, percentiles, skew), texture (gray-level
co-occurrence statistics at two distances, mean gradient magnitude) and intensity inside vs
outside nuclei. From a simple nucleus segmentation of the DNA channel (smoothed Otsu threshold,
connected components, scikit-image ``regionprops_table``): nucleus count, covered area fraction
and the mean and std over nuclei of shape descriptors and per-channel nuclear intensity.
Fields are featurized independently, so a DataLoader's workers parallelize them; sites are
averaged to wells downstream exactly like model embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cellmae.models.interface import EmbedMixin

_PERCENTILES = (5, 25, 50, 75, 95)
_GLCM_DISTANCES = (1, 3)
_GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
_GLCM_LEVELS = 16
_SHAPE_PROPS = ("area", "eccentricity", "solidity", "extent", "perimeter", "major_axis_length", "minor_axis_length")
_MIN_NUCLEUS_AREA = 12  # pixels; smaller components are noise at the scales we handle


def handcrafted_feature_names(channels: Sequence[str]) -> list[str]:
    """Names of the features :func:`field_features` returns, in order."""
    names: list[str] = []
    for c in channels:
        names += [f"Intensity_Mean_{c}", f"Intensity_Std_{c}", f"Intensity_Skew_{c}"]
        names += [f"Intensity_P{p:02d}_{c}" for p in _PERCENTILES]
        names += [f"Texture_{prop}_d{d}_{c}" for d in _GLCM_DISTANCES for prop in _GLCM_PROPS]
        names += [f"Texture_GradientMean_{c}"]
        names += [f"Intensity_NucleiMean_{c}", f"Intensity_OutsideMean_{c}", f"Intensity_NucleiRatio_{c}"]
    names += ["Nuclei_Count", "Nuclei_AreaFraction"]
    names += [f"Nuclei_{p}_{stat}" for p in _SHAPE_PROPS for stat in ("Mean", "Std")]
    names += [f"Nuclei_Intensity_{c}_{stat}" for c in channels for stat in ("Mean", "Std")]
    return names


def nucleus_labels(dna: np.ndarray) -> np.ndarray:
    """Label image of nuclei: Gaussian-smoothed Otsu threshold, small objects removed.

    Touching nuclei are not split (no watershed): a baseline should be simple and fast, and
    merged nuclei shift shape statistics consistently across wells.
    """
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label

    smooth = gaussian(dna.astype(np.float32), sigma=1.0, preserve_range=True)
    if float(smooth.max()) - float(smooth.min()) < 1e-6:
        return np.zeros(dna.shape, dtype=np.int32)
    mask = smooth > threshold_otsu(smooth)
    labels = label(mask, connectivity=1)
    sizes = np.bincount(labels.ravel())
    small = sizes < _MIN_NUCLEUS_AREA
    small[0] = True  # background stays 0
    labels[small[labels]] = 0
    return label(labels > 0, connectivity=1).astype(np.int32)


def _texture(plane: np.ndarray) -> list[float]:
    from skimage.feature import graycomatrix, graycoprops

    q = (plane.astype(np.uint16) * _GLCM_LEVELS // 256).astype(np.uint8)
    glcm = graycomatrix(q, distances=list(_GLCM_DISTANCES), angles=[0.0, np.pi / 2],
                        levels=_GLCM_LEVELS, symmetric=True, normed=True)
    out = []
    for di in range(len(_GLCM_DISTANCES)):
        for prop in _GLCM_PROPS:
            out.append(float(np.nan_to_num(graycoprops(glcm, prop)[di].mean())))
    return out


def field_features(image: np.ndarray, channels: Sequence[str], dna_index: int = 0) -> np.ndarray:
    """Handcrafted features of one field ``image`` (C, H, W) uint8, as float32 (see the names)."""
    from skimage.filters import sobel
    from skimage.measure import regionprops_table

    if image.ndim != 3 or image.shape[0] != len(channels):
        raise ValueError(f"image of shape {image.shape} does not match {len(channels)} channels {list(channels)}")
    img = image.astype(np.float32)
    flat = img.reshape(img.shape[0], -1)
    mean = flat.mean(axis=1)
    std = flat.std(axis=1)
    skew = ((flat - mean[:, None]) ** 3).mean(axis=1) / np.maximum(std, 1e-6) ** 3
    pct = np.percentile(flat, _PERCENTILES, axis=1).T  # (C, 5), vectorised over channels

    labels = nucleus_labels(image[dna_index])
    inside = labels > 0
    n_inside = int(inside.sum())
    n_outside = inside.size - n_inside
    in_mean = img[:, inside].mean(axis=1) if n_inside else np.zeros(len(channels), np.float32)
    out_mean = img[:, ~inside].mean(axis=1) if n_outside else np.zeros(len(channels), np.float32)

    feats: list[float] = []
    for c in range(len(channels)):
        feats += [mean[c], std[c], skew[c], *pct[c]]
        feats += _texture(image[c])
        feats.append(float(sobel(img[c] / 255.0).mean()))
        feats += [in_mean[c], out_mean[c], in_mean[c] / (out_mean[c] + 1.0)]

    n_nuclei = int(labels.max())
    feats += [float(n_nuclei), n_inside / inside.size]
    if n_nuclei:
        props = regionprops_table(labels, intensity_image=np.moveaxis(img, 0, -1),
                                  properties=(*_SHAPE_PROPS, "intensity_mean"))
        for p in _SHAPE_PROPS:
            v = np.asarray(props[p], dtype=np.float64)
            feats += [v.mean(), v.std()]
        for c in range(len(channels)):
            v = np.asarray(props[f"intensity_mean-{c}"], dtype=np.float64)
            feats += [v.mean(), v.std()]
    else:  # no nuclei found: zeros keep the row usable (the count column says why)
        feats += [0.0] * (2 * len(_SHAPE_PROPS) + 2 * len(channels))
    return np.nan_to_num(np.asarray(feats, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def find_dna_channel(channels: Sequence[str]) -> int:
    """Index of the nuclear stain: DNA / Hoechst / DAPI by name, else the first channel."""
    for i, c in enumerate(channels):
        if c.casefold() in {"dna", "hoechst", "dapi", "nuclei", "nucleus"}:
            return i
    return 0


class HandcraftedFeatures(EmbedMixin):
    """The classical baseline behind the model interface: one "block" (0) of per-image features.

    ``forward_features(images (B, C, H, W) uint8, channels)`` -> {0: (B, F)} with the features named by
    ``feature_names(channels)``; the nucleus segmentation uses the DNA channel found by name.
    """

    num_blocks = 0
    expected_channels = None
    training = False
    config = {"kind": "handcrafted"}

    def feature_names(self, channels: Sequence[str]) -> list[str]:
        return handcrafted_feature_names(channels)

    def forward_features(self, images, channels: Sequence[str] | None = None, blocks="last", pool: str = "mean"):
        import torch

        if blocks not in ("last", "all", 0, [0], (0,)):
            raise ValueError(f"handcrafted features have one block (0), asked for {blocks!r}")
        x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.dtype != np.uint8:
            raise ValueError(f"handcrafted features need uint8 images, got {x.dtype}")
        names = list(channels) if channels is not None else [f"ch{i}" for i in range(x.shape[1])]
        dna = find_dna_channel(names)
        rows = [field_features(img, names, dna) for img in x]
        return {0: torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, len(self.feature_names(names)))}
