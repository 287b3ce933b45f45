"""Writing files inside a run directory without following symlinks and without torn files.

Every file robustdml writes goes to a unique temporary in the target's own folder (``mkstemp``: a
name nobody can have planted a symlink at), is flushed to disk, then renamed over the target with
``os.replace``. A rename replaces the directory entry itself, so a symlink at the target's name is
replaced, never written through, and a crash at any moment leaves the old file or the new one. The
folders written into must be real folders inside the run (:func:`real_subfolder`), and appends open
with ``O_NOFOLLOW`` (:func:`open_for_append`).

The lowest layer of robustdml: this module imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator


class UnsafePathError(ValueError):
    """A path robustdml would write through is a symlink or not a real folder; the message names it."""


def _file_mode() -> int:
    """What ``open()`` would give a new file: 0o666 less the umask (mkstemp alone gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_prefix(name: str) -> str:
    """The prefix of the temporaries written for a file called ``name`` (``.NAME.``, suffix ``.tmp``)."""
    return f".{name}."


@contextlib.contextmanager
def atomic_file(path) -> Iterator[BinaryIO]:
    """``with atomic_file(path) as handle:`` write ``path`` through a unique temporary, then ``os.replace``.

    The temporary is removed when the block fails; the target changes only once everything was written
    and fsync'ed."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), _file_mode())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_file(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None: JSON has no NaN, and a reader takes null for
    "not measured"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def json_text(payload: Any, indent: int = 2, sort_keys: bool = True) -> str:
    """Strict JSON (never a bare NaN) of ``payload``, with a final newline."""
    return json.dumps(json_safe(payload), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def atomic_write_json(path, payload: Any, indent: int = 2, sort_keys: bool = True) -> Path:
    return atomic_write_text(path, json_text(payload, indent=indent, sort_keys=sort_keys))


def real_subfolder(run_path, name: str) -> Path:
    """``run_path/name`` as a real folder inside the run (created when missing); a symlink or a file there
    is refused, naming it, so nothing written into the folder lands outside the run."""
    folder = Path(run_path) / name
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{folder} is a symbolic link (to {os.readlink(folder)}); robustdml writes only into "
                              f"real folders inside the run directory: replace the link by a folder (e.g. move what "
                              f"it points to into {folder})")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"{folder} is a file, not a folder; robustdml needs a folder there: move the file away")
    return folder


def open_for_append(path) -> Any:
    """``path`` opened for appending text, refusing a symlink (``O_NOFOLLOW``) and anything but a regular file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, _file_mode())
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symbolic link; robustdml never writes through one: remove the link "
                                  "(or replace it by the file it points to)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a regular file; move it away")
    return os.fdopen(fd, "a", encoding="utf-8")
