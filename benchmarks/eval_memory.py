"""Evaluation time and peak memory for N random 128-d L2-normalised embeddings (R@1/2/4/8 + mAP@R).

Shows that evaluation memory grows linearly with N (chunked faiss search, no N x N matrix) while
time grows as N^2 (exact search compares every query with every gallery item). Each N runs in a
fresh subprocess so its peak RSS is its own. Classes have 10-50 items each (SOP-like retrieval
sets have small classes), so mAP@R searches ~50 neighbours deep.

    python benchmarks/eval_memory.py                      # N = 10k, 100k
    python benchmarks/eval_memory.py --max-n 1000000      # also 1M (exact search: ~N^2 d flops, slow)
    python benchmarks/eval_memory.py --max-n 1000000 --queries 10000   # 10k queries vs an N-item gallery

With ``--queries Q`` a seeded random subset of Q items is evaluated against the whole gallery (each
excluding its own copy): time then grows as Q * N, memory still as N.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def class_labels(n: int, seed: int = 0):
    """Labels for ``n`` items in consecutive classes of 10-50 items each."""
    import numpy as np

    sizes = np.random.default_rng(seed).integers(10, 51, size=n // 10 + 1)
    return np.repeat(np.arange(len(sizes)), sizes)[:n]


def current_rss_kib() -> float:
    """Resident memory now (not the peak so far), from /proc on Linux; the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(n: int, dim: int, n_queries: int = 0) -> dict:
    import numpy as np

    from robustdml.evaluation import retrieval_metrics

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal(size=(n, dim), dtype=np.float32)  # no float64 temporary in the peak
    for start in range(0, n, 65536):  # in chunks: a whole-array norm would leave an N x d temporary in the peak
        block = embeddings[start:start + 65536]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    labels = class_labels(n)
    baseline = current_rss_kib()
    start = time.perf_counter()
    if n_queries and n_queries < n:
        queries = np.sort(rng.permutation(n)[:n_queries])
        metrics = retrieval_metrics(embeddings[queries], labels[queries], embeddings, labels, exclude_index=queries)
    else:
        metrics = retrieval_metrics(embeddings, labels)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "dim": dim, "queries": min(n_queries or n, n), "seconds": seconds, "peak_rss_mb": peak / 1024,
            "eval_growth_mb": (peak - baseline) / 1024, "embeddings_mb": embeddings.nbytes / 2 ** 20,
            "largest_class": int(np.bincount(labels).max()), "R@1": metrics["R@1"], "mAP@R": metrics["mAP@R"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated N values")
    parser.add_argument("--max-n", type=int, default=None, help="also run this N (e.g. 1000000)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=0, help="evaluate only this many queries (0: all N)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.dim, args.queries)))
        return
    sizes = [int(s) for s in args.sizes.split(",")] + ([args.max_n] if args.max_n else [])
    rows = []
    print(f"{'N':>9} {'queries':>8} {'time s':>8} {'peak RSS MB':>12} {'eval growth MB':>15} {'embeddings MB':>14} {'R@1':>6}")
    for n in sizes:
        output = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim), "--queries", str(args.queries)],
                                capture_output=True, text=True, check=True)
        row = json.loads(output.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{n:>9} {row['queries']:>8} {row['seconds']:>8.1f} {row['peak_rss_mb']:>12.0f} {row['eval_growth_mb']:>15.0f} "
              f"{row['embeddings_mb']:>14.0f} {row['R@1']:>6.4f}", flush=True)
    for first, last in zip(rows, rows[1:]):
        n_ratio = last["n"] / first["n"]
        print(f"N x{n_ratio:.0f}: peak RSS x{last['peak_rss_mb'] / first['peak_rss_mb']:.1f}, evaluation growth "
              f"x{last['eval_growth_mb'] / max(first['eval_growth_mb'], 1e-9):.1f}, time "
              f"x{last['seconds'] / first['seconds']:.0f} (an N x N float32 matrix would grow x{n_ratio ** 2:.0f} "
              f"and need {4 * last['n'] ** 2 / 2 ** 30:.0f} GiB at N={last['n']})")


if __name__ == "__main__":
    main()
