"""Drawing tuples from a batch: one random pick per row of a mask, and RobRank's SPC-2 pair layout.

An SPC-2 batch (``sampler: pairs``, :class:`robustdml.data.sampler.PairBatchSampler`) is
``[a0, p0, a1, p1, ...]``: item ``2i + 1`` is a positive of item ``2i``, and classes repeat across
pairs. RobRank's SPC-2 miners (robrank/losses/miner.py) form one triplet per pair, anchored at
``2i``; :class:`SPC2RandomMiner` is its ``spc2-random``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def pick_per_row(allowed: torch.Tensor, generator: Optional[torch.Generator], fallback: Optional[torch.Tensor] = None
                 ) -> torch.Tensor:
    """For every row of a (B, N) mask, the column of one uniformly random True entry; rows with none
    use ``fallback`` (another mask) instead. Rows with neither give an arbitrary column.
    ``generator=None`` draws from torch's global generator (as pytorch-metric-learning's miners do)."""
    if fallback is not None:
        allowed = torch.where(allowed.any(dim=1, keepdim=True), allowed, fallback)
    keys = torch.rand(allowed.shape, generator=generator).to(allowed.device)
    return keys.masked_fill(~allowed, -1.0).argmax(dim=1)


def pair_anchors(labels: torch.Tensor) -> torch.Tensor:
    """The anchors ``0, 2, 4, ...`` of an SPC-2 batch; an error when the batch is not one (odd size, or
    a pair whose two items differ in class)."""
    if len(labels) % 2:
        raise ValueError(f"an SPC-2 batch [a0, p0, a1, p1, ...] has an even size, got {len(labels)} items: "
                         "train with sampler=pairs and an even batch_size")
    mismatched = (labels[0::2] != labels[1::2]).nonzero().flatten()
    if len(mismatched):
        i = int(mismatched[0])
        raise ValueError(f"not an SPC-2 batch [a0, p0, a1, p1, ...]: pair {i} (items {2 * i}, {2 * i + 1}) has "
                         f"classes {int(labels[2 * i])} and {int(labels[2 * i + 1])}; train with sampler=pairs")
    return torch.arange(0, len(labels), 2, device=labels.device)


def spc2_random_triplets(labels: torch.Tensor, generator: Optional[torch.Generator] = None
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One triplet per pair: (2i, 2i + 1, a uniformly random item of another class in the batch).
    Pairs whose class fills the whole batch have no negative and form no triplet (the reference
    then takes any item, a triplet without a negative)."""
    anchors = pair_anchors(labels)
    negative = labels[anchors][:, None] != labels[None, :]
    keep = negative.any(dim=1)
    negatives = pick_per_row(negative, generator)
    return anchors[keep], anchors[keep] + 1, negatives[keep]


class SPC2RandomMiner:
    """RobRank's ``spc2-random`` miner (robrank/losses/miner.py ``__miner_spc2_random``, the miner of
    its ``ptripletN``): for every pair (2i, 2i + 1) of an SPC-2 batch one random negative n, the
    triplet (2i, 2i + 1, n). Same call as pytorch-metric-learning's triplet miners,
    ``miner(embeddings, labels) -> (anchors, positives, negatives)``; the embeddings are not used.
    Random numbers come from torch's global generator, as PML's miners' do (the trainer saves and
    restores it on resume; every rank of a distributed run draws the same numbers). Under torch.distributed
    it mines the gathered global batch, whose rank slices hold whole pairs, so the pairs stay adjacent.
    Any batch whose items 2i and 2i + 1 share a class works (m-per-class batches with an even m too).
    """

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor):
        return spc2_random_triplets(labels)

    def __repr__(self) -> str:
        return "SPC2RandomMiner()"
