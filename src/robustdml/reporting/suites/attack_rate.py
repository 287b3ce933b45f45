"""The attack-rate suite: robust triplet training at several attack rates."""

from __future__ import annotations

from typing import Optional

from robustdml.reporting.suites.base import SUITES, RunSpec, Suite, base_config, cpu_note, protocol_for


@SUITES.register("attack-rate")
def attack_rate(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Robust triplet training at attack rates P(gamma=1) in {0.1, 0.25, 0.5, 0.75, 1.0}."""
    runs = [RunSpec("natural-triplet", "natural", {**base_config(full), "loss": "triplet"})]
    for rate in (0.1, 0.25, 0.5, 0.75, 1.0):
        runs.append(RunSpec(f"robust-triplet-rate{rate}", f"P(gamma=1)={rate}",
                            {**base_config(full), "loss": "triplet", "defense": "robust-triplet",
                             "defense_options": {"attack_rate": rate, **({"steps": eta} if eta else {})}}))
    return Suite("attack-rate", attack_rate.__doc__, runs, protocol_for(full), "full" if full else "cpu",
                 cpu_note(full))
