"""Progress bars that redraw on a terminal and write one line per stage anywhere else.

Why: a tqdm bar writes a carriage return at every redraw; in a log file (``make demo > log``, CI, a
batch job) that is thousands of overwritten lines. :func:`progress_bar` takes tqdm's arguments and
returns a real tqdm bar when its stream (stderr) is a terminal, else a :class:`StageLine` that writes
one line when the stage ends (count, time, last postfix) and, for a long stage, one line a minute with
the count and an ETA. Nothing is redrawn. A transient stage (tqdm's ``leave=False``) that ends within
``TRANSIENT_SECONDS`` writes nothing, as its bar would have vanished on a terminal.

Shown unless the caller disables it or the ``robustdml`` logger is set above INFO (the CLI's ``-q``);
a library user who never configures logging still sees the bars. Shared, lowest layer: every layer
may import it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Dict, Iterable, Iterator, Optional, TextIO

from tqdm.auto import tqdm

HEARTBEAT_SECONDS = 60.0
TRANSIENT_SECONDS = 5.0


def bars_wanted() -> bool:
    """False once the ``robustdml`` logger has been set above INFO (``-q``); the default shows bars."""
    level = logging.getLogger("robustdml").level
    return level == logging.NOTSET or level <= logging.INFO


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class StageLine:
    """The non-terminal stand-in for a tqdm bar: the same calls, one line per stage (see module doc)."""

    def __init__(self, iterable: Optional[Iterable] = None, *, desc: str = "", total: Optional[float] = None,
                 initial: float = 0, unit: str = "it", leave: bool = True, file: Optional[TextIO] = None,
                 **_tqdm_only: Any):
        self.iterable, self.desc, self.total, self.unit, self.leave = iterable, desc, total, unit, leave
        self.n = initial
        self.file = file
        self.postfix: Dict[str, Any] = {}
        self.start = self.last_line = time.monotonic()
        self.closed = False
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "StageLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_line >= HEARTBEAT_SECONDS:
            self.last_line = now
            self._write(self._count() + self._eta(now) + self._postfix())

    def set_postfix(self, ordered_dict: Optional[Dict[str, Any]] = None, refresh: bool = True, **values: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **values}

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = time.monotonic() - self.start
        if not self.leave and elapsed < TRANSIENT_SECONDS and self.last_line == self.start:
            return
        self._write(f"{self._count()} in {_duration(elapsed)}{self._postfix()}")

    def _count(self) -> str:
        count = f"{self.n:g}"
        return f"{count}/{self.total:g} {self.unit}" if self.total else f"{count} {self.unit}"

    def _eta(self, now: float) -> str:
        done = self.n
        if not self.total or done <= 0:
            return ""
        remaining = (now - self.start) / done * max(self.total - done, 0)
        return f", about {_duration(remaining)} left"

    def _postfix(self) -> str:
        return "".join(f", {key}={value}" for key, value in self.postfix.items())

    def _write(self, text: str) -> None:
        stream = self.file or sys.stderr
        stream.write(f"{self.desc}: {text}\n" if self.desc else f"{text}\n")
        stream.flush()


def progress_bar(iterable: Optional[Iterable] = None, *, disable: bool = False, file: Optional[TextIO] = None,
                 **tqdm_options: Any):
    """A tqdm bar on a terminal, a :class:`StageLine` elsewhere, a disabled tqdm when not wanted.

    Takes tqdm's keyword arguments (``desc``, ``total``, ``initial``, ``unit``, ``leave``, ...).
    """
    if disable or not bars_wanted():
        return tqdm(iterable, disable=True, **tqdm_options)
    if _is_terminal(file or sys.stderr):
        return tqdm(iterable, file=file, **tqdm_options)
    return StageLine(iterable, file=file, **tqdm_options)


def write_line(text: str) -> None:
    """Print a line without breaking a bar that is being drawn (tqdm.write; plain print elsewhere)."""
    tqdm.write(text)
