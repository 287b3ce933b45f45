"""Checkpoints that survive crashes, cannot run code when loaded, and are refused when damaged.

Writes go through :func:`robustdml.files.atomic_file` (a unique temporary in the same folder, fsync'ed,
renamed over the target): a SIGKILL at any moment leaves either the old or the new checkpoint, never a
torn one. Every checkpoint carries the SHA-256 of its contents (:func:`state_digest`, over every tensor
and value of the saved state, stored beside them under ``sha256``), checked on load: a flipped bit or a
partial copy is refused naming the file, never loaded silently (torch's zip reader does not check its
CRCs). Loads use ``weights_only=True``, so a malicious pickle cannot execute code; checkpoints therefore
hold only tensors and plain Python containers.

torch reports a full disk while it writes as a ``RuntimeError`` ("file write failed", "unexpected pos");
:func:`save_checkpoint` turns it into the ``OSError`` it is (ENOSPC when the folder has less free
space than the checkpoint needs), so it reads as a runtime failure, not as a bug.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from robustdml.files import atomic_file

DIGEST_KEY = "sha256"
# Config fields that decide the shapes of a model's weights: named when a checkpoint does not fit.
SHAPE_FIELDS = ("dataset", "model", "embedding_dim", "image_size", "defense", "defense_options")
# What torch's zip writer says when a write to the file fails (a full disk, an I/O error).
_WRITER_FAILURES = ("file write failed", "unexpected pos", "PytorchStreamWriter failed", "No space left")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated, unsafe or does not fit its run; the message names the file."""


def state_digest(state: Dict[str, Any]) -> str:
    """SHA-256 of every tensor (dtype, shape, bytes) and value of ``state`` but its digest, in a canonical
    order (mapping keys sorted), so the same state always gives the same digest wherever it was loaded."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)};".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, (str, bytes)):
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{type(value).__name__[0]}{len(data)};".encode())
        digest.update(data)
    else:  # None, bool, int, float (repr is exact and gives nan/inf), torch.dtype
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def _write_failure(error: RuntimeError, folder: Path, needed: int) -> Optional[int]:
    """The errno behind a RuntimeError of torch's writer: ENOSPC when ``folder`` has less free space than the
    checkpoint needs, EIO for another failed write, None when the error is not about writing."""
    try:
        info = os.statvfs(folder)
        free: Optional[int] = info.f_bavail * info.f_frsize
    except OSError:
        free = None
    text = str(error)
    if "No space left" in text or (free is not None and free < needed):
        return errno.ENOSPC
    if any(fragment in text for fragment in _WRITER_FAILURES):
        return errno.EIO
    return None


def save_checkpoint(state: Dict[str, Any], path: Path) -> None:
    """Write ``state`` with its digest to ``path`` atomically; a failed write raises an OSError (ENOSPC, EIO)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**state, DIGEST_KEY: state_digest(state)}
    try:
        with atomic_file(path) as handle:
            torch.save(payload, handle)
    except RuntimeError as error:
        cause = _write_failure(error, path.parent, _tensor_bytes(payload))
        if cause is None:
            raise
        lines = str(error).strip().splitlines()
        raise OSError(cause, f"{os.strerror(cause)} (torch could not write checkpoint {path}: "
                             f"{lines[0] if lines else type(error).__name__})") from error


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
    stored = state.pop(DIGEST_KEY, None)  # checkpoints of releases before digests have none
    if stored is not None and stored != state_digest(state):
        raise CheckpointError(f"checkpoint {path} is damaged: the SHA-256 of its contents differs from the one "
                              "stored when it was written (a flipped bit on disk, or an incomplete copy); use the "
                              "other checkpoint (--checkpoint best|last) or train again")
    return state


def load_model_state(model: torch.nn.Module, state: Dict[str, Any], path: Path, config=None) -> None:
    """Load the checkpoint's weights into ``model`` (built from ``config``, the run's TrainConfig); weights of
    other shapes are a CheckpointError naming the config fields that differ, with both values."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        stored = state.get("config") or {}
        current = config.to_dict() if config is not None else {}
        differences = [f"{name} is {stored[name]!r} in the checkpoint but {current[name]!r} in config.yaml"
                       for name in SHAPE_FIELDS if name in stored and name in current and stored[name] != current[name]]
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = "; ".join(differences) or next((line for line in lines if "size mismatch" in line),
                                                lines[-1] if lines else type(error).__name__)
        raise CheckpointError(f"checkpoint {path} does not fit the model its run's config describes: {detail}; "
                              "restore config.yaml to what the run was trained with, or train a new run") from None
