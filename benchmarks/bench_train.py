"""Training-engine throughput: crops/s of ``run_training`` against a bare PyTorch loop on the same model.

Builds shards of the tiny simulated screen, then times for one preset (default tiny-camae):

  bare     model forward + backward + optimizer step in a plain loop on batches already in memory
  engine   ``cellmae.train.run_training`` (Lightning, LitData streaming, logging, checkpoints), median
           crops/s of metrics.csv after the first steps

and prints engine / bare (bare = mean of one run before and one after the engine), the share of
throughput the engine keeps. The ratio is what to compare
between machines; absolute crops/s drift when other processes load the machine.

Run: ``python benchmarks/bench_train.py [--preset tiny-camae --crop 64 --batch 16 --steps 20 --precision auto]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny-camae")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    args = ap.parse_args()

    import pandas as pd
    import torch

    from cellmae.data.readers import open_screen
    from cellmae.data.shards import build_shards, shard_dataloader
    from cellmae.data.simulate import simulate_screen
    from cellmae.train.config import load_config
    from cellmae.train.module_base import batch_channels
    from cellmae.train.optim import create_optimizer
    from cellmae.train.run import build_model, run_training
    from cellmae.utils.device import autocast, select_autocast_dtype

    overrides = [f"data.batch_size={args.batch}", f"trainer.max_steps={args.steps}", "trainer.progress_bar=false",
                 f"trainer.precision={args.precision}", f"model.kwargs.img_size={args.crop}",
                 "checkpoint.every_n_steps=1000000", "logging.recon_every_n_steps=0", "data.num_workers=0"]
    cfg = load_config(args.preset, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        screen = open_screen(simulate_screen(tmp / "screen", "tiny", seed=0))
        build_shards(screen, tmp / "shards", crop_size=args.crop, crops_per_field=8, progress=False)
        batches = []
        for b in shard_dataloader(tmp / "shards", batch_size=args.batch, shuffle=True, seed=0):
            batches.append(b)
            if len(batches) == 4:
                break
        channels = batch_channels(batches[0])

        model = build_model(cfg, channels=channels)
        opt = create_optimizer(model, cfg.optim, cfg.optim.lr)
        dtype = select_autocast_dtype(torch.device("cpu"), args.precision)

        def bare_crops_per_s() -> float:
            times = []
            for i in range(max(args.steps // 2, 4) + 2):
                x = batches[i % len(batches)]["image"]
                t0 = time.perf_counter()
                with autocast(torch.device("cpu"), dtype):
                    loss = model(x, channels=channels, mask_ratio=cfg.model.mask_ratio, mask_seed=i)["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                times.append(time.perf_counter() - t0)
            return args.batch / statistics.median(times[2:])

        # bare loop before and after the engine run: a large gap means the machine's load changed
        bare_before = bare_crops_per_s()
        out = run_training(cfg, tmp / "shards", tmp / "run")
        m = pd.read_csv(out / "metrics.csv")
        engine = float(m["crops_per_s"].iloc[2:].median())
        bare_after = bare_crops_per_s()
        bare = (bare_before + bare_after) / 2
        print(f"preset {args.preset}  crop {args.crop}  batch {args.batch}  precision {args.precision} "
              f"(autocast {dtype})  threads {torch.get_num_threads()}")
        print(f"bare loop : {bare:8.2f} crops/s  (before {bare_before:.2f}, after {bare_after:.2f})")
        print(f"engine    : {engine:8.2f} crops/s  (run_training, median of steps 3..{args.steps})")
        print(f"engine / bare = {engine / bare:.2f}")
        print(f"loss {m['loss'].iloc[0]:.3f} -> {m['loss'].iloc[-1]:.3f} over {len(m)} steps")


if __name__ == "__main__":
    main()
