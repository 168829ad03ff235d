"""Matplotlib figures for the report, each returned as PNG bytes to embed in the page.

Static PNGs (not plotly) keep the page small, dependency-free in the browser and identical
offline; every function takes already-computed tables and only draws them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 110
CONTROL_COLOR = "#b8bec4"


def png_bytes(fig: plt.Figure) -> bytes:
    """Render and close a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _palette(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def method_colors(models: Sequence[str]) -> dict[str, tuple]:
    """One fixed colour per model name, so a method looks the same in every figure of a report."""
    return dict(zip(models, _palette(len(models)), strict=True))


def _color(name: str, colors: Mapping[str, tuple] | None, fallback: tuple) -> tuple:
    """Colour of a method label (``model / block``) from ``colors`` keyed by model name."""
    if colors:
        return colors.get(name, colors.get(name.split(" / ")[0], fallback))
    return fallback


def training_curves(metrics: Mapping[str, pd.DataFrame], colors: Mapping[str, tuple] | None = None) -> bytes:
    """Loss (log scale), learning rate and throughput against step, one line per model."""
    panels = [("loss", "training loss", True), ("lr", "learning rate", False), ("crops_per_s", "crops / s", False)]
    panels = [p for p in panels if any(p[0] in df.columns for df in metrics.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    palette = _palette(len(metrics))
    for ax, (col, title, log) in zip(axes[0], panels, strict=True):
        for color, (model, df) in zip(palette, metrics.items(), strict=True):
            color = _color(model, colors, color)
            if col not in df.columns or "step" not in df.columns:
                continue
            d = df[["step", col]].apply(pd.to_numeric, errors="coerce").dropna()
            if d.empty:
                continue
            ax.plot(d["step"], d[col], color=color, lw=1.2, alpha=0.5 if len(d) > 50 else 1.0, label=model)
            if col == "loss" and len(d) > 50:  # a running mean shows the trend under minibatch noise
                w = max(5, len(d) // 25)
                ax.plot(d["step"], d[col].rolling(w, min_periods=1).mean(), color=color, lw=2)
        if log and ax.lines and all((ln.get_ydata() > 0).all() for ln in ax.lines):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def recall_bars(long: pd.DataFrame, *, title: str = "Known-relationship recall",
                colors: Mapping[str, tuple] | None = None) -> bytes:
    """Grouped bars: one group per database, one bar per method (columns method, database, recall)."""
    dbs = list(dict.fromkeys(long["database"]))
    methods = list(dict.fromkeys(long["method"]))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(dbs) * max(1, len(methods)) * 0.5 + 2), 3.6))
    for i, (method, color) in enumerate(zip(methods, _palette(len(methods)), strict=True)):
        color = _color(method, colors, color)
        vals = [long.loc[(long["method"] == method) & (long["database"] == db), "recall"] for db in dbs]
        heights = [float(v.iloc[0]) if len(v) else np.nan for v in vals]
        ax.bar(np.arange(len(dbs)) + (i - (len(methods) - 1) / 2) * width, heights, width, label=method, color=color)
    if "null" in long.columns and long["null"].notna().any():
        ax.axhline(float(long["null"].dropna().iloc[0]), color="k", ls="--", lw=1, label="random expectation")
    ax.set_xticks(np.arange(len(dbs)), dbs)
    ax.set_ylabel("recall")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return png_bytes(fig)


def probe_curves(curves: Mapping[str, tuple[pd.DataFrame, str, int | None]],
                 colors: Mapping[str, tuple] | None = None) -> bytes:
    """Metric against block per model; the chosen block is marked with a star.

    ``curves`` maps model -> (table with columns ``block`` and the metric, metric name, chosen block).
    """
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for color, (model, (df, metric, chosen)) in zip(_palette(len(curves)), curves.items(), strict=True):
        color = _color(model, colors, color)
        d = df.sort_values("block")
        ax.plot(d["block"], d[metric], "o-", color=color, label=f"{model} ({metric})")
        if "recall (evaluation)" in d.columns and d["recall (evaluation)"].notna().any():
            ax.plot(d["block"], d["recall (evaluation)"], "s--", color=color, alpha=0.7,
                    label=f"{model} recall (evaluation, not used for the choice)")
        if chosen is not None and (d["block"] == chosen).any():
            y = float(d.loc[d["block"] == chosen, metric].iloc[0])
            ax.plot([chosen], [y], marker="*", ms=18, color=color, markeredgecolor="k", zorder=5)
            ax.annotate(f"chosen: block {chosen}", (chosen, y), textcoords="offset points", xytext=(6, 8), fontsize=8)
    ax.set_xlabel("transformer block")
    ax.set_ylabel("probe metric / recall")
    ax.set_title("Per-block probe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def _scatter_by(ax, xy: np.ndarray, labels: Sequence[str], title: str, *, grey: str | None = None,
                max_legend: int = 12) -> None:
    labels = np.asarray([str(v) for v in labels])
    cats = [c for c in dict.fromkeys(labels) if c != grey]
    colors = _palette(len(cats))
    if grey is not None and (labels == grey).any():
        m = labels == grey
        ax.scatter(xy[m, 0], xy[m, 1], s=6, c=CONTROL_COLOR, label=grey, alpha=0.6, linewidths=0)
    for cat, color in zip(cats, colors, strict=True):
        m = labels == cat
        ax.scatter(xy[m, 0], xy[m, 1], s=8, color=color, label=cat if len(cats) <= max_legend else None,
                   alpha=0.85, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(cats) <= max_legend:
        ax.legend(fontsize=7, markerscale=1.5, loc="best", framealpha=0.7)
    else:
        ax.text(0.01, 0.01, f"{len(cats)} categories", transform=ax.transAxes, fontsize=7, color="#555")


def projections(panels: Sequence[tuple[np.ndarray, Sequence[str], str, str | None]]) -> bytes:
    """Side-by-side 2-D scatter panels: (coords (N, 2), labels, title, label drawn grey or None)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, (xy, labels, title, grey) in zip(axes[0], panels, strict=True):
        _scatter_by(ax, xy, labels, title, grey=grey)
    fig.tight_layout()
    return png_bytes(fig)


def similarity_heatmap(sim: np.ndarray, names: Sequence[str], groups: Sequence[str], title: str) -> bytes:
    """Cosine-similarity heatmap with lines between consecutive groups and group names on the side."""
    n = len(names)
    size = min(11.0, 3.0 + 0.18 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    # the pad leaves room between the matrix and the colour bar for the group names
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.22, label="cosine similarity")
    if n <= 60:
        ax.set_xticks(range(n), names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), names, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    groups = list(groups)
    edges = [i for i in range(1, n) if groups[i] != groups[i - 1]]
    for e in edges:
        ax.axhline(e - 0.5, color="k", lw=0.8)
        ax.axvline(e - 0.5, color="k", lw=0.8)
    starts = [0, *edges]
    ends = [*edges, n]
    for s, e in zip(starts, ends, strict=True):
        ax.text(n - 0.3, (s + e - 1) / 2, f" {groups[s]}", va="center", ha="left", fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return png_bytes(fig)


def distributions(values: Mapping[str, np.ndarray], *, xlabel: str, title: str,
                  nulls: Mapping[str, np.ndarray] | None = None, colors: Mapping[str, tuple] | None = None) -> bytes:
    """Overlaid histograms (one per method), with the median of each method's null as a dashed line."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    finite = [v[np.isfinite(v)] for v in values.values() if len(v)]
    if nulls:
        finite += [v[np.isfinite(v)] for v in nulls.values() if len(v)]
    allv = np.concatenate(finite) if finite else np.zeros(1)
    bins = np.linspace(float(allv.min()), float(allv.max()) + 1e-9, 30)
    for color, (name, v) in zip(_palette(len(values)), values.items(), strict=True):
        color = _color(name, colors, color)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=bins, histtype="stepfilled", alpha=0.3, color=color, density=True)
        ax.hist(v, bins=bins, histtype="step", lw=1.5, color=color, density=True, label=f"{name} (n={len(v)})")
        if nulls and name in nulls and len(nulls[name]):
            null = nulls[name][np.isfinite(nulls[name])]
            ax.axvline(float(np.median(null)), ls="--", lw=1.2, color=color, label=f"{name} null (median)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)
