"""Training-step and inference throughput of a model preset against the machine's matmul peak.

Default workload: CA-MAE ViT-S/16 (OpenPhenom architecture) on 6x256x256 uint8 crops. Train step =
forward + backward + timm Lion step at batch 8 under bf16 autocast; inference = mean of the last
block's patch tokens at batch 16, run as the embedding runner runs it (``inference_weights``: on CPU
under bf16 one bf16 copy of the model, cast once). FLOPs are counted with FlopCounterMode.

The bf16/fp32 matmul peak is measured warm, many times, at 1024^3, 2048^3 and 4096^3, before the
workloads and again after them, each printed as best and median next to the load average; fractions
of peak use the best of all of them (the highest rate seen, so the most conservative fraction), and
the best median is printed next to it. Each workload runs in its own subprocess (so its
peak RSS, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the child, is that workload's,
model and optimizer state included; on CUDA also ``torch.cuda.max_memory_allocated``) and prints one
JSON line. On CPU every workload is an A/B: steps alternate between the default attention
(``cellmae.models.attention.cpu_path``: chunked explicit product or SDPA, by dtype, autograd and the
CPU's AMX) and the other of the two paths everywhere, in the same process, and the ratio is printed (absolute times drift on a shared machine; interleaved ratios much less).
Workloads run as the ``cellmae`` command runs them (cellmae/utils/cpu_process.py, docs/speed.md):
GOMP_SPINCOUNT=10000 unless the environment sets OMP_WAIT_POLICY or GOMP_SPINCOUNT, and glibc keeping
freed memory for reuse unless CELLMAE_MALLOC=system; each line reports both, and the minor page
faults per timed step. No second implementation of the model (maes_microscopy) is installed
here, so there is no side-by-side run against it; the figure to compare with the reference is the
fraction of peak.

    python benchmarks/bench_models.py                       # the issue-18 figures, a few minutes when idle
    python benchmarks/bench_models.py --threads 1 --steps 2 --skip-train
    python benchmarks/bench_models.py --model camae_vit_tiny_patch8_64 --train-batch 32 --infer-batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

PEAK_SIZES = (1024, 2048, 4096)
NAMES = ("DNA", "ER", "Actin", "RNA", "Mito", "GolgiPM", "AGP", "Brightfield", "FITC", "Tubulin", "Other")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_rate(a: torch.Tensor, b: torch.Tensor, warmup: int = 3, reps: int = 20) -> tuple[float, float]:
    """(best, median) GFLOP/s of a warm ``a @ b`` over ``reps`` repetitions (also bench_gemm.py's timer)."""
    out = torch.empty(a.shape[0], b.shape[1], device=a.device, dtype=a.dtype)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(reps):
        sync(a.device)
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(a.device)
        times.append(time.perf_counter() - t)
    flop = 2 * a.shape[0] * a.shape[1] * b.shape[1] / 1e9
    return flop / min(times), flop / statistics.median(times)


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, warmup: int = 3,
                reps: int = 20) -> tuple[float, float]:
    """(best, median) GFLOP/s of a warm n^3 matmul in ``dtype`` over ``reps`` repetitions."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return gemm_rate(a, b, warmup, reps)


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


def _images(batch: int, channels: int, size: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, channels, size, size), generator=gen, dtype=torch.uint8).to(device)


def _workload(args, device: torch.device, dtype: torch.dtype | None):
    """(step(batch), batch size, model) for ``args.workload``."""
    from cellmae.embed.featurize import inference_weights
    from cellmae.models import create_model
    from cellmae.utils.device import autocast

    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    names = list(model.expected_channels or NAMES[: args.channels])
    if args.workload == "train":
        from timm.optim import Lion

        model.train()
        opt = Lion(model.parameters(), lr=1e-4, weight_decay=0.05)

        def step(batch: torch.Tensor) -> None:
            with autocast(device, dtype):
                loss = model(batch, channels=names)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step, args.train_batch, model, names

    runner = inference_weights(model, device, dtype)  # the embedding runner's precision policy

    @torch.inference_mode()
    def infer(batch: torch.Tensor) -> None:
        with autocast(device, dtype):
            runner.forward_features(batch, channels=names, blocks="last", pool="mean")

    return infer, args.infer_batch, model, names


def _cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat), or None where there is no /proc."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def _steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of the machine's CPU time taken by the hypervisor (steal, the 8th counter) in between."""
    if not before or not after or len(before) < 8:
        return None
    delta = [b - a for a, b in zip(before, after, strict=False)]
    return delta[7] / max(1, sum(delta[:8]))


