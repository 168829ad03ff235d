"""Speed and memory of the map stage: relationship recall, TVN, aggregation (TARGETS.md).

Each measurement runs in its own subprocess so its peak RSS (``ru_maxrss``) is clean; the
figure printed is the median wall time of ``--repeats`` runs after one warm-up, and the peak RSS
of that subprocess (imports included; the RSS before the workload is printed too). ``--reference``
also times transcriptions of the EFAAR_benchmarking reference on the same inputs (slow; the
recall one holds the full similarity matrix: several GB), and prints the speed-up ratios, which
are what to compare across machines. A float32 matmul rate measured in the same run gives the
machine's current speed.

    python benchmarks/bench_map.py                  # ours: recall 20k x 5 DBs, TVN 100k x 384, aggregation
    python benchmarks/bench_map.py --reference      # + reference timings and ratios
    python benchmarks/bench_map.py --only recall --perts 17000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RELATIONSHIPS = REPO.parent / "shared" / "data" / "relationships"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (imports, BLAS thread start-up, page faults)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# ----------------------------------------------------------------------------- workloads
def _recall_inputs(n_perts: int, dim: int):
    from cellmae.bench.relationships import load_relationships

    rels = load_relationships(RELATIONSHIPS)
    symbols = sorted({str(v) for df in rels.values() for v in (*df["entity1"], *df["entity2"])})
    symbols = symbols[:n_perts] + [f"PADGENE{i:05d}" for i in range(max(0, n_perts - len(symbols)))]
    feats = np.random.default_rng(0).standard_normal((n_perts, dim), dtype=np.float32)
    return feats, symbols, rels


def work_recall(args) -> dict:
    from cellmae.bench.recall import known_relationship_recall

    feats, symbols, rels = _recall_inputs(args.perts, args.dim)
    base = _rss_mb()
    times = _timed(lambda: known_relationship_recall(feats, symbols, rels), args.repeats)
    return {"times": times, "rss_before_mb": base}


def work_recall_reference(args) -> dict:
    """EFAAR compute_recall on the all-pairs null: full cosine matrix, sort, searchsorted."""
    from sklearn.metrics.pairwise import cosine_similarity

    from cellmae.bench.relationships import normalize_pairs

    feats, symbols, rels = _recall_inputs(args.perts, args.dim)
    base = _rss_mb()

    def run():
        sims = cosine_similarity(feats)
        null = np.sort(sims[np.triu_indices(len(feats), k=1)])
        index = {g: i for i, g in enumerate(symbols)}
        for df in rels.values():
            pairs = normalize_pairs(df, index)
            q = sims[pairs.entity1.map(index).to_numpy(), pairs.entity2.map(index).to_numpy()]
            left = np.searchsorted(null, q, side="left") / len(null)
            right = np.searchsorted(null, q, side="right") / len(null)
            for lo, hi in ((0.05, 0.95), (0.1, 0.9)):
                _ = sum((right <= lo) | (left >= hi)) / len(q)

    times = _timed(run, max(1, args.repeats // 3))
    return {"times": times, "rss_before_mb": base}


def _wells(args):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.wells, args.wdim), dtype=np.float32)
    batches = np.repeat(np.arange(args.batches), -(-args.wells // args.batches))[: args.wells].astype(str)
    ctrl = rng.random(args.wells) < args.controls
    perts = rng.integers(0, args.agg_perts, args.wells).astype(str)
    return x, batches, ctrl, perts


def work_tvn(args) -> dict:
    from cellmae.map.align import tvn

    x, b, c, _ = _wells(args)
    base = _rss_mb()
    return {"times": _timed(lambda: tvn(x, b, c), args.repeats), "rss_before_mb": base}


def work_tvn_reference(args) -> dict:
    from scipy import linalg
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, b, c, _ = _wells(args)
    base = _rss_mb()

    def run():
        e = StandardScaler().fit(x[c]).transform(x)
        e = PCA().fit(e[c]).transform(e)
        e = StandardScaler().fit(e[c]).transform(e)
        for batch in np.unique(b):
            bi = b == batch
            cov = np.cov(e[bi & c], rowvar=False, ddof=1) + 0.5 * np.eye(e.shape[1])
            e[bi] = np.matmul(e[bi], linalg.fractional_matrix_power(cov, -0.5))

    return {"times": _timed(run, max(1, args.repeats // 3)), "rss_before_mb": base}


def _agg_meta(perts, ctrl):
    import pandas as pd

    from cellmae.data.schema import IS_CONTROL, PERTURBATION, PERTURBATION_TYPE

    return pd.DataFrame({PERTURBATION: perts, PERTURBATION_TYPE: "CRISPR", IS_CONTROL: ctrl})


def work_aggregate(args) -> dict:
    from cellmae.map.aggregate import aggregate

    x, _, c, p = _wells(args)
    meta = _agg_meta(p, c)
    base = _rss_mb()
    return {"times": _timed(lambda: aggregate(x, meta, args.agg), args.repeats), "rss_before_mb": base}


def work_aggregate_reference(args) -> dict:
    """EFAAR aggregate(): groupby, then np.mean / np.median per perturbation."""
    x, _, c, p = _wells(args)
    meta = _agg_meta(p, c)
    base = _rss_mb()
    fn = np.mean if args.agg == "mean" else np.median

    def run():
        md = meta.reset_index(drop=True)
        out = []
        for _pert, group in md[~md["Metadata_IsControl"]].groupby("Metadata_Perturbation"):
            out.append(fn(x[group.index.values, :], axis=0))
        np.vstack(out)

    return {"times": _timed(run, max(1, args.repeats // 3)), "rss_before_mb": base}


def work_matmul(args) -> dict:
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    times = _timed(lambda: a @ a, 5)
    return {"times": times, "gflops": 2 * 2048**3 / statistics.median(times) / 1e9, "rss_before_mb": _rss_mb()}


WORKERS = {
    "matmul": work_matmul,
    "recall": work_recall,
    "recall_reference": work_recall_reference,
    "tvn": work_tvn,
    "tvn_reference": work_tvn_reference,
    "aggregate": work_aggregate,
    "aggregate_reference": work_aggregate_reference,
}


def _run_worker(name: str, argv: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["recall", "tvn", "aggregate"], action="append", help="run only these (repeatable)")
    ap.add_argument("--reference", action="store_true", help="also time the EFAAR reference transcriptions")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--perts", type=int, default=20000, help="perturbations in the recall map")
    ap.add_argument("--dim", type=int, default=128, help="dimensions of the recall map")
    ap.add_argument("--wells", type=int, default=100_000)
    ap.add_argument("--wdim", type=int, default=384)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--controls", type=float, default=0.05)
    ap.add_argument("--agg-perts", type=int, default=17000)
    ap.add_argument("--agg", choices=["mean", "median"], default="mean")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.worker:
        res = WORKERS[args.worker](args)
        res["peak_rss_mb"] = _rss_mb()
        print(json.dumps(res))
        return

    argv = [a for a in sys.argv[1:] if a not in ("--reference",)]
    argv = [a for i, a in enumerate(argv) if a != "--only" and (i == 0 or argv[i - 1] != "--only")]
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    mm = _run_worker("matmul", argv)
    print(f"load average {' '.join(load)}; float32 matmul 2048^3: {mm['gflops']:.0f} GFLOP/s (machine speed now)")
    jobs = {
        "recall": f"recall {args.perts} perts x {args.dim}-d x 5 DBs",
        "tvn": f"TVN {args.wells} wells x {args.wdim}-d, {args.batches} batches, {args.controls:.0%} controls",
        "aggregate": f"{args.agg} aggregation {args.wells} wells -> {args.agg_perts} perts",
    }
    for name, label in jobs.items():
        if args.only and name not in args.only:
            continue
        ours = _run_worker(name, argv)
        t = statistics.median(ours["times"])
        line = f"{label}: {t:.3f} s (runs {', '.join(f'{x:.3f}' for x in ours['times'])}), peak RSS {ours['peak_rss_mb']:.0f} MB (before workload {ours['rss_before_mb']:.0f} MB)"
        if args.reference:
            ref = _run_worker(f"{name}_reference", argv)
            tr = statistics.median(ref["times"])
            line += f"\n    reference: {tr:.3f} s, peak RSS {ref['peak_rss_mb']:.0f} MB -> speed-up {tr / t:.1f}x, peak RSS reference/ours {ref['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
