"""Training-step strategies: each turns a labelled batch into a loss (one class per defense, registered in DEFENSES)."""

from robustdml.defenses.base import DEFENSES, Defense, StepOutput, build_defense

# Importing the modules registers them.
from robustdml.defenses import gaussian_augment, mdprop, natural, robrank, robust_tuples  # noqa: F401,E402

__all__ = ["DEFENSES", "Defense", "StepOutput", "build_defense"]
