"""``robustdml`` command line: train | evaluate | attack | certify | benchmark | report | data.

Flags override the YAML given with ``--config``, which overrides per-dataset defaults. Every
invalid value is rejected before any work starts, with the field named. Exit status: 0 done,
2 a user error (one line naming the file/field/value and the fix), 1 a runtime failure (one line,
with where the last good checkpoint is) or an internal error, 130 interrupted; ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import List, Optional

from robustdml.cli.attack import add_attack_parser, add_report_parser
from robustdml.cli.certify import add_certify_parser
from robustdml.cli.suites import add_benchmark_parser, add_data_parser
from robustdml.cli.train import add_evaluate_parser, add_train_parser


def _add_console_flags(parser, default) -> None:
    """-q/-v/--threads (robustdml.console), on the main parser and again on every command."""
    parser.add_argument("-q", "--quiet", action="count", default=default(0),
                        help="less output: -q hides progress bars and notes, -qq warnings too")
    parser.add_argument("-v", "--verbose", action="count", default=default(0), help="more output (debug notes)")
    parser.add_argument("--threads", type=int, default=default(None), metavar="N",
                        help="CPU threads for torch (default: the CPUs this process may use)")


def build_parser() -> argparse.ArgumentParser:
    from robustdml.version import __version__

    parser = argparse.ArgumentParser(prog="robustdml", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustdml {__version__}")
    _add_console_flags(parser, default=lambda value: value)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_attack_parser(sub)
    add_certify_parser(sub)
    add_benchmark_parser(sub)
    add_report_parser(sub)
    add_data_parser(sub)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for name, command in sub.choices.items():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
        _add_console_flags(command, default=lambda value: argparse.SUPPRESS)
        if name != "data":
            command.add_argument("--faiss", choices=("auto", "gpu", "cpu"), default="auto",
                                 help="where faiss kNN search and k-means run (default auto: GPU when "
                                      "faiss-gpu is installed and sees one)")
    return parser


# What Ctrl-C leaves behind, per command (train says where its checkpoint is: RunInterrupted).
INTERRUPTED = {
    "train": "interrupted before the run directory was written; nothing to resume, run the command again",
    "evaluate": "interrupted; no evaluation was written",
    "attack": "interrupted; no report was written (attack keeps no partial state: run the command again)",
    "certify": "interrupted; no certificate was written: run the command again",
    "benchmark": "interrupted; run the same `robustdml benchmark` command again to continue (finished runs and "
                 "evaluations are kept, an interrupted run resumes from its last checkpoint)",
    "report": "interrupted; the report may be incomplete: run the command again",
    "data": "interrupted; partial downloads were removed; run the command again",
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _classify(error: BaseException):
    """(exit status, message line) for an exception that ended a command."""
    from robustdml.data.download import DownloadError
    from robustdml.engine.checkpoint import CheckpointError
    from robustdml.engine.config import ConfigError
    from robustdml.engine.failures import RunFailed, runtime_failure
    from robustdml.engine.run_dir import RunDirectoryError
    from robustdml.engine.trainer import TrainingDiverged
    from robustdml.registry import UnknownNameError

    if isinstance(error, (RunFailed, TrainingDiverged, DownloadError)):
        return 1, f"error: {_one_line(error)}"
    if isinstance(error, (ConfigError, UnknownNameError, RunDirectoryError, CheckpointError, FileNotFoundError,
                          ValueError)):
        return 2, f"error: {_one_line(error)}"
    failure = runtime_failure(error)
    if failure:
        return 1, f"error: {failure}: {_one_line(error)}"
    return 1, (f"internal error: {type(error).__name__}: {_one_line(error)} (a bug in robustdml: run the command "
               "again with --debug for the traceback and report it)")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        from robustdml.console import configure

        configure(quiet=args.quiet, verbose=args.verbose, threads=args.threads)
        if hasattr(args, "faiss"):
            from robustdml.evaluation.faiss_backend import set_placement

            set_placement(args.faiss)
        return args.handler(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            traceback.print_exc()
        print(getattr(interrupt, "message", None) or INTERRUPTED.get(args.command, "interrupted"), file=sys.stderr)
        return 130
    except Exception as error:  # every failure ends in one line; --debug adds the traceback
        if debug:
            traceback.print_exc()
        status, line = _classify(error)
        print(line, file=sys.stderr)
        return status
