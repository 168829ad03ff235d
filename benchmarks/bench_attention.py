"""The two CPU attention paths on this machine, at the shapes the OpenPhenom-architecture CA-MAE runs.

``cellmae.models.attention.cpu_path`` picks the chunked explicit product or SDPA (PyTorch's CPU
flash kernel) by dtype, by whether autograd records, and by whether the CPU has AMX. This script
times both paths, interleaved call by call in one process, at the attention shapes of a ViT-S/16
CA-MAE train step (batch 8: encoder on the visible quarter of 6x256 tokens, the decoder's
1,536-token attention, the per-channel 256-token decoder stacks) and of inference (batch 16, all
1,537 tokens), plus two shapes of other presets, in bf16 and fp32, and prints per shape the median
milliseconds, the ratio and whether the rule took the faster path. Run it on a new CPU before
trusting the rule there (docs/speed.md, "Which attention on which CPU").

    python benchmarks/bench_attention.py                 # a minute or two on 2 idle cores
    python benchmarks/bench_attention.py --reps 12 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

# (B, H, N, d) per call and whether autograd records: the shapes of camae_vit_small_patch16_256
INFERENCE = [(16, 6, 1537, 64), (8, 6, 385, 64), (8, 16, 256, 32), (64, 3, 65, 64)]
TRAINING = [(8, 6, 385, 64), (8, 8, 1536, 64), (8, 16, 256, 32), (4, 6, 1537, 64)]


def _interleaved(paths: dict, reps: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each callable, the calls alternating so that drift hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(warmup + reps):
        for name, fn in paths.items():
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _forced(attention_module, path: str, fn):
    def run():
        attention_module.CPU_ATTENTION = path
        try:
            return fn()
        finally:
            attention_module.CPU_ATTENTION = "auto"
    return run


def measure(shape: tuple[int, ...], dtype: torch.dtype, grad: bool, reps: int) -> dict:
    from cellmae.models import attention as attn

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=gen).to(dtype).requires_grad_(grad) for _ in range(3))
    g = torch.randn(*shape, generator=gen).to(dtype)

    def call():
        if grad:
            attn.attention(q, k, v).backward(g)
        else:
            with torch.inference_mode():
                attn.attention(q, k, v)

    med = _interleaved({p: _forced(attn, p, call) for p in ("chunked", "sdpa")}, reps)
    chosen = attn.cpu_path(dtype, grad)
    faster = min(med, key=med.get)
    return {"shape": list(shape), "dtype": str(dtype).removeprefix("torch."), "autograd": grad,
            "chunked_ms": 1e3 * med["chunked"], "sdpa_ms": 1e3 * med["sdpa"],
            "chunked_over_sdpa": med["chunked"] / med["sdpa"], "rule_takes": chosen, "faster": faster,
            "threads": torch.get_num_threads(), "cpu_has_amx": attn.cpu_has_amx(), "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    ap.add_argument("--reps", type=int, default=6, help="timed calls per path and shape (median reported)")
    ap.add_argument("--dtypes", nargs="+", choices=["bf16", "fp32"], default=["bf16", "fp32"])
    args = ap.parse_args(argv)
    from cellmae.utils.cpu_process import keep_freed_memory

    keep_freed_memory()  # as the cellmae command does (docs/speed.md)
    torch.set_num_threads(args.threads)
    from cellmae.models.attention import cpu_has_amx

    print(f"threads={torch.get_num_threads()} amx={cpu_has_amx()} torch={torch.__version__} "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for name in args.dtypes:
        dtype = torch.bfloat16 if name == "bf16" else torch.float32
        for grad, shapes in ((False, INFERENCE), (True, TRAINING)):
            for shape in shapes:
                row = measure(shape, dtype, grad, args.reps)
                rows.append(row)
                what = "fwd+bwd  " if grad else "inference"
                verdict = "rule takes the faster" if row["rule_takes"] == row["faster"] else "rule takes the SLOWER"
                print(f"{name} {what} {'x'.join(map(str, shape)):>14s}: chunked {row['chunked_ms']:8.1f} ms, "
                      f"SDPA {row['sdpa_ms']:8.1f} ms, chunked/SDPA {row['chunked_over_sdpa']:.2f}; "
                      f"rule: {row['rule_takes']} ({verdict})", flush=True)
                print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
