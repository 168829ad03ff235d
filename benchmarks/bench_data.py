"""Data-layer throughput: crops/s from image files to training batches, with 1 and 2 loader workers.

Writes a synthetic RxRx-layout screen (6-channel 512 x 512 uint8 PNG fields with cell-like blobs)
to a temporary folder, then times:

  build     files -> LitData shards (``build_shards``, decode in 1 / 2 worker processes)
  stream    shards -> batches (``shard_dataloader``, 1 / 2 dataloader workers)
  files->batches = crops / (build + stream) for the shard path

Run: ``python benchmarks/bench_data.py [--fields 32 --crop 256 --crops-per-field 4 --batch 16]``.
Figures are wall-clock on this machine; another process loading it slows them several-fold.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage as ndi


def write_screen(root: Path, n_fields: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_fields):
        well = f"B{f // 4 + 2:02d}"
        site = f % 4 + 1
        rows.append(["BENCH", 1, well, site, "EMPTY" if f % 8 == 0 else f"G{f}", "CRISPR", "treatment"])
        spots = np.zeros((size, size), np.float32)
        spots[rng.integers(0, size, 60), rng.integers(0, size, 60)] = 1.0
        cells = ndi.gaussian_filter(spots, 8) * 2e4
        for k in range(6):
            plane = np.clip(cells * (0.5 + k / 6) + rng.normal(8, 3, (size, size)), 0, 255).astype(np.uint8)
            p = root / "BENCH" / "Plate1" / f"{well}_s{site}_w{k + 1}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(plane).save(p)
    cols = ["experiment", "plate", "well", "site", "gene", "perturbation_type", "well_type"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "metadata.csv", index=False)
    return root


def crops_per_s(loader, n_expected: int, epochs: int = 1) -> tuple[float, float]:
    """(steady-state crops/s after the first batch, seconds to the first batch incl. worker start-up)."""
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in range(epochs):
        for b in loader:
            n += int(b["image"].shape[0])
            if first is None:
                first, n = time.perf_counter(), 0
    dt = time.perf_counter() - first
    assert n + (loader.batch_size or 0) >= n_expected * epochs - loader.batch_size, (n, n_expected)
    return n / dt, first - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", type=int, default=32)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--crops-per-field", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--epochs", type=int, default=3, help="epochs streamed from the shards (steady-state rate)"
    )
    args = ap.parse_args()

    import litdata  # noqa: F401 - imported up front so no timing below includes it
    import torch

    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards, shard_dataloader

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        screen = open_screen(write_screen(tmp / "screen", args.fields, args.size))
        n = args.fields * args.crops_per_field
        print(
            f"screen: {len(screen)} fields of {screen.read_field(0).shape}, {n} crops of {args.crop} px, batch {args.batch}"
        )
        for workers in (1, 2):
            out = tmp / f"shards{workers}"
            t = time.perf_counter()
            build_shards(
                screen,
                out,
                crop_size=args.crop,
                crops_per_field=args.crops_per_field,
                workers=workers,
                progress=False,
            )
            build = time.perf_counter() - t
            loader = shard_dataloader(out, batch_size=args.batch, num_workers=workers, shuffle=True, seed=0)
            rate, startup = crops_per_s(loader, n, epochs=args.epochs)
            print(
                f"workers={workers}: build (files->shards) {n / build:7.1f} crops/s | "
                f"stream (shards->batches) {rate:7.1f} crops/s, first batch after {startup:.2f} s | "
                f"files->batches via shards {n / (build + n / rate):7.1f} crops/s"
            )


if __name__ == "__main__":
    main()