def _paths_chosen(attention, fn) -> set[str]:
    """The CPU attention paths (``chunked`` / ``sdpa``) the default rule takes while ``fn`` runs."""
    real, chosen = attention.cpu_path, set()

    def recording_path(dtype, recording):
        path = real(dtype, recording)
        chosen.add(path)
        return path

    attention.cpu_path = recording_path
    try:
        fn()
    finally:
        attention.cpu_path = real
    return chosen


def child(args) -> dict:
    """One workload in this process: FLOPs, interleaved A/B timings, peak memory; one JSON line."""
    from cellmae.models import attention
    from cellmae.utils.cpu_process import keep_freed_memory
    from cellmae.utils.device import select_device

    malloc_kept = keep_freed_memory()  # as the cellmae command does; CELLMAE_MALLOC=system for glibc's default
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step, batch, model, names = _workload(args, device, dtype)
    size = model.config["img_size"]
    attention.CPU_ATTENTION = "sdpa"  # count the FLOPs of the plain path (attention counted as SDPA)
    small = _images(args.flop_batch, len(names), size, device)
    flops = count_flops(lambda: step(small)) * batch / args.flop_batch
    x = _images(batch, len(names), size, device)
    # The A/B partner is the CPU attention path the default does not take for this workload
    # (cellmae.models.attention.cpu_path: which one depends on dtype, autograd and the CPU's AMX).
    attention.CPU_ATTENTION = "auto"
    chosen = _paths_chosen(attention, lambda: step(small)) if device.type == "cpu" else {"sdpa"}
    other = "sdpa" if chosen == {"chunked"} else "chunked"
    variants = {"default": "auto", other: other} if (device.type == "cpu" and not args.no_ab) else {"default": "auto"}
    times: dict[str, list[float]] = {v: [] for v in variants}
    faults: dict[str, int] = dict.fromkeys(variants, 0)  # minor page faults in the timed steps
    # A short matmul peak right before every timed default step: a shared machine's speed drifts within
    # minutes (the peaks before and after the workloads differ by up to a fifth), so each step is also
    # set against the peak of its own moment.
    peak_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    adjacent: list[float] = []
    cpu0 = _cpu_times()
    for i in range(args.warmup + args.steps):
        for name, path in variants.items():
            if name == "default" and i >= args.warmup:
                adjacent.append(matmul_peak(peak_dtype, device, n=2048, warmup=1, reps=5)[0])
            attention.CPU_ATTENTION = path
            sync(device)
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time.perf_counter()
            step(x)
            sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t)
                faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    cpu1 = _cpu_times()
    attention.CPU_ATTENTION = "auto"
    sec = {v: statistics.median(t) for v, t in times.items()}
    step_fractions = [flops / t / 1e9 / p for t, p in zip(times["default"], adjacent, strict=True)]
    row = {
        "workload": args.workload, "model": args.model, "device": str(device), "precision": args.precision,
        "threads": torch.get_num_threads(), "batch": batch, "input": f"{len(names)}x{size}x{size}",
        "gflop_per_img": flops / batch / 1e9, "sec_per_step": sec["default"], "img_per_s": batch / sec["default"],
        "gflops": flops / sec["default"] / 1e9, "step_times": {v: [round(t, 3) for t in ts] for v, ts in times.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "load_average": os.getloadavg(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "malloc_keeps_freed_memory": malloc_kept,
        "minor_faults_per_step": {v: n // max(1, args.steps) for v, n in faults.items()},
        "adjacent_peak_gflops": [round(p) for p in adjacent],
        "fraction_of_adjacent_peak": statistics.median(step_fractions),
        "steal_share": _steal_share(cpu0, cpu1), "attention_paths": sorted(chosen), "cpu_has_amx": attention.cpu_has_amx(),
    }
    if other in sec:
        row["ab_other"] = other
        row["img_per_s_other"] = batch / sec[other]
        row["ab_ratio_default_over_other"] = sec[other] / sec["default"]
    if device.type == "cuda":
        row["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camae_vit_small_patch16_256")
    ap.add_argument("--channels", type=int, default=6)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--infer-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-infer", action="store_true")
    ap.add_argument("--no-ab", action="store_true", help="time only the default attention (no interleaved steps of the other CPU path)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    ap.add_argument("--flop-batch", type=int, default=1,
                    help="count FLOPs on this batch size and scale linearly (saves a full-size counting step)")
    ap.add_argument("--workload", choices=["train", "infer"], help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args(argv)
    if args.workload:
        print(json.dumps(child(args)), flush=True)
        return []

    from cellmae.utils.cpu_process import openmp_waiting
    from cellmae.utils.device import select_device

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    peak_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    print(f"device={device} threads={torch.get_num_threads()} cpus={os.cpu_count()} model={args.model}")
    peaks = [_peak_line("before", peak_dtype, device, args)]
    # the OpenMP waiting the cellmae command sets (cellmae/utils/cpu_process.py); the user's own
    # OMP_WAIT_POLICY / GOMP_SPINCOUNT win, e.g. OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_models.py
    env = dict(os.environ) | openmp_waiting()
    waiting = {k: env[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in env}
    print(f"workloads run with {waiting or 'libgomp defaults'}")
    rows = []
    for workload in [w for w, skip in (("train", args.skip_train), ("infer", args.skip_infer)) if not skip]:
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--workload", workload]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    peaks.append(_peak_line("after", peak_dtype, device, args))
    best = max(p["best_gflops"] for p in peaks)
    # Where the machine's matmul rate changes from minute to minute (the AMX Xeon of docs/speed.md), the
    # best repetition can lie far above what the same matmul sustains: the best median is printed too.
    sustained = max(m["median"] for p in peaks for m in p["by_size"].values())
    print(f"peak used for the fractions: {best:.0f} GFLOP/s (the best of every size, before and after); "
          f"best median {sustained:.0f} GFLOP/s")
    for row in rows:
        row["fraction_of_peak"] = row["gflops"] / best
        row["peak_best_gflops"] = best
        row["fraction_of_best_median_peak"] = row["gflops"] / sustained
        row["peak_best_median_gflops"] = sustained
        print(_line(row), flush=True)
        print(json.dumps(row), flush=True)
    return rows


def _peak_line(when: str, dtype: torch.dtype, device: torch.device, args) -> dict:
    """Matmul peak at three sizes, printed, as one JSON line."""
    load = os.getloadavg()
    sizes = {n: matmul_peak(dtype, device, n=n) for n in PEAK_SIZES}
    text = ", ".join(f"{n}^3 best {b:.0f} median {m:.0f}" for n, (b, m) in sizes.items())
    print(f"{args.precision} matmul peak {when} (GFLOP/s, 3 warm-ups + 20 reps each): {text}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    row = {"workload": "matmul_peak", "when": when, "precision": args.precision,
           "best_gflops": max(b for b, _ in sizes.values()),
           "by_size": {str(n): {"best": b, "median": m} for n, (b, m) in sizes.items()},
           "threads": torch.get_num_threads(), "load_average": load}
    print(json.dumps(row), flush=True)
    return row


def _line(row: dict) -> str:
    text = (f"{row['workload']:5s} {row['precision']} batch {row['batch']}: {row['img_per_s']:.2f} img/s, "
            f"{row['gflop_per_img']:.1f} GFLOP/img, {row['gflops']:.0f} GFLOP/s = {100 * row['fraction_of_peak']:.0f}% "
            f"of peak ({100 * row['fraction_of_best_median_peak']:.0f}% of the best median), peak RSS {row['peak_rss_mib']:.0f} MiB")
    text += f"; attention {'+'.join(row['attention_paths'])} (AMX: {'yes' if row['cpu_has_amx'] else 'no'})"
    if "ab_ratio_default_over_other" in row:
        other = row["ab_other"]
        text += f", all-{other} {row['img_per_s_other']:.2f} img/s, A/B default/{other} {row['ab_ratio_default_over_other']:.2f}x"
    if "cuda_max_allocated_mib" in row:
        text += f", CUDA max allocated {row['cuda_max_allocated_mib']:.0f} MiB"
    faults = row["minor_faults_per_step"].get("default", 0)
    text += (f", {faults} minor page faults/step; per step against the peak measured right before it: median "
             f"{100 * row['fraction_of_adjacent_peak']:.0f}% (peaks {row['adjacent_peak_gflops']})")
    if row.get("steal_share") is not None:
        text += f", hypervisor steal {100 * row['steal_share']:.1f}%"
    return text + f" (load {row['load_average'][0]:.2f})"


if __name__ == "__main__":
    main(sys.argv[1:])
