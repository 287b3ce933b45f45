"""Intra-class structure (ICS) loss used with hardness manipulation (Zhou & Patel, CVPR 2022).

As the reference code computes it (robrank/defenses/amd.py ``hm_training_step``: the triplet loss
``raw(a, a', p, override_margin=0.0)``): the adversarial anchor a' must stay closer to its clean
version a than the clean positive p is,

    L_ICS = mean [ d(a, a') - d(a, p) + margin ]_+ ,   margin 0,

with a and p embedded with gradient (training mode), so the loss also shapes the clean embeddings.
HM adds 0.5 L_ICS to its triplet loss (0.05 on SOP).
"""

from __future__ import annotations

import torch


def intra_class_structure_loss(clean_anchor: torch.Tensor, adversarial_anchor: torch.Tensor,
                               clean_positive: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    own = (clean_anchor - adversarial_anchor).norm(dim=1)
    other = (clean_anchor - clean_positive).norm(dim=1)
    return torch.relu(own - other + margin).mean()
