"""Attack engines: how a perturbation is optimised inside an eps-ball, whatever the objective.

``base``: the contract every engine keeps (ball, clipping, starts, per-sample stop and cost); ``pgd``: PGD,
FGSM and the training adversaries' batch-level loops; ``apgd``: Auto-PGD; ``cw``: Carlini & Wagner. A new
engine is one class registered with ``@ENGINES.register(name)`` in a module imported here.
"""

from robustdml.attacks.engines.base import (ENGINES, JITTER, NORMS, AttackEngine, AttackResult, Objective,
                                            ascent_direction, check_options, project, random_init)
from robustdml.attacks.engines.pgd import FGSM, PGD, ChannelPGD, EarlyStopPGD
from robustdml.attacks.engines.apgd import APGD
from robustdml.attacks.engines.cw import CW


def build_engine(name: str, **options) -> AttackEngine:
    """The registered engine ``name`` (pgd, fgsm, apgd, cw) built with ``options``."""
    return ENGINES.get(name)(**options)


__all__ = ["APGD", "CW", "ENGINES", "FGSM", "JITTER", "NORMS", "PGD", "AttackEngine", "AttackResult", "ChannelPGD",
           "EarlyStopPGD", "Objective", "ascent_direction", "build_engine", "check_options", "project", "random_init"]
