"""A PNG montage of a simulated screen so a person can see that it looks like cells.

Columns: a negative-control site from every experiment (the batch effects side by side), sites of
the strongest gene group's members, and a compound at its top dose. Rows: a colour composite, then
every channel in grey. Each channel row shares one display range across columns, so gain, offset
and vignetting differences between batches stay visible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cellmae import layout

# composite colours (RGB) per channel name; unknown names fall back to white
_COLOURS = {
    "DNA": (0.1, 0.3, 1.0), "ER": (0.1, 1.0, 0.2), "Actin": (1.0, 0.2, 0.1), "AGP": (1.0, 0.2, 0.1),
    "RNA": (0.0, 0.8, 0.8), "Mito": (1.0, 0.0, 0.8), "GolgiPM": (1.0, 0.85, 0.0),
}


def _site(root: Path, row: pd.Series, n_channels: int, crop: int) -> np.ndarray:
    from PIL import Image

    chans = []
    for k in range(1, n_channels + 1):
        p = root / row["experiment"] / f"Plate{row['plate']}" / f"{row['well']}_s{row['site']}_w{k}.png"
        chans.append(np.asarray(Image.open(p)))
    img = np.stack(chans)
    h, w = img.shape[1:]
    y0, x0 = (h - min(crop, h)) // 2, (w - min(crop, w)) // 2
    return img[:, y0 : y0 + crop, x0 : x0 + crop]


def preview_columns(root: Path) -> list[tuple[str, pd.Series]]:
    """(title, metadata row) of each montage column, chosen from the screen's ground truth."""
    meta = pd.read_csv(root / layout.SCREEN_METADATA_FILE)
    meta = meta[meta["site"] == 1]
    genes = pd.read_csv(root / layout.TRUTH_DIR / layout.TRUTH_GENES_FILE)
    cols: list[tuple[str, pd.Series]] = []
    controls = meta[meta["perturbation_type"] == "CONTROL"]
    for exp, g in controls.groupby("experiment", sort=True):
        cols.append((f"control\n{exp}", g.iloc[0]))
    first_exp = meta["experiment"].min()
    hits = genes[genes["has_phenotype"]]
    if len(hits):
        top_group = hits.groupby("group")["strength"].mean().idxmax()
        members = hits[hits["group"] == top_group].sort_values("strength", ascending=False)
        for gene in members["gene"].head(3):
            rows = meta[(meta["gene"] == gene) & (meta["experiment"] == first_exp)]
            if len(rows):
                cols.append((f"{gene}\n({top_group})", rows.iloc[0]))
    cpds = pd.read_csv(root / layout.TRUTH_DIR / layout.TRUTH_COMPOUNDS_FILE)
    if len(cpds):
        best = cpds.sort_values(["strength"], ascending=False).iloc[0]
        rows = meta[(meta["treatment"] == best["compound"]) & (meta["concentration"] == best["concentration"])
                    & (meta["experiment"] == first_exp)]
        if len(rows):
            cols.append((f"{best['compound']} {best['concentration']:g} uM\n(-> {best['target_gene']})", rows.iloc[0]))
    return cols


def write_preview(root: str | Path, out_png: str | Path, crop: int = 128) -> Path:
    """Write the montage of the screen at ``root`` to ``out_png`` (atomically) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellmae.utils.atomic import atomic_path

    root = Path(root)
    channels = json.loads((root / layout.SCREEN_CHANNELS_FILE).read_text())["channels"]
    cols = preview_columns(root)
    tiles = np.stack([_site(root, row, len(channels), crop) for _, row in cols]).astype(np.float32)  # (K, C, h, w)
    hi = np.percentile(tiles, 99.7, axis=(0, 2, 3)).clip(min=1.0)  # one display range per channel row
    norm = np.clip(tiles / hi[None, :, None, None], 0.0, 1.0)
    colours = np.array([_COLOURS.get(c, (1.0, 1.0, 1.0)) for c in channels])
    rgb = np.einsum("kchw,cd->khwd", norm, colours)
    rgb = np.clip(rgb / max(1.0, float(np.percentile(rgb, 99.5))), 0.0, 1.0)

    n_rows, n_cols = len(channels) + 1, len(cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols + 0.6, 1.6 * n_rows + 0.5), squeeze=False)
    for j, (title, _) in enumerate(cols):
        axes[0, j].imshow(rgb[j])
        axes[0, j].set_title(title, fontsize=7)
        for i in range(len(channels)):
            axes[i + 1, j].imshow(norm[j, i], cmap="gray", vmin=0, vmax=1)
    for i, name in enumerate(["composite", *channels]):
        axes[i, 0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"cellmae simulate: {root.name} ({crop}x{crop} centre crops)", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out_png
