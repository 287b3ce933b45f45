"""Intra-class structure (ICS) loss used with hardness manipulation (Zhou & Patel, CVPR 2022).

Our reading: adversarial training should not scramble the structure inside a class, so the
adversarial anchor a' must stay closer to its own clean version a than to the (adversarial)
positive p' of the same class:

    L_ICS = mean [ d(a', a) - d(a', p') + margin ]_+
"""

from __future__ import annotations

import torch


def intra_class_structure_loss(adversarial_anchor: torch.Tensor, clean_anchor: torch.Tensor,
                               positive: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    own = (adversarial_anchor - clean_anchor).norm(dim=1)
    other = (adversarial_anchor - positive).norm(dim=1)
    return torch.relu(own - other + margin).mean()
