"""Attack objectives: small functions of embeddings that an engine maximises.

Each builder takes the fixed (detached) reference embeddings it needs and returns an
:class:`Objective`: ``objective(embeddings) -> (B,)``, one value per sample. Any objective works
with any engine. Distances are squared Euclidean on unit embeddings; "pull" objectives return
negative distances. ``objective.select(index)`` is the same objective for a sub-batch: engines
use it to stop attacking samples that are already misranked (per-query early stop).

Who uses what (see :mod:`robustdml.attacks.retrieval` and :mod:`robustdml.attacks.ensemble`):
- ``push``       nearest-neighbour push (Panum et al. Alg. 1), embedding shift (from the clean
                 embedding), QA- / CA- with one candidate / query;
- ``push-many``  QA- with m candidates, CA- with w queries;
- ``pull``       QA+ / CA+ with one candidate / query, single-target attacks, GTM;
- ``pull-many``  QA+ with m candidates, CA+ with w queries, multi-targeted (towards all targets);
- ``pull-mean``  multi-targeted towards the mean of several targets (e.g. a class centre);
- ``margin``     the ranking margin of the default ensemble: nearest positive vs nearest negative;
- ``cosine``     TMA;  ``misrank``  LTM (also the robust-tuple defenses);  ``translocate``  GTT.
"""

from __future__ import annotations

from typing import Callable

import torch

from robustdml.registry import Registry

OBJECTIVES: Registry = Registry("attack objective")


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=-1)


class Objective:
    """``function(embeddings, *targets) -> (B,)`` bound to per-sample targets (first dimension B).

    Calling it evaluates the function; :meth:`select` restricts every target to some rows, so an
    engine can keep attacking only the samples that still need it.
    """

    def __init__(self, function: Callable[..., torch.Tensor], *targets: torch.Tensor):
        self.function = function
        self.targets = tuple(target.detach() for target in targets)

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.function(embeddings, *self.targets)

    def select(self, index: torch.Tensor) -> "Objective":
        return Objective(self.function, *(target[index.to(target.device)] for target in self.targets))

    def __repr__(self) -> str:
        return f"Objective({getattr(self.function, '__name__', self.function)})"


def _push(embeddings, targets):
    return squared_distance(embeddings, targets)


def _pull(embeddings, targets):
    return -squared_distance(embeddings, targets)


def _pull_many(embeddings, targets):
    return -squared_distance(embeddings[:, None, :], targets).mean(dim=1)


def _push_many(embeddings, targets):
    return squared_distance(embeddings[:, None, :], targets).mean(dim=1)


def _cosine(embeddings, targets):
    return (torch.nn.functional.normalize(embeddings, dim=-1) * targets).sum(dim=-1)


def _misrank(embeddings, positives, negatives):
    return squared_distance(embeddings, positives) - squared_distance(embeddings, negatives)


def _translocate(embeddings, top1, keep):
    return squared_distance(embeddings, top1) - squared_distance(embeddings[:, None, :], keep).mean(dim=1)


def _nearest(embeddings, targets):
    """min_t ||e - t||^2 over (B, T, E) targets, with a batched matrix product."""
    cross = torch.bmm(targets, embeddings[:, :, None]).squeeze(2)                 # (B, T)
    return (embeddings.pow(2).sum(dim=1, keepdim=True) - 2 * cross + targets.pow(2).sum(dim=2)).amin(dim=1)


def _margin(embeddings, positives, negatives):
    return _nearest(embeddings, positives) - _nearest(embeddings, negatives)


def push_from(targets: torch.Tensor) -> Objective:
    """Maximise the distance to one target per sample (NN attack, embedding shift, QA-/CA-)."""
    return Objective(_push, targets)


def pull_to(targets: torch.Tensor) -> Objective:
    """Minimise the distance to one target per sample (targeted attacks, QA+/CA+)."""
    return Objective(_pull, targets)


def pull_to_many(targets: torch.Tensor) -> Objective:
    """Minimise the mean distance to several targets per sample, ``targets``: (B, T, E) (multi-targeted)."""
    return Objective(_pull_many, targets)


def push_from_many(targets: torch.Tensor) -> Objective:
    return Objective(_push_many, targets)


def cosine_to(targets: torch.Tensor) -> Objective:
    """Maximise cosine similarity to a target (targeted mismatch attack, TMA)."""
    return Objective(_cosine, torch.nn.functional.normalize(targets.detach(), dim=-1))


def misrank(positives: torch.Tensor, negatives: torch.Tensor) -> Objective:
    """Learning-to-misrank (Wang et al. 2020): push the nearest same-class item away and pull the
    nearest other-class item closer: maximise d(q', p) - d(q', n)."""
    return Objective(_misrank, positives, negatives)


def pull_to_mean(targets: torch.Tensor) -> Objective:
    """Minimise the distance to the mean of several targets per sample, ``targets``: (B, T, E)
    (multi-targeted towards a class centre, as MDProp's multi-targeted adversaries do)."""
    return Objective(_pull, targets.detach().mean(dim=1))


def translocate(top1: torch.Tensor, keep: torch.Tensor) -> Objective:
    """Greedy top-1 translocation (RobRank's GTT, our reading): move the current top-1 away while
    staying close to the query's next neighbours ``keep`` ((B, E) or (B, K, E)), so that the
    top-1 drops out of the top-k but the rest of the ranking barely changes:
    maximise d(q', top1) - mean_j d(q', keep_j)."""
    return Objective(_translocate, top1, keep[:, None, :] if keep.dim() == 2 else keep)


def ranking_margin(positives: torch.Tensor, negatives: torch.Tensor) -> Objective:
    """The retrieval analogue of the CW / DLR margin: maximise

        min_p d(q', p) - min_n d(q', n)          positives (B, P, E), negatives (B, N, E),

    which is > 0 exactly when some negative ranks before every positive (R@1 broken, when the
    sets hold the candidates that matter). Only the currently nearest positive and negative get
    gradient, so the attack always works on the pair that decides the top-1."""
    return Objective(_margin, positives, negatives)


for _name, _builder in [("push", push_from), ("pull", pull_to), ("pull-many", pull_to_many),
                        ("push-many", push_from_many), ("pull-mean", pull_to_mean), ("cosine", cosine_to),
                        ("misrank", misrank), ("translocate", translocate), ("margin", ranking_margin)]:
    OBJECTIVES.add(_name, _builder)
