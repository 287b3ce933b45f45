"""One run = one directory: config.yaml, checkpoints/, metrics.jsonl, tb/ (TensorBoard), plots, reports.

A run directory belongs to one process at a time: :class:`RunLock` holds an exclusive ``flock`` on
``RUN_DIR/.lock`` for the whole train / attack / evaluate (the kernel releases it when the process
dies, however it dies) and writes who holds it into the file, so a second process fails at once
naming the holder. A new run refuses a directory that already holds anything, unless it is told to
resume the run there or to overwrite it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import math
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


class RunDirectoryError(Exception):
    """A run directory cannot be used as asked (in use, not empty, not a run); the message says why and what to do."""


class RunLock:
    """Exclusive ownership of a run directory while the ``with`` block runs (``create``: make the directory
    if it is missing, for a new run).

    Re-entrant within one process (a command that trains and then evaluates holds it once); another
    process gets a RunDirectoryError naming the holder (pid, host, command, start time).
    """

    FILE = ".lock"
    _held: Dict[Path, List[Any]] = {}  # resolved path -> [fd, depth] of the locks this process holds

    def __init__(self, path, command: Optional[str] = None, create: bool = False):
        self.path = Path(path)
        self.command = command or " ".join(["robustdml", *sys.argv[1:]])
        self.create = create

    @property
    def key(self) -> Path:
        return self.path.resolve()

    def acquire(self) -> "RunLock":
        if self.key in RunLock._held:
            RunLock._held[self.key][1] += 1
            return self
        if self.create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise RunDirectoryError(f"{self.path} is not a run directory: it does not exist")
        fd = os.open(self.path / self.FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryError(f"{self.path} is in use by {self.holder()}; wait for it to finish or stop it "
                                    "(a run directory belongs to one process at a time)") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        RunLock._held[self.key] = [fd, 1]
        return self

    def release(self) -> None:
        entry = RunLock._held.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            fd = RunLock._held.pop(self.key)[0]
            try:
                os.ftruncate(fd, 0)  # no stale holder once released
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder(self) -> str:
        """Who holds the lock, from what the holder wrote into the lock file."""
        try:
            info = json.loads((self.path / self.FILE).read_text())
            return (f"process {info['pid']} on {info['host']} (`{info['command']}`, running since "
                    f"{info['started']})")
        except (OSError, ValueError, KeyError):
            return "another process (it has not said which yet)"

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def lock_run_dir(path, command: Optional[str] = None) -> RunLock:
    """``with lock_run_dir(RUN_DIR):`` hold the existing run directory RUN_DIR for the block (see RunLock)."""
    RunDirectory.open(path)
    return RunLock(path, command)


class RunDirectory:
    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    RESULTS = "results.json"
    LAST = "checkpoints/last.pt"
    BEST = "checkpoints/best.pt"
    # Reports computed from a run's checkpoints (evaluate, attack, report galleries): stale once the
    # checkpoints change, so --overwrite and continuing a finished run remove them.
    REPORT_PATTERNS = ("results.json", "evaluation*.json", "robustness*")

    def __init__(self, path: Path):
        self.path = Path(path)

    @staticmethod
    def default_path(name_parts: List[str], root: str = "runs") -> Path:
        return Path(root) / "-".join([time.strftime("%Y%m%d-%H%M%S")] + name_parts)

    @classmethod
    def create(cls, output: Optional[str], name_parts: List[str], root: str = "runs",
               overwrite: bool = False) -> "RunDirectory":
        """A new run in ``output`` (default runs/<time>-<parts>): the directory must be empty or new;
        ``overwrite`` empties an existing run directory first (never a folder that is not a run).
        Call it while holding the directory's RunLock."""
        run = cls(Path(output) if output else cls.default_path(name_parts, root))
        if run.path.exists() and not run.path.is_dir():
            raise RunDirectoryError(f"--output {run.path} is a file, not a directory; choose another --output")
        contents = run.contents()
        if contents:
            if not overwrite:
                what = "a run" if run.config_path.is_file() else "files"
                raise RunDirectoryError(
                    f"{run.path} already holds {what} ({', '.join(sorted(p.name for p in contents)[:5])}); "
                    f"continue it with --resume {run.path}, replace it with --overwrite, or choose another --output")
            if not run.config_path.is_file():
                raise RunDirectoryError(f"--overwrite: {run.path} is not a run directory (no {cls.CONFIG}); refusing "
                                        "to delete files robustdml did not write; choose another --output")
            for entry in contents:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        (run.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDirectory":
        path = Path(path)
        if not (path / cls.CONFIG).is_file():
            raise RunDirectoryError(f"{path} is not a run directory: {path / cls.CONFIG} is missing")
        return cls(path)

    def contents(self) -> List[Path]:
        """Everything in the directory but its lock file."""
        if not self.path.is_dir():
            return []
        return [entry for entry in self.path.iterdir() if entry.name != RunLock.FILE]

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def results_path(self) -> Path:
        return self.path / self.RESULTS

    @property
    def last_checkpoint(self) -> Path:
        return self.path / self.LAST

    @property
    def best_checkpoint(self) -> Path:
        return self.path / self.BEST

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tb"

    def remove_reports(self) -> List[str]:
        """Delete the reports computed from this run's checkpoints; returns their names."""
        removed = []
        for pattern in self.REPORT_PATTERNS:
            for entry in sorted(self.path.glob(pattern)):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(entry.name)
        return removed

    def log_metrics(self, record: Dict[str, Any]) -> None:
        """Append one JSON line; flushed at once so a crash loses nothing already logged."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path / self.METRICS, "a") as handle:
            handle.write(json.dumps(clean) + "\n")

    def read_metrics(self) -> List[Dict[str, Any]]:
        path = self.path / self.METRICS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> int:
        """Keep the rows a run resumed at ``step`` has already logged: drop rows past that step (logged after
        the checkpoint was written) and final rows (the run is about to go on). Returns how many were dropped.
        A torn last line (killed mid-write) is dropped too."""
        path = self.path / self.METRICS
        if not path.is_file():
            return 0
        kept, dropped = [], 0
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                dropped += bool(line.strip())
                continue
            if row.get("final") or row.get("step", 0) > step:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)
        return dropped

    def write_json(self, name: str, payload: Dict[str, Any]) -> Path:
        """Write ``name`` atomically (temporary file + rename)."""
        target = self.path / name
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return target
