"""The synthetic suite: a seconds-long end-to-end check on the Gaussian set."""

from __future__ import annotations

from typing import Optional

from robustdml.reporting.suites.base import SUITES, RunSpec, Suite, protocol_for


@SUITES.register("synthetic")
def synthetic(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Two-Gaussian set with a 2-d embedding: natural vs robust training (Panum et al., Figure 2)."""
    base = {"dataset": "synthetic-gaussian", "embedding_dim": 2, "epochs": 20 if full else 10}
    runs = [RunSpec("natural", "natural", {**base, "loss": "triplet"}),
            RunSpec("robust-triplet", "robust triplet",
                    {**base, "loss": "triplet", "defense": "robust-triplet", "defense_options": {"eps": 0.15}})]
    protocol = protocol_for(full, eps=(0.05, 0.1, 0.2), max_queries=None)
    return Suite("synthetic", synthetic.__doc__, runs, protocol, "full" if full else "cpu",
                 ["Two classes, means 0.25 and 0.75, sigma 0.025, 2-d inputs, MLP with a 2-d embedding."])


# The mdprop suite (issue #13): MDProp's claim of a clean-R@1 gain where training data is scarce.
