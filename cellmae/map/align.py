"""Batch alignment of well embeddings (EFAAR "align"): center-scale, PCA + center-scale, TVN.

The definitions follow recursionpharma/EFAAR_benchmarking (``efaar.py``):

- ``center_scale``: per batch, standardise every feature on all wells of the batch
  (``centerscale_by_batch``).
- ``pca_center_scale``: center-scale per batch, PCA fitted on all wells, then per batch
  standardise on that batch's control wells (``embed_by_pca`` + ``centerscale_on_controls``).
- ``tvn``: standardise on all control wells, PCA fitted on the controls (all components),
  standardise on the controls again, then per batch multiply by
  ``(Cov(controls of the batch) + 0.5 I)^(-1/2)`` (``tvn_on_controls``), nothing else.
- ``tvn-batch-centered`` (the default of ``cellmae map``): ``center_scale`` per batch on all its
  wells, then ``tvn``. The reference TVN equalises per-batch covariances but leaves per-batch mean
  shifts; the EFAAR pipelines remove them first (``centerscale_by_batch`` /
  ``embed_by_pca(batch_col=...)``), and so does this variant.

Every step before the per-batch whitening is affine and fitted on the controls only, so TVN is
computed as one composed affine map per batch (a single float32 matmul over the wells) instead of
four passes over a float64 copy; the fitted statistics are the reference's (sklearn's
StandardScaler and PCA on the same control rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

ALIGN_METHODS: tuple[str, ...] = ("tvn-batch-centered", "tvn", "pca_center_scale", "center_scale", "none")
DEFAULT_ALIGN = "tvn-batch-centered"
TVN_RIDGE = 0.5  # the reference's regulariser: Cov + 0.5 I
_RANK_TOL = 1e-10  # PCA components with variance below this share of the largest are null directions


def _batch_groups(batches: Sequence | np.ndarray, n: int) -> list[tuple[object, np.ndarray | slice]]:
    """(label, row indices) per batch, in order of first appearance."""
    labels = np.asarray(batches)
    if labels.shape != (n,):
        raise ValueError(f"batch labels of shape {labels.shape} do not match {n} wells")
    uniq, first, codes = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniq)))[:-1]
    groups = np.split(order, bounds)
    out: list[tuple[object, np.ndarray | slice]] = []
    for i in np.argsort(first):
        rows = groups[i]
        # Wells are usually stored batch by batch: a slice then avoids copying the rows twice.
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        out.append((uniq[i], slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows))
    return out


def _indices(rows: np.ndarray | slice) -> np.ndarray:
    return np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows


def _controls(is_control: Sequence[bool] | np.ndarray, n: int) -> np.ndarray:
    mask = np.asarray(is_control, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"control mask of shape {mask.shape} does not match {n} wells")
    return mask


def _as_float(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (wells x dimensions), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x


def center_scale(features: np.ndarray, batches: Sequence | np.ndarray) -> np.ndarray:
    """Standardise each feature within each batch on all of the batch's wells (float32 out)."""
    x = _as_float(features)
    out = np.empty(x.shape, dtype=np.float32)
    for _, rows in _batch_groups(batches, len(x)):
        out[rows] = StandardScaler().fit_transform(x[rows].astype(np.float64))
    return out


def center_scale_on_controls(
    features: np.ndarray, batches: Sequence | np.ndarray | None, is_control: Sequence[bool] | np.ndarray
) -> np.ndarray:
    """Standardise on control wells: per batch (each batch on its own controls) or, with
    ``batches=None``, on all controls at once."""
    x = _as_float(features)
    ctrl = _controls(is_control, len(x))
    groups = [("all wells", slice(0, len(x)))] if batches is None else _batch_groups(batches, len(x))
    out = np.empty(x.shape, dtype=np.float32)
    for label, rows in groups:
        c = _indices(rows)[ctrl[rows]]
        if len(c) < 2:
            raise ValueError(
                f"batch {label!r} has {len(c)} control well(s); center-scaling on controls needs at least 2 "
                "(choose another --batch-col, or --align center_scale)"
            )
        out[rows] = StandardScaler().fit(x[c].astype(np.float64)).transform(x[rows].astype(np.float64))
    return out


