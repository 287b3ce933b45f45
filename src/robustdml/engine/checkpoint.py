"""Checkpoints that survive crashes and cannot run code when loaded.

Writes go to a temporary file in the same directory, are fsync'ed, then renamed over the target:
a SIGKILL at any moment leaves either the old or the new checkpoint, never a torn one. Loads use
``weights_only=True``, so a malicious pickle cannot execute code; checkpoints therefore hold only
tensors and plain Python containers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated or unsafe; the message names the file."""


def save_checkpoint(state: Dict[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was not written completely; use the other "
                              "checkpoint (--checkpoint best|last) or train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        lines = str(error).strip().splitlines()
        raise CheckpointError(
            f"could not load checkpoint {path}: {type(error).__name__}: {lines[0] if lines else 'no details'} "
            "(the file is corrupt or truncated, or holds objects other than tensors and plain containers, "
            "which robustdml refuses to unpickle)"
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a robustdml checkpoint (no 'model' entry)")
    return state
