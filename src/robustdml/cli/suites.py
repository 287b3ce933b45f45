"""``robustdml benchmark`` (a whole suite, one report) and ``robustdml data`` (fetch or locate a dataset)."""

from __future__ import annotations

import sys
from typing import List


def add_benchmark_parser(sub) -> None:
    from robustdml.reporting.suites import SUITES

    parser = sub.add_parser("benchmark", help="run a whole experiment protocol and write one report directory")
    parser.add_argument("suite", choices=SUITES.names())
    parser.add_argument("--full", action="store_true", help="paper-sized setting (default: CPU-sized)")
    parser.add_argument("--eta", type=int, help="PGD steps of the training adversaries (robrank-fashion: of its "
                        "equal-cost runs; the published runs keep eta 32)")
    parser.add_argument("--epochs", type=int, help="override every run's epochs")
    parser.add_argument("--runs", help="comma-separated names of the suite's runs to do (default: all)")
    parser.add_argument("--output", help="report directory (default reports/<suite>)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args) -> int:
    from robustdml.reporting.runner import run_suite
    from robustdml.reporting.suites import build_suite, select_runs

    if args.eta is not None and args.eta < 1:
        raise ValueError(f"--eta must be >= 1, got {args.eta}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    suite = build_suite(args.suite, full=args.full, eta=args.eta)
    if args.runs:
        suite = select_runs(suite, args.runs.split(","))
    overrides = {"epochs": args.epochs} if args.epochs is not None else {}
    command = " ".join(["robustdml benchmark", args.suite] + (["--full"] if args.full else [])
                       + [f"--{name} {value}" for name, value in (("eta", args.eta), ("epochs", args.epochs),
                                                                   ("runs", args.runs)) if value])
    folder = run_suite(suite, args.output or f"reports/{args.suite}", device=args.device,
                       progress=not args.no_progress, overrides=overrides, command=command)
    print((folder / "report.md").read_text())
    print(f"report written to {folder}/report.md and report.html")
    return 0


def add_data_parser(sub) -> None:
    parser = sub.add_parser("data", help="fetch a dataset (checksum-verified download), or say where to get it")
    parser.add_argument("name", nargs="?", help="dataset name")
    parser.add_argument("--root", "--data-root", dest="root",
                        help="the dataset's folder (what --data-root takes; default ./data/<dataset>)")
    parser.add_argument("--no-download", action="store_true", help="only check whether the dataset is there")
    parser.add_argument("--list", action="store_true", help="list dataset names")
    parser.set_defaults(handler=_cmd_data)


def _cmd_data(args) -> int:
    from robustdml.data import DATASETS, fetch

    if args.list or not args.name:
        print("\n".join(DATASETS.names()))
        return 0
    lines: List[str] = []
    ready = fetch(args.name, root=args.root, report=lines.append, allow_download=not args.no_download)
    for line in lines if ready else lines[:-1]:
        print(line)
    if not ready:
        print(f"error: {lines[-1]}", file=sys.stderr)
    return 0 if ready else 2