def pca_center_scale(
    features: np.ndarray,
    batches: Sequence | np.ndarray,
    is_control: Sequence[bool] | np.ndarray,
    *,
    n_components: int | float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Center-scale per batch, PCA on all wells (``n_components`` as sklearn's PCA: None keeps
    all, a float in (0, 1) keeps that share of variance), then center-scale per batch on controls."""
    x = center_scale(features, batches)
    pca = PCA(n_components=n_components, random_state=seed)
    pcs = pca.fit_transform(x.astype(np.float64))
    var = pca.explained_variance_
    # Drop null directions (fewer wells than dimensions): standardising them would blow up noise.
    pcs = pcs[:, var > var.max() * _RANK_TOL] if len(var) else pcs
    return center_scale_on_controls(pcs, batches, is_control)


def _inverse_sqrt_spd(mat: np.ndarray) -> np.ndarray:
    """mat^(-1/2) of a symmetric positive-definite matrix via eigh.

    The reference uses scipy's fractional_matrix_power (a Schur-based general method that can
    return complex values); for Cov + 0.5 I (eigenvalues >= 0.5) the symmetric eigendecomposition
    gives the same matrix, faster and real by construction.
    """
    vals, vecs = np.linalg.eigh(mat)
    return (vecs * vals**-0.5) @ vecs.T


def tvn(
    features: np.ndarray,
    batches: Sequence | np.ndarray,
    is_control: Sequence[bool] | np.ndarray,
    *,
    dtype: type = np.float32,
) -> np.ndarray:
    """Typical variation normalisation on control wells (EFAAR ``tvn_on_controls`` with batches).

    Output has one column per PCA component with non-zero variance on the controls:
    ``min(n_controls - 1, n_features)`` for controls in general position. (The reference keeps
    ``min(n_controls, n_features)``; any extra component is a null direction of the controls,
    which standardisation would inflate by ~1e14.)
    """
    x = _as_float(features)
    ctrl = _controls(is_control, len(x))
    n_ctrl = int(ctrl.sum())
    if n_ctrl < 2:
        raise ValueError(f"TVN needs at least 2 control wells, found {n_ctrl} (Metadata_IsControl)")
    groups = _batch_groups(batches, len(x))
    xc = x[ctrl].astype(np.float64)

    # Steps 1-3 fitted on controls, exactly as the reference (sklearn objects on the same rows).
    # Small dense linear algebra (d x d eigh, covariances) runs on one BLAS thread: multithreaded
    # OpenBLAS eigh of a 384 x 384 matrix is several times slower on a busy 2-core machine.
    with threadpool_limits(1, user_api="blas"):
        scaler1 = StandardScaler().fit(xc)
        z = scaler1.transform(xc)
        pca = PCA().fit(z)
        # With fewer controls than dimensions (or collinear features) the last components span
        # directions the controls do not vary in; the reference keeps them, and standardising a
        # variance of ~1e-30 then multiplies those coordinates by ~1e14. Keep only components with
        # real variance; when the controls have full rank this keeps all, as the reference does.
        var = pca.explained_variance_
        keep = var > var.max() * _RANK_TOL if len(var) else np.zeros(0, bool)
        comps = pca.components_[keep].T  # (d, k)
        p = (z - pca.mean_) @ comps
        scaler2 = StandardScaler().fit(p)
    # Compose x -> ((x - m1) / s1 - mu_pca) @ V.T -> (. - m2) / s2 into x @ A + c.
    a = (comps / scaler1.scale_[:, None]) / scaler2.scale_[None, :]
    c = ((-scaler1.mean_ / scaler1.scale_ - pca.mean_) @ comps - scaler2.mean_) / scaler2.scale_
    y_ctrl = scaler2.transform(p)  # controls after step 3, for the per-batch covariances
    ctrl_pos = np.full(len(x), -1, dtype=np.int64)
    ctrl_pos[np.flatnonzero(ctrl)] = np.arange(n_ctrl)

    k = a.shape[1]
    out = np.empty((len(x), k), dtype=dtype)
    eye = np.eye(k)
    for label, rows in groups:
        crow = ctrl_pos[_indices(rows)[ctrl[rows]]]
        if len(crow) < 2:
            raise ValueError(
                f"batch {label!r} has {len(crow)} control well(s); TVN needs at least 2 per batch "
                "(choose another --batch-col, or --align center_scale)"
            )
        with threadpool_limits(1, user_api="blas"):
            cov = np.cov(y_ctrl[crow], rowvar=False, ddof=1).reshape(k, k) + TVN_RIDGE * eye
            w = _inverse_sqrt_spd(cov)
        m = (a @ w).astype(dtype)
        shift = (c @ w).astype(dtype)
        if isinstance(rows, slice):  # write the product in place: no temporary of the batch
            np.matmul(x[rows].astype(dtype, copy=False), m, out=out[rows])
            out[rows] += shift
        else:
            out[rows] = x[rows].astype(dtype, copy=False) @ m + shift
    return out


def align(
    features: np.ndarray,
    batches: Sequence | np.ndarray,
    is_control: Sequence[bool] | np.ndarray,
    method: str = DEFAULT_ALIGN,
    *,
    n_components: int | float | None = None,
) -> np.ndarray:
    """Align wells with ``method`` (one of :data:`ALIGN_METHODS`); float32 out.

    ``tvn`` is EFAAR's ``tvn_on_controls`` alone; ``tvn-batch-centered`` center-scales each batch
    on all its wells first. ``n_components`` applies to ``pca_center_scale``.
    """
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown alignment {method!r}; choose one of {list(ALIGN_METHODS)}")
    if method == "none":
        return np.asarray(_as_float(features), dtype=np.float32)
    if method == "center_scale":
        return center_scale(features, batches)
    if method == "pca_center_scale":
        return pca_center_scale(features, batches, is_control, n_components=n_components)
    x = center_scale(features, batches) if method == "tvn-batch-centered" else features
    return tvn(x, batches, is_control)
