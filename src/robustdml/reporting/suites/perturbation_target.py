"""The perturbation-target suite: which tuple member the adversary perturbs."""

from __future__ import annotations

from typing import Optional

from robustdml.reporting.suites.base import SUITES, RunSpec, Suite, base_config, cpu_note, protocol_for


@SUITES.register("perturbation-target")
def perturbation_target(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Robust triplet training perturbing the positive vs the anchor vs the negative."""
    runs = [RunSpec(f"robust-triplet-{target}", f"perturb {target}",
                    {**base_config(full), "loss": "triplet", "defense": "robust-triplet",
                     "defense_options": {"perturb": target, **({"steps": eta} if eta else {})}})
            for target in ("positive", "anchor", "negative")]
    return Suite("perturbation-target", perturbation_target.__doc__, runs,
                 protocol_for(full), "full" if full else "cpu", cpu_note(full))
