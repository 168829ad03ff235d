"""Training-step and inference throughput of a model preset against the machine's matmul peak.

Default workload (docs/TARGETS.md): CA-MAE ViT-S/16 (OpenPhenom architecture) on 6x256x256 uint8 crops,
train step = forward + backward + Lion step at batch 8, inference = mean of the last block's patch
tokens at batch 16, both under bf16 autocast. The bf16 and fp32 matmul peaks (2048^3) are measured in
the same run, FLOPs are counted with torch.utils.flop_counter.FlopCounterMode, and achieved GFLOP/s are
printed as a fraction of the peak (absolute times drift on shared machines; ratios do not).

    python benchmarks/bench_models.py                       # the TARGETS.md figures
    python benchmarks/bench_models.py --model camae_vit_tiny_patch8_64 --steps 3 --precision fp32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cellmae.models import create_model
from cellmae.utils.device import autocast, select_device

NAMES = ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM", "AGP", "Brightfield", "FITC", "Tubulin", "Other")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """Median GFLOP/s of an n^3 matmul in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camae_vit_small_patch16_256")
    ap.add_argument("--channels", type=int, default=6)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--infer-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--precision", choices=["bf16", "fp32", "both"], default="bf16")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-infer", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    size = model.config["img_size"]
    names = model.expected_channels or NAMES[: args.channels]
    n_ch = len(names)
    peaks = {"bf16": matmul_peak(torch.bfloat16, device), "fp32": matmul_peak(torch.float32, device)}
    print(f"device={device} threads={torch.get_num_threads()} model={args.model} input={n_ch}x{size}x{size}")
    print(f"matmul peak 2048^3: bf16 {peaks['bf16']:.0f} GFLOP/s, fp32 {peaks['fp32']:.0f} GFLOP/s")
    results: dict = {"model": args.model, "device": str(device), "peaks_gflops": peaks, "runs": []}
    precisions = ["bf16", "fp32"] if args.precision == "both" else [args.precision]
    for prec in precisions:
        dtype = torch.bfloat16 if prec == "bf16" else None
        if not args.skip_train:
            from lion_pytorch import Lion

            model.train()
            opt = Lion(model.parameters(), lr=1e-4, weight_decay=0.05)
            x = torch.randint(0, 256, (args.train_batch, n_ch, size, size), dtype=torch.uint8, device=device)

            def train_step() -> None:
                with autocast(device, dtype):
                    loss = model(x, channels=names)["loss"]
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            flops = count_flops(train_step)
            sec = timed(train_step, args.steps, args.warmup, device)
            results["runs"].append(_report("train", prec, args.train_batch, sec, flops, peaks[prec]))
            del opt
        if not args.skip_infer:
            model.eval()
            x = torch.randint(0, 256, (args.infer_batch, n_ch, size, size), dtype=torch.uint8, device=device)

            @torch.inference_mode()
            def infer() -> None:
                with autocast(device, dtype):
                    model.forward_features(x, channels=names, blocks="last", pool="mean")

            flops = count_flops(infer)
            sec = timed(infer, args.steps, args.warmup, device)
            results["runs"].append(_report("infer", prec, args.infer_batch, sec, flops, peaks[prec]))
    if args.json:
        print(json.dumps(results))
    return results


def _report(kind: str, prec: str, batch: int, sec: float, flops: float, peak: float) -> dict:
    gflops = flops / sec / 1e9
    row = {
        "kind": kind, "precision": prec, "batch": batch, "sec_per_step": sec, "img_per_s": batch / sec,
        "gflop_per_img": flops / batch / 1e9, "gflops": gflops, "fraction_of_peak": gflops / peak,
    }
    print(
        f"{kind:5s} {prec}: batch {batch}, {sec:.2f} s/step, {batch / sec:.2f} img/s, "
        f"{flops / batch / 1e9:.1f} GFLOP/img, {gflops:.0f} GFLOP/s = {100 * gflops / peak:.0f}% of {prec} peak",
        flush=True,
    )
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
