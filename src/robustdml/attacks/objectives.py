"""Attack objectives: small functions of embeddings that an engine maximises.

Each builder takes the fixed (detached) reference embeddings it needs and returns
``objective(embeddings) -> (B,)``; any objective works with any engine. Distances are squared
Euclidean on unit embeddings; "pull" objectives return negative distances.

Who uses what (see :mod:`robustdml.attacks.retrieval` for the attacks):
- ``push``       nearest-neighbour push (Panum et al. Alg. 1), embedding shift (from the clean
                 embedding), GTM, QA- / CA- with one candidate / query;
- ``push-many``  QA- with m candidates, CA- with w queries;
- ``pull``       QA+ / CA+ with one candidate / query, single-target attacks;
- ``pull-many``  QA+ with m candidates, CA+ with w queries, multi-targeted (towards all targets);
- ``pull-mean``  multi-targeted towards the mean of several targets (e.g. a class centre);
- ``cosine``     TMA;  ``misrank``  LTM (also the robust-tuple defenses);  ``translocate``  GTT.
"""

from __future__ import annotations

import torch

from robustdml.registry import Registry

OBJECTIVES: Registry = Registry("attack objective")


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=-1)


def push_from(targets: torch.Tensor):
    """Maximise the distance to one target per sample (NN attack, embedding shift, GTM, QA-/CA-)."""
    targets = targets.detach()
    return lambda embeddings: squared_distance(embeddings, targets)


def pull_to(targets: torch.Tensor):
    """Minimise the distance to one target per sample (targeted attacks, QA+/CA+)."""
    targets = targets.detach()
    return lambda embeddings: -squared_distance(embeddings, targets)


def pull_to_many(targets: torch.Tensor):
    """Minimise the mean distance to several targets per sample, ``targets``: (B, T, E) (multi-targeted)."""
    targets = targets.detach()
    return lambda embeddings: -squared_distance(embeddings[:, None, :], targets).mean(dim=1)


def push_from_many(targets: torch.Tensor):
    targets = targets.detach()
    return lambda embeddings: squared_distance(embeddings[:, None, :], targets).mean(dim=1)


def cosine_to(targets: torch.Tensor):
    """Maximise cosine similarity to a target (targeted mismatch attack, TMA)."""
    targets = torch.nn.functional.normalize(targets.detach(), dim=-1)
    return lambda embeddings: (torch.nn.functional.normalize(embeddings, dim=-1) * targets).sum(dim=-1)


def misrank(positives: torch.Tensor, negatives: torch.Tensor):
    """Learning-to-misrank (Wang et al. 2020): push the nearest same-class item away and pull the
    nearest other-class item closer: maximise d(q', p) - d(q', n)."""
    positives, negatives = positives.detach(), negatives.detach()
    return lambda embeddings: squared_distance(embeddings, positives) - squared_distance(embeddings, negatives)


def pull_to_mean(targets: torch.Tensor):
    """Minimise the distance to the mean of several targets per sample, ``targets``: (B, T, E)
    (multi-targeted towards a class centre, as MDProp's multi-targeted adversaries do)."""
    centre = targets.detach().mean(dim=1)
    return lambda embeddings: -squared_distance(embeddings, centre)


def translocate(top1: torch.Tensor, keep: torch.Tensor):
    """Greedy top-1 translocation (RobRank's GTT, our reading): move the current top-1 away while
    staying close to the query's next neighbours ``keep`` ((B, E) or (B, K, E)), so that the
    top-1 drops out of the top-k but the rest of the ranking barely changes:
    maximise d(q', top1) - mean_j d(q', keep_j)."""
    top1, keep = top1.detach(), keep.detach()
    if keep.dim() == 2:
        keep = keep[:, None, :]
    return lambda embeddings: (squared_distance(embeddings, top1)
                               - squared_distance(embeddings[:, None, :], keep).mean(dim=1))


for _name, _builder in [("push", push_from), ("pull", pull_to), ("pull-many", pull_to_many),
                        ("push-many", push_from_many),
                        ("pull-mean", pull_to_mean), ("cosine", cosine_to), ("misrank", misrank),
                        ("translocate", translocate)]:
    OBJECTIVES.add(_name, _builder)
