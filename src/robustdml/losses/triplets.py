"""One triplet per anchor, as adversarial defenses perturb them: samplers that follow RobRank's SPC-2
miners, a random pick among mined triplets, and the hardness every hardness-based method measures.

Perturbations are per image, so a defense perturbs one tuple per anchor: these functions bound the cost at
B perturbed images per step, whatever a miner returns.
"""

from __future__ import annotations

from typing import Tuple

import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from robustdml.losses.tuples import pair_anchors, pick_per_row


def triplet_hardness(embeddings: torch.Tensor, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Hardness H(a, p, n) = d(a, p) - d(a, n) (Euclidean, as the triplet loss sees it): the larger,
    the harder; H > -margin means the triplet loss is non-zero."""
    return (embeddings[a] - embeddings[p]).norm(dim=1) - (embeddings[a] - embeddings[n]).norm(dim=1)


def _positive_negative_masks(labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positive, negative) (B, B) masks and the anchors that have both."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchors = (positive.any(dim=1) & (~same).any(dim=1)).nonzero().squeeze(1)
    return positive, ~same, anchors


def random_triplet_per_anchor(labels: torch.Tensor, generator: torch.Generator
                              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One uniformly random (positive, negative) for every anchor that has both, in O(B^2).

    Equivalent to picking one triplet per anchor uniformly from all triplets of the batch, without
    enumerating the O(B^3) triplets (B=256 with 4 classes has 3M of them).
    """
    positive, negative, anchors = _positive_negative_masks(labels)
    positives, negatives = pick_per_row(positive, generator), pick_per_row(negative, generator)
    return anchors, positives[anchors], negatives[anchors]


def sampled_triplet_per_anchor(kind: str, embeddings: torch.Tensor, labels: torch.Tensor,
                               generator: torch.Generator, margin: float = 0.2, pairs: bool = False
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One triplet per anchor, sampled the way RobRank's SPC-2 miners do (robrank/losses/miner.py):

    - ``random`` (``spc2-random``): a random positive and a random negative;
    - ``semihard`` (``spc2-semihard``): a random positive p, a random negative with
      d(a,p) < d(a,n) < d(a,p) + margin, else any negative;
    - ``softhard`` (``spc2-softhard``): a random negative closer than the farthest positive
      (d(a,n) < max_p d(a,p)), else any negative, and a random positive farther than the nearest
      negative (d(a,p) > min_n d(a,n)), else any positive;
    - ``hardest`` (``spc2-hard``): a random positive and the nearest negative.

    Every item with a positive and a negative is an anchor, and "a random positive" is any other item
    of its class. ``pairs=True`` (an SPC-2 batch ``[a0, p0, a1, p1, ...]``, ``sampler: pairs``) is the
    reference exactly: only the pairs' first items are anchors and "a random positive" is the pair's
    second item (softhard's soft positive is still drawn from the whole class, falling back to it).
    """
    positive, negative, anchors = _positive_negative_masks(labels)
    partner = None
    if pairs:
        firsts = pair_anchors(labels)
        anchors = firsts[negative[firsts].any(dim=1)]
        partner = torch.arange(len(labels), device=labels.device) ^ 1  # 2i <-> 2i + 1
    if kind == "random":
        if not pairs:
            return random_triplet_per_anchor(labels, generator)
        return anchors, partner[anchors], pick_per_row(negative, generator)[anchors]
    distances = torch.cdist(embeddings, embeddings)
    if kind == "softhard":
        farthest_positive = distances.masked_fill(~positive, -1.0).amax(dim=1, keepdim=True)
        nearest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1, keepdim=True)
        negatives = pick_per_row(negative & (distances < farthest_positive), generator, negative)
        soft = positive & (distances > nearest_negative)
        if pairs:
            positives = torch.where(soft.any(dim=1), pick_per_row(soft, generator), partner)
        else:
            positives = pick_per_row(soft, generator, positive)
        return anchors, positives[anchors], negatives[anchors]
    positives = partner if pairs else pick_per_row(positive, generator)
    if kind == "semihard":
        reach = distances.gather(1, positives[:, None])
        window = negative & (distances > reach) & (distances < reach + margin)
        negatives = pick_per_row(window, generator, negative)
    elif kind == "hardest":
        negatives = distances.masked_fill(~negative, float("inf")).argmin(dim=1)
    else:
        raise ValueError(f"unknown triplet sampler {kind!r}; valid: {', '.join(TRIPLET_SAMPLERS)}")
    return anchors, positives[anchors], negatives[anchors]


TRIPLET_SAMPLERS = ("random", "semihard", "softhard", "hardest")


def one_index_per_value(values: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Positions of one uniformly random element for every distinct value of ``values`` (ints in
    [0, size)), ordered by value. O(len(values)): no sort of the mined triplets."""
    keys = torch.rand(len(values), generator=generator).to(values.device)
    best = torch.full((size,), -1.0, device=values.device).scatter_reduce(0, values, keys, reduce="amax")
    winners = (keys == best[values]).nonzero().squeeze(1)
    first = torch.full((size,), len(values), dtype=torch.long, device=values.device)
    first.scatter_reduce_(0, values[winners], winners, reduce="amin")  # ties (same float): the first
    return first[first < len(values)]


def one_triplet_per_anchor(embeddings: torch.Tensor, labels: torch.Tensor, miner, generator: torch.Generator
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mine triplets and keep one random triplet per anchor (anchors in increasing order).

    Perturbations are per image, so a defense perturbs one tuple per anchor: this bounds the cost
    at B perturbed images per step, whatever the miner returns. ``miner=None`` (``all``) and a miner
    that finds nothing (e.g. semihard on a well-trained batch) both give a random triplet per anchor.
    """
    if miner is None:
        return random_triplet_per_anchor(labels, generator)
    mined = miner(embeddings, labels)
    if len(mined) == 4:  # a pair miner
        mined = lmu.convert_to_triplets(mined, labels)
    anchors, positives, negatives = mined
    if len(anchors) == 0:
        return random_triplet_per_anchor(labels, generator)
    chosen = one_index_per_value(anchors, len(labels), generator)
    return anchors[chosen], positives[chosen], negatives[chosen]
