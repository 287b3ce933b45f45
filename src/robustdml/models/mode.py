"""Run a model in eval() for a while and give it back in the mode it had.

Attacks, clean target embeddings inside defenses, evaluation and the trainer's collapse check all
need eval-mode outputs (BatchNorm running statistics, no dropout) in the middle of training; the
caller's train/eval mode must come back afterwards, also when the block raises.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval() inside the block; its previous train/eval mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
