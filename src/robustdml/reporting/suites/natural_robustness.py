"""The natural-robustness suite (Panum et al., Table 1)."""

from __future__ import annotations

from typing import Optional

from robustdml.reporting.suites.base import SUITES, RunSpec, Suite, base_config, cpu_note, protocol_for


@SUITES.register("natural-robustness")
def natural_robustness(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Naturally trained contrastive and triplet models under the NN attack, 5 attack seeds (Panum et al., Table 1)."""
    runs = [RunSpec(f"natural-{loss}", f"natural {loss}", {**base_config(full), "loss": loss})
            for loss in ("contrastive", "triplet")]
    protocol = protocol_for(full, seeds=(0, 1, 2, 3, 4))
    return Suite("natural-robustness", natural_robustness.__doc__, runs, protocol, "full" if full else "cpu",
                 cpu_note(full))
