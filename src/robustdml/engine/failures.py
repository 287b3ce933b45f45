"""What a command says when a run cannot go on: runtime failures (disk full, out of memory) and Ctrl-C.

User errors (a bad value, a missing file) are raised where they are found, naming the field and the
fix; these are the failures of a run that was valid, and what they say is where its last good
checkpoint is and how to continue from it.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Optional

import torch


class RunFailed(RuntimeError):
    """A valid run stopped on a runtime failure; the message says where the last good checkpoint is."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``message`` says what was kept and how to continue."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EIO: "an I/O error occurred"}


def runtime_failure(error: BaseException) -> Optional[str]:
    """A short description when ``error`` is a failure of the machine rather than of the input, else None."""
    if isinstance(error, MemoryError) or isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return "out of memory"
    if isinstance(error, RuntimeError) and any(text in str(error) for text in ("out of memory",
                                                                               "can't allocate memory")):
        return "out of memory"
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
        return _DISK_ERRNOS.get(error.errno, "an operating-system error occurred")
    if isinstance(error, RuntimeError) and "No space left on device" in str(error):  # torch's writers
        return _DISK_ERRNOS[errno.ENOSPC]
    return None


def resume_hint(run_path: Path) -> str:
    """Where the last good checkpoint of the run in ``run_path`` is and how to continue from it."""
    last = Path(run_path) / "checkpoints" / "last.pt"
    if not (Path(run_path) / "config.yaml").is_file():
        return f"nothing was written to {run_path} yet; run the same command again"
    if last.is_file():
        return f"the last good checkpoint is {last}; continue with `robustdml train --resume {run_path}`"
    return (f"no checkpoint was written yet; `robustdml train --resume {run_path}` starts it again from the "
            "beginning")
