"""Evaluation time and peak memory for N random 128-d embeddings (R@1/2/4/8 + mAP@R, no N x N matrix).

Each N runs in a fresh subprocess so its peak RSS is its own. Labels have ~20 items per class (like SOP).

    python benchmarks/eval_memory.py [--sizes 10000,100000] [--max-n 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(n: int) -> dict:
    import numpy as np

    from robustdml.evaluation import retrieval_metrics

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(n, 128)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.arange(n) // 20
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    metrics = retrieval_metrics(embeddings, labels)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "seconds": seconds, "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - baseline) / 1024,
            "R@1": metrics["R@1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--max-n", type=int, default=None, help="also run this N (e.g. 1000000)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    sizes = [int(s) for s in args.sizes.split(",")] + ([args.max_n] if args.max_n else [])
    rows = []
    for n in sizes:
        output = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(output.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"N={n:>8}: {row['seconds']:7.1f} s, peak RSS {row['peak_rss_mb']:7.0f} MB "
              f"(+{row['rss_growth_mb']:.0f} MB during evaluation)", flush=True)
    first, last = rows[0], rows[-1]
    growth = last["rss_growth_mb"] / max(first["rss_growth_mb"], 1e-9)
    print(f"N grew {last['n'] / first['n']:.0f}x; evaluation memory grew {growth:.1f}x "
          f"(an N x N float matrix would grow {(last['n'] / first['n']) ** 2:.0f}x and need "
          f"{4 * last['n'] ** 2 / 2 ** 30:.0f} GiB at N={last['n']})")


if __name__ == "__main__":
    main()
