"""What makes a folder a run directory, and which of its entries are robustdml's own.

A run directory carries the marker robustdml writes when it creates it (``.robustdml-run``, JSON
``{"format": "robustdml-run", "version": 1}``). A folder without it is a run of an earlier release
when it holds ``config.yaml`` and ``checkpoints/``; such a run opens as before and gets its marker the
next time it is locked for writing. ``--overwrite`` deletes an unmarked folder only when its config.yaml
also reads as a robustdml TrainConfig (:func:`is_legacy_run`), and deletes only :data:`OWN_ENTRIES`.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import stat
from pathlib import Path
from typing import List, Optional

from robustdml.files import atomic_write_json

CONFIG = "config.yaml"


class RunDirectoryError(Exception):
    """A run directory cannot be used as asked (in use, not empty, not a run); the message says why and what to do."""


MARKER = ".robustdml-run"
MARKER_FORMAT = "robustdml-run"
MARKER_VERSION = 1
LOCK_FILE = ".lock"
# Every entry robustdml writes in a run directory (glob patterns of names): all --overwrite may delete.
OWN_ENTRIES = ("config.yaml", "checkpoints", "metrics.jsonl", "tb", "results.json", "evaluation*.json",
               "robustness*", LOCK_FILE, MARKER)
# The files written through a temporary, per folder: a killed writer's `.NAME.XXXX.tmp` is removed later.
_ROOT_TEMPORARIES = ("config.yaml", "metrics.jsonl", "results.json", "evaluation*.json", MARKER)
_TEMPORARY_OWNERS = {"": _ROOT_TEMPORARIES, "checkpoints": ("last.pt", "best.pt")}


def _read_marker(path: Path) -> bool:
    """Whether ``path`` carries a valid marker; a marker of a newer format version is an error."""
    marker = Path(path) / MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(content, dict) or content.get("format") != MARKER_FORMAT:
        return False
    version = content.get("version")
    if not isinstance(version, int) or version > MARKER_VERSION:
        raise RunDirectoryError(f"{path} is a run directory of a newer robustdml ({marker} has version {version!r}, "
                                f"this release reads version {MARKER_VERSION}); upgrade robustdml")
    return True


def run_kind(path) -> Optional[str]:
    """``"marked"`` (robustdml's marker), ``"legacy"`` (config.yaml + checkpoints/, no marker: a run of an earlier
    release) or None (not a run directory)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if _read_marker(path):
        return "marked"
    if (path / CONFIG).is_file() and (path / "checkpoints").is_dir():
        return "legacy"
    return None


def is_legacy_run(path) -> bool:
    """A folder without the marker that is a run of an earlier release: config.yaml reads as a TrainConfig AND
    checkpoints/ exists. The only unmarked folders --overwrite deletes."""
    from robustdml.engine.config import ConfigError, TrainConfig

    if run_kind(path) != "legacy":
        return False
    try:
        TrainConfig.load(Path(path) / CONFIG, run_directory=True)
    except ConfigError:
        return False
    return True


def enclosing_run(path) -> Optional[Path]:
    """The run directory ``path`` is, or lies inside (None when neither)."""
    for folder in [Path(path).resolve(), *Path(path).resolve().parents]:
        if run_kind(folder):
            return folder
    return None


def refuse_output_in_run(output) -> None:
    """Refuse ``output`` for files of another command (a report) when it is, or lies inside, a run directory:
    its results.json and figures would replace the run's own."""
    run = enclosing_run(output)
    if run is not None:
        where = "a" if run == Path(output).resolve() else "inside a"
        raise RunDirectoryError(f"--output {output} is {where} run directory ({run}): the report would replace the "
                                "run's own files; choose a folder outside it")


def write_marker(path) -> None:
    atomic_write_json(Path(path) / MARKER, {"format": MARKER_FORMAT, "version": MARKER_VERSION})


def remove_entry(entry: Path) -> None:
    """Delete ``entry``; a symlink is removed itself, never what it points to."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def is_own_temporary(name: str, owners=_ROOT_TEMPORARIES) -> bool:
    """Whether ``name`` is a temporary robustdml writes for one of the files ``owners`` (glob patterns)."""
    return name.endswith(".tmp") and any(fnmatch.fnmatch(name, f".{pattern}.*tmp") for pattern in owners)


def remove_orphaned_temporaries(path) -> List[str]:
    """Delete the temporaries (``.last.pt.XXXX.tmp``, ``.config.yaml.XXXX.tmp``, ...) a killed writer left in the
    run directory ``path``; only call it while holding the run's lock. Returns their names."""
    removed = []
    for sub, owners in _TEMPORARY_OWNERS.items():
        folder = Path(path) / sub if sub else Path(path)
        if folder.is_symlink() or not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if is_own_temporary(entry.name, owners) and not stat.S_ISDIR(entry.lstat().st_mode):
                entry.unlink()
                removed.append(entry.name)
    return removed
