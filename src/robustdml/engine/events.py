"""TensorBoard event files of a run, when TensorBoard is installed (``pip install 'robustdml[tensorboard]'``).

Why optional: TensorBoard pulls in a large dependency tree that evaluation-only users never need.
Without it a run trains exactly the same and keeps ``metrics.jsonl`` (every scalar TensorBoard would
show); one warning says how to get the event files.
"""

from __future__ import annotations

import warnings
from pathlib import Path


class NoEvents:
    """Stands in for ``SummaryWriter`` when TensorBoard is missing: accepts the calls, writes nothing."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def event_writer(log_dir: Path):
    """A ``SummaryWriter`` into ``log_dir``, or :class:`NoEvents` with one warning if TensorBoard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("TensorBoard is not installed, so this run writes no tb/ event files (metrics.jsonl has "
                      "every scalar); pip install 'robustdml[tensorboard]' to get them", stacklevel=2)
        return NoEvents()
    return SummaryWriter(log_dir=str(log_dir))
