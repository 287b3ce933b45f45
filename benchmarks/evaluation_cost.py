"""What the default robustness evaluation costs: seconds and forward+backward passes per 1000 queries.

    python benchmarks/evaluation_cost.py RUN_DIR [RUN_DIR ...] [--queries 300] [--ers]

For each run: the default ``auto`` evaluation (eps 0.01, 0.05, 0.1, convergence probe, sanity
checks) on ``--queries`` random test queries, timed end to end (clean embeddings included), and
optionally the published ERS profile on the same queries. Prints passes per query, seconds, and
seconds per 1000 queries. Use ``OMP_NUM_THREADS`` / the machine's cores as you would in practice.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustdml.robustness.spec import AttackSpec, ers_spec
from robustdml.robustness.evaluate import evaluate_robustness
from robustdml.engine.evaluate import load_run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ers", action="store_true", help="also time the published ERS profile")
    arguments = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    print("| run | part | passes/query | seconds | seconds per 1000 queries |")
    print("| --- | --- | --- | --- | --- |")
    for path in arguments.runs:
        loaded = load_run(path, device="cpu")
        size = loaded.splits.test.image_shape[-1] if len(loaded.splits.test.image_shape) == 3 else 28
        parts = [("auto (3 eps + checks)", AttackSpec(max_queries=arguments.queries))]
        if arguments.ers:
            parts.append(("ERS (published profile)", AttackSpec(attacks=(), max_queries=arguments.queries, probe_queries=0,
                                                                sanity_checks=False, ers=ers_spec(size))))
        for name, spec in parts:
            started = time.perf_counter()
            report = evaluate_robustness(loaded.model, loaded.splits.test, spec, progress=False)
            seconds = time.perf_counter() - started
            queries = report.settings.queries
            passes = report.passes_per_query
            passes += sum(check.passes_per_query * check.probe / queries for check in report.convergence.values())
            if report.ers:
                passes += sum(row.passes_per_query for row in report.ers.rows)
            print(f"| {path} | {name} | {passes:.0f} | {seconds:.0f} | {1000 * seconds / queries:.0f} |", flush=True)


if __name__ == "__main__":
    main()
