"""Featurization throughput: wells/s end to end vs images/s of the model alone.

End to end = read PNGs, tile, model, pool, aggregate, write Parquet (``run_embedding`` into a fresh
folder). Model alone = ``forward_features`` on random uint8 tiles already in memory, same batch
size, precision and blocks. Their ratio shows how much time goes outside the model.

    python benchmarks/bench_embed.py                      # demo screen (simulated if absent), tiny CA-MAE
    python benchmarks/bench_embed.py --screen RUN/screen --model RUN/train/camae --blocks all

Timings are medians over repeats after a warm-up; on a shared machine say how loaded it was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from cellmae.utils.cpu_process import tune_cpu_process

# as the cellmae command does before torch loads (cellmae/cli.py, docs/speed.md)
tune_cpu_process()


def _screen(path: str | None, preset: str) -> Path:
    if path:
        return Path(path)
    root = Path(tempfile.gettempdir()) / f"cellmae-bench-{preset}-screen"
    if not (root / "metadata.csv").exists():
        from cellmae.data.simulate import simulate_screen

        t = time.perf_counter()
        simulate_screen(root, preset)
        print(f"simulated the {preset} screen at {root} in {time.perf_counter() - t:.1f} s")
    return root


class _FirstWells:
    """The fields of the first ``n`` wells of a screen (a quick figure on a loaded machine)."""

    def __init__(self, screen, n: int):
        keys = ["Metadata_Experiment", "Metadata_Plate", "Metadata_Well"]
        meta = screen.metadata.reset_index(drop=True)
        wells = meta[keys].drop_duplicates().head(n)
        self.index = meta.reset_index().merge(wells, on=keys)["index"].to_numpy()
        self.screen, self.channels = screen, screen.channels
        self.metadata = meta.iloc[self.index].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.index)

    def read_field(self, i: int):
        return self.screen.read_field(int(self.index[i]))

    def path(self, i: int):
        return self.screen.path(int(self.index[i]))


def _model_alone(model, channels, tile: int, batch: int, blocks, pool: str, device, dtype, repeats: int) -> float:
    import torch

    from cellmae.utils.device import autocast

    x = torch.randint(0, 256, (batch, len(channels), tile, tile), dtype=torch.uint8, device=device)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            with autocast(device, dtype):
                model.forward_features(x, channels=channels, blocks=blocks, pool=pool)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # first call is the warm-up
                times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--screen", help="screen folder (default: simulate the --preset screen once into the temp dir)")
    ap.add_argument("--preset", default="demo", help="simulator preset when --screen is not given")
    ap.add_argument("--model", default="random-init:camae_vit_tiny_patch8_64")
    ap.add_argument("--blocks", default="last")
    ap.add_argument("--pool", default="mean")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-wells", type=int, default=0, help="embed only the first N wells (0 = all)")
    ap.add_argument("--skip-handcrafted", action="store_true")
    args = ap.parse_args()

    import torch

    from cellmae.data.readers import open_screen
    from cellmae.embed.channels import plan_channels
    from cellmae.embed.featurize import inference_weights
    from cellmae.embed.pipeline import parse_blocks, resolve_tile, run_embedding, run_handcrafted
    from cellmae.embed.sources import resolve_source
    from cellmae.utils.device import select_autocast_dtype, select_device

    screen = open_screen(_screen(args.screen, args.preset))
    if args.max_wells:
        screen = _FirstWells(screen, args.max_wells)
    n_wells = screen.metadata.groupby(["Metadata_Experiment", "Metadata_Plate", "Metadata_Well"]).ngroups
    print(f"screen: {len(screen)} fields, {n_wells} wells, channels {','.join(screen.channels)}, "
          f"field {screen.read_field(0).shape[1:]}; torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        s = run_embedding(screen, args.model, Path(tmp) / "model", blocks=args.blocks, pool=args.pool,
                          batch_size=args.batch_size, precision=args.precision, device=args.device,
                          num_workers=args.num_workers, progress=False)
        wall = time.perf_counter() - t
        e2e_ips = s.images / s.seconds
        print(f"end to end  : {s.wells / wall:8.2f} wells/s  {e2e_ips:8.1f} images/s  ({s.wells} wells, {s.images} "
              f"images in {wall:.1f} s incl. model build; device {s.extra['device']}, {s.extra['precision']}, "
              f"{s.extra['tiles_per_field']} tiles/field)", flush=True)

        src = resolve_source(args.model, screen_channels=screen.channels)
        model = src.model
        device = select_device(args.device)
        dtype = select_autocast_dtype(device, args.precision)
        model = inference_weights(model, device, dtype)  # as the runner runs it (bf16 cast once on CPU)
        plan = plan_channels(screen.channels, getattr(model, "expected_channels", None))
        tile = resolve_tile("auto", model) or screen.read_field(0).shape[-1]
        blocks = parse_blocks(args.blocks, model.num_blocks)
        alone = _model_alone(model, plan.names, tile, args.batch_size, blocks, args.pool, device, dtype, args.repeats)
        print(f"model alone : {alone:8.1f} images/s  (batch {args.batch_size}, {len(plan.names)}x{tile}x{tile}, "
              f"blocks {blocks})")
        share = e2e_ips / alone
        note = " (>100%: timing noise, e.g. a loaded machine; rerun when idle)" if share > 1 else ""
        print(f"share of end-to-end time in the model: {share:.0%} (overhead outside the model: "
              f"{max(0.0, 1 - share):.0%}){note}")

        if not args.skip_handcrafted:
            h = run_handcrafted(screen, Path(tmp) / "handcrafted", num_workers=args.num_workers, progress=False)
            print(f"handcrafted : {h.wells / h.seconds:8.2f} wells/s  ({h.sites} fields in {h.seconds:.1f} s)")


if __name__ == "__main__":
    main()
