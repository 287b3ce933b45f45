"""Attack units: engines (PGD, FGSM, APGD, C&W, ...) x objectives, the retrieval attacks and the
ensemble members, each owning its options, score columns and revision. Nothing here knows the attack
specification or the evaluation (``robustdml.robustness``)."""

from robustdml.attacks.engines import ENGINES, AttackEngine, build_engine, project

__all__ = ["ENGINES", "AttackEngine", "build_engine", "project"]
