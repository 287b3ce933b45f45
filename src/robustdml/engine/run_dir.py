"""One run = one directory: config.yaml, checkpoints/, metrics.jsonl, tb/ (TensorBoard), reports.

A run directory is recognised by the marker robustdml writes into it when it creates it,
``.robustdml-run`` (JSON ``{"format": "robustdml-run", "version": 1}``), never by a file name that any
project may hold. Run directories of releases before the marker (``config.yaml`` and ``checkpoints/``,
no marker) still open for evaluate, attack, report and resume, and get their marker the next time a
robustdml command locks them for writing.

``--overwrite`` (:meth:`RunDirectory.create`) deletes only a run directory, and only the entries robustdml
writes there (:data:`OWN_ENTRIES`: config.yaml, checkpoints/, metrics.jsonl, tb/, results.json,
evaluation*.json, robustness*/ with the figures attack writes into them, the lock, the marker and
robustdml's own temporaries); anything else in it stays. A folder without the marker is overwritten only
when it is a run of an earlier release: its config.yaml reads as a robustdml TrainConfig AND it has a
checkpoints/ folder. Anything else (a project folder with its own config.yaml) is refused.

A run directory belongs to one process at a time: :class:`RunLock` holds an exclusive ``flock`` on
``RUN_DIR/.lock`` (opened with ``O_NOFOLLOW``: a symlink there is refused, never written through) for the
whole train / attack / evaluate (the kernel releases it when the process dies, however it dies) and
writes who holds it into the file, so a second process fails at once naming the holder. Taking the lock
of an existing run for writing also removes the temporaries a killed writer left behind. Every file is
written through :mod:`robustdml.files` (unique temporary + rename), into real folders of the run only.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import fnmatch
import json
import math
import os
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from robustdml.engine.run_marker import (LOCK_FILE, MARKER, OWN_ENTRIES, RunDirectoryError, is_legacy_run,
                                         is_own_temporary, remove_entry, remove_orphaned_temporaries, run_kind,
                                         write_marker)
from robustdml.files import atomic_write_json, atomic_write_text, open_for_append, real_subfolder

__all__ = ["RunDirectory", "RunDirectoryError", "RunLock", "lock_run_dir"]

class RunLock:
    """Exclusive ownership of a run directory while the ``with`` block runs (``create``: make the directory
    if it is missing, for a new run).

    Re-entrant within one process (a command that trains and then evaluates holds it once); another
    process gets a RunDirectoryError naming the holder (pid, host, command, start time). Locking an
    existing run (not ``create``) is locking it for writing: a run of an earlier release gets its marker
    and orphaned temporaries are removed.
    """

    FILE = LOCK_FILE
    _held: Dict[Path, List[Any]] = {}  # resolved path -> [fd, depth] of the locks this process holds

    def __init__(self, path, command: Optional[str] = None, create: bool = False):
        self.path = Path(path)
        self.command = command or " ".join(["robustdml", *sys.argv[1:]])
        self.create = create
        self._made: List[Path] = []  # the folders this lock created (for a new run), innermost last

    @property
    def key(self) -> Path:
        return self.path.resolve()

    def acquire(self) -> "RunLock":
        if self.key in RunLock._held:
            RunLock._held[self.key][1] += 1
            return self
        if self.create:
            self._make_directory()
        elif not self.path.is_dir():
            raise RunDirectoryError(f"{self.path} is not a run directory: it does not exist")
        fd = self._open_lock_file()
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
        if not self.create:
            try:
                self._prepare_for_writing()
            except BaseException:
                self.release()
                raise
        return self

    def _make_directory(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"--output {self.path} is a file, not a directory; choose another --output")
        self._made = [folder for folder in [self.path, *self.path.parents] if not folder.exists()][::-1]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunDirectoryError(f"--output {self.path}: a part of the path is a file, not a directory; choose "
                                    "another --output") from None

    def _open_lock_file(self) -> int:
        lock = self.path / self.FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise RunDirectoryError(f"{lock} is a symbolic link (to {os.readlink(lock)}); robustdml never writes "
                                        f"through one: remove it (rm {lock}) and run the command again") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunDirectoryError(f"{lock} is not a regular file; remove it and run the command again")
        return fd

    def _prepare_for_writing(self) -> None:
        kind = run_kind(self.path)
        if kind == "legacy":
            write_marker(self.path)
        if kind:
            remove_orphaned_temporaries(self.path)

    def release(self, failed: bool = False) -> None:
        """Release the lock (``failed``: the block raised, see :meth:`_remove_if_unused`)."""
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
            if failed:
                self._remove_if_unused()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _remove_if_unused(self) -> None:
        """Remove the folders this lock made when nothing but the lock was written into them (the command failed
        before it created the run): a failed command leaves no half-made run directory behind."""
        if not self._made or any(entry.name != self.FILE for entry in self.path.iterdir()):
            return
        with contextlib.suppress(OSError):
            (self.path / self.FILE).unlink()
            for folder in reversed(self._made):
                folder.rmdir()

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
        self.release(failed=exc_info[0] is not None)


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
    def check_new(cls, path, overwrite: bool = False) -> bool:
        """Whether a new run may be created in ``path`` (True: it holds a run ``overwrite`` will replace), else a
        RunDirectoryError saying why; reads only, so it runs before the lock file is made in a folder."""
        run = cls(Path(path))
        if run.path.exists() and not run.path.is_dir():
            raise RunDirectoryError(f"--output {run.path} is a file, not a directory; choose another --output")
        contents = run.contents()
        if not contents:
            return False
        kind = run_kind(run.path)
        if not overwrite:
            raise RunDirectoryError(
                f"{run.path} already holds {'a run' if kind else 'files'} "
                f"({', '.join(sorted(p.name for p in contents)[:5])}); "
                f"continue it with --resume {run.path}, replace it with --overwrite, or choose another --output")
        if kind != "marked" and not is_legacy_run(run.path):
            raise RunDirectoryError(
                f"--overwrite: {run.path} is not a run directory (no {MARKER} marker, and not a run of an earlier "
                f"release, which has a {cls.CONFIG} robustdml can read and a checkpoints/ folder); refusing to "
                "delete files robustdml did not write; choose another --output")
        return True

    @classmethod
    def create(cls, output: Optional[str], name_parts: List[str], root: str = "runs",
               overwrite: bool = False) -> "RunDirectory":
        """A new run in ``output`` (default runs/<time>-<parts>), marked as a run directory: the directory must be
        empty or new; ``overwrite`` first deletes robustdml's entries of an existing run directory (never a folder
        that is not one, see the module docstring). Call it while holding the directory's RunLock."""
        run = cls(Path(output) if output else cls.default_path(name_parts, root))
        if cls.check_new(run.path, overwrite):
            run.remove_own_entries()
        run.path.mkdir(parents=True, exist_ok=True)
        write_marker(run.path)
        real_subfolder(run.path, "checkpoints")
        return run

    @classmethod
    def open(cls, path: Path) -> "RunDirectory":
        path = Path(path)
        kind = run_kind(path)
        if kind is None:
            if (path / cls.CONFIG).is_file():
                raise RunDirectoryError(f"{path} is not a run directory: it has no {MARKER} marker and no checkpoints/ "
                                        "folder")
            raise RunDirectoryError(f"{path} is not a run directory: {path / cls.CONFIG} is missing")
        if not (path / cls.CONFIG).is_file():
            raise RunDirectoryError(f"{path} is a run directory without its {cls.CONFIG} (the run stopped before "
                                    "writing it, or it was deleted): start it again with --overwrite")
        return cls(path)

    def contents(self) -> List[Path]:
        """Everything in the directory but its lock file."""
        if not self.path.is_dir():
            return []
        return [entry for entry in self.path.iterdir() if entry.name != RunLock.FILE]

    def remove_own_entries(self) -> List[str]:
        """Delete the entries robustdml writes (OWN_ENTRIES and its temporaries) but the lock; returns their names."""
        removed = []
        for entry in sorted(self.contents()):
            own = any(fnmatch.fnmatch(entry.name, pattern) for pattern in OWN_ENTRIES)
            if own or is_own_temporary(entry.name):
                remove_entry(entry)
                removed.append(entry.name)
        return removed

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

    def subfolder(self, name: str) -> Path:
        """The run's sub-folder ``name`` (checkpoints, tb) as a real folder inside it (created when missing)."""
        return real_subfolder(self.path, name)

    def remove_reports(self) -> List[str]:
        """Delete the reports computed from this run's checkpoints; returns their names."""
        removed = []
        for pattern in self.REPORT_PATTERNS:
            for entry in sorted(self.path.glob(pattern)):
                remove_entry(entry)
                removed.append(entry.name)
        return removed

    def log_metrics(self, record: Dict[str, Any]) -> None:
        """Append one JSON line (never through a symlink); flushed at once so a crash loses nothing already logged."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open_for_append(self.path / self.METRICS) as handle:
            handle.write(json.dumps(clean) + "\n")

    def read_metrics(self) -> List[Dict[str, Any]]:
        """The metrics rows; a line that is not JSON (a write cut short by a kill or a full disk) is skipped with
        a warning naming the file."""
        path = self.path / self.METRICS
        if not path.is_file():
            return []
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                print(f"warning: {path}: line {number} is not valid JSON (a write cut short?); skipped it",
                      file=sys.stderr)
        return rows

    def read_results(self) -> Dict[str, Any]:
        """results.json; a null metric (written for NaN) reads as NaN: not measured."""
        try:
            results = json.loads(self.results_path.read_text())
        except ValueError as error:
            raise RunDirectoryError(f"{self.results_path} is not valid JSON ({error}): restore it, or train the run "
                                    "again") from None
        return {key: math.nan if value is None else value for key, value in results.items()}

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
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        return dropped

    def write_json(self, name: str, payload: Dict[str, Any]) -> Path:
        """Write ``name`` atomically (robustdml.files); NaN/inf become null (JSON has no NaN)."""
        return atomic_write_json(self.path / name, payload)
