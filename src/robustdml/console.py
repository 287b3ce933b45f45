"""What every ``robustdml`` command sets up before its work: log verbosity, CPU threads, warning format.

Why a module of its own: these are process-wide settings that belong to the command line, not to the
library (a library never configures logging or torch's thread pool behind its caller's back).

- ``-q``/``-v``: the ``robustdml`` logger's level, INFO by default; each ``-q`` raises it one step (one
  ``-q`` also hides progress bars, see :mod:`robustdml.progress`), each ``-v`` lowers it.
- ``--threads``: torch's intra-op threads; by default the CPUs this process may run on
  (``os.sched_getaffinity``), which on a shared or container machine is often fewer than the cores torch
  would otherwise take.
- Warnings: robustdml's own print as ``warning: <message>`` (its source line is of no use to a user);
  other packages' keep Python's format, whose location helps report them upstream.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def log_level(quiet: int, verbose: int) -> int:
    """INFO by default; each -q one step up (WARNING, ERROR, CRITICAL), each -v one step down (DEBUG)."""
    return min(max(logging.INFO + 10 * (quiet - verbose), logging.DEBUG), logging.CRITICAL)


def configure_logging(quiet: int = 0, verbose: int = 0) -> None:
    logger = logging.getLogger("robustdml")
    logger.setLevel(log_level(quiet, verbose))
    if not any(getattr(handler, "robustdml_cli", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.robustdml_cli = True
        logger.addHandler(handler)
        logger.propagate = False


def _is_ours(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warning: message`` for robustdml's own warnings (hidden by ``-qq``), Python's format for others."""
    if not _is_ours(filename):
        text = warnings.formatwarning(message, category, filename, lineno, line)
    elif logging.getLogger("robustdml").isEnabledFor(logging.WARNING):
        text = f"warning: {message}\n"
    else:
        return
    try:
        (file or sys.stderr).write(text)
    except OSError:  # a closed stream; Python's own showwarning gives up the same way
        pass


def set_threads(threads: int) -> None:
    """torch's intra-op threads (``--threads``); refuses a count below 1."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def configure(quiet: int = 0, verbose: int = 0, threads: int | None = None) -> None:
    """Everything above, as ``robustdml`` does before a command."""
    configure_logging(quiet, verbose)
    warnings.showwarning = show_warning
    set_threads(threads if threads is not None else available_cpus())
