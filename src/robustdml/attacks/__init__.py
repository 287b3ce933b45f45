"""Attacks on retrieval models: engine (PGD, FGSM, APGD, C&W) x objective (DESIGN.md)."""

from robustdml.attacks.engines import ENGINES, AttackEngine, build_engine, project
from robustdml.attacks.objectives import OBJECTIVES

__all__ = ["ENGINES", "OBJECTIVES", "AttackEngine", "build_engine", "project"]
