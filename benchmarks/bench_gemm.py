"""bf16 GEMM rates at the shapes of the CA-MAE ViT-S/16 train step, next to the square matmul peak.

The train step's linears multiply 2,048 tokens (batch 8 x 256 patches per channel) by 512-2,048
features, and their weight gradients take the first operand transposed; ``bench_models.py`` sets the
whole step against a square 2048^3 matmul. This script measures each shape in rounds (the square
one first in every round), so that a machine whose matmul rate changes from minute to minute (the
AMX Xeon of docs/speed.md) shows it as rounds that differ, and shape against shape within a round
stays comparable.

    python benchmarks/bench_gemm.py                # 3 rounds, about a minute on 2 idle cores
    python benchmarks/bench_gemm.py --rounds 6 --reps 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from bench_models import gemm_rate  # the same timer as the peak lines of bench_models.py

# name, (M, K, N), first operand transposed, second operand transposed: C[M, N] = A[M, K] @ B[K, N]
SHAPES = [
    ("square 2048^3", (2048, 2048, 2048), False, False),
    ("fc1 forward: x @ W^T (2048 tokens, 512 -> 2048)", (2048, 512, 2048), False, True),
    ("fc2 forward / fc1 input grad: 2048x2048 @ 2048x512", (2048, 2048, 512), False, False),
    ("fc1 weight grad: g^T @ x (2048x2048)^T @ 2048x512", (2048, 2048, 512), True, False),
    ("fc2 weight grad: g^T @ h (2048x512)^T @ 2048x2048", (512, 2048, 2048), True, False),
    ("encoder in-projection: 3080 tokens, 384 -> 2688", (3080, 384, 2688), False, True),
]


def operand(rows: int, cols: int, transposed: bool, gen: torch.Generator) -> torch.Tensor:
    """A (rows, cols) bf16 operand, as a transposed view of a (cols, rows) tensor if asked."""
    if transposed:
        return torch.randn(cols, rows, generator=gen).bfloat16().t()
    return torch.randn(rows, cols, generator=gen).bfloat16()


def _copy_ms(g: torch.Tensor, reps: int, warmup: int = 3) -> float:
    """Median milliseconds of making the transposed view ``g`` contiguous."""
    for _ in range(warmup):
        g.contiguous()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        g.contiguous()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20, help="timed calls per shape and round (best and median)")
    args = ap.parse_args(argv)
    from cellmae.utils.cpu_process import keep_freed_memory

    keep_freed_memory()  # as the cellmae command does (docs/speed.md)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    operands = [(name, operand(m, k, ta, gen), operand(k, n, tb, gen)) for name, (m, k, n), ta, tb in SHAPES]
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for r in range(args.rounds):
        for name, a, b in operands:
            best, median = gemm_rate(a, b, reps=args.reps)
            row = {"round": r, "gemm": name, "m_k_n": [a.shape[0], a.shape[1], b.shape[1]],
                   "best_gflops": best, "median_gflops": median, "threads": torch.get_num_threads(),
                   "load_average": os.getloadavg()}
            rows.append(row)
            print(f"round {r} {name:52s} best {best:6.0f} median {median:6.0f} GFLOP/s", flush=True)
            print(json.dumps(row), flush=True)
        # what a contiguous copy of the transposed gradient would cost before a weight-gradient GEMM
        ms = _copy_ms(operands[3][1], args.reps)
        row = {"round": r, "copy": "transposed 2048x2048 bf16 made contiguous", "ms": ms,
               "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
        rows.append(row)
        print(f"round {r} {'transposing copy of the fc1 gradient (2048x2048)':52s} {ms:.2f} ms", flush=True)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
