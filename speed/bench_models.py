"""Training-step and inference throughput of a model preset against the machine's matmul peak.

Default workload (docs/TARGETS.md): CA-MAE ViT-S/16 (OpenPhenom architecture) on 6x256x256 uint8 crops,
train step = forward + backward + Lion step at batch 8, inference = mean of the last block's patch
tokens at batch 16, both under bf16 autocast. The bf16 and fp32 matmul peaks (2048^3) are measured in
the same run, FLOPs are counted with torch.utils.flop_counter.FlopCounterMode, and achieved GFLOP/s are
printed as a fraction of the peak (absolute times drift on shared machines; ratios do not).

    python speed/bench_models.py                       # the TARGETS.md figures
    python speed/bench_models.py --model camae_vit_tiny_patch8_64 --steps 3 --precision fp32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

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


def _cpu_flash_fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode knows the CUDA SDPA kernels but not the CPU flash-attention ones: without these,
# attention (40% of the ViT-S/16 inference FLOPs at 6x256 tokens) would go uncounted on CPU.
_CUSTOM = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_fwd,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_bwd,
}


def count_flops(fn) -> float:
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
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
    ap.add_argument("--optimizer", choices=["lion-pytorch", "timm-lion"], default="timm-lion",
                    help="Lion implementation: timm's (multi-tensor foreach) or lion-pytorch's (per-parameter loop)")
    ap.add_argument("--flop-batch", type=int, default=1,
                    help="count FLOPs on this batch size and scale linearly (saves a full-size counting step)")
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
            row = bench_train(model, names, size, dtype, device, args)
            results["runs"].append(_report("train", prec, args.train_batch, *row, peaks[prec]))
        if not args.skip_infer:
            row = bench_infer(model, names, size, dtype, device, args)
            results["runs"].append(_report("infer", prec, args.infer_batch, *row, peaks[prec]))
    if args.json:
        print(json.dumps(results))
    return results


def bench_train(model, names, size, dtype, device, args) -> tuple[float, float]:
    """(seconds per train step at --train-batch, FLOPs of that step)."""
    if args.optimizer == "timm-lion":
        from timm.optim import Lion
    else:
        from lion_pytorch import Lion

    model.train()
    opt = Lion(model.parameters(), lr=1e-4, weight_decay=0.05)

    def train_step(batch: torch.Tensor) -> None:
        with autocast(device, dtype):
            loss = model(batch, channels=names)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    small = _images(args.flop_batch, len(names), size, device)
    flops = count_flops(lambda: train_step(small)) * args.train_batch / args.flop_batch
    x = _images(args.train_batch, len(names), size, device)
    return timed(lambda: train_step(x), args.steps, args.warmup, device), flops


def bench_infer(model, names, size, dtype, device, args) -> tuple[float, float]:
    """(seconds per embedding batch at --infer-batch, FLOPs): mean of the last block's patch tokens."""
    model.eval()

    @torch.inference_mode()
    def infer(batch: torch.Tensor) -> None:
        with autocast(device, dtype):
            model.forward_features(batch, channels=names, blocks="last", pool="mean")

    small = _images(args.flop_batch, len(names), size, device)
    flops = count_flops(lambda: infer(small)) * args.infer_batch / args.flop_batch
    x = _images(args.infer_batch, len(names), size, device)
    return timed(lambda: infer(x), args.steps, args.warmup, device), flops


def _images(batch: int, channels: int, size: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, channels, size, size), generator=gen, dtype=torch.uint8).to(device)


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
