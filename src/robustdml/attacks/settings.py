"""How an engine run is set up, as one value: the engine, its steps, step size, norm and start; and for
the ensemble, the restarts and the per-query early stop. The attack specification, the ensemble and the
training adversaries build their engines through it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from robustdml.attacks.engines import AttackEngine, build_engine


@dataclass(frozen=True)
class EngineSettings:
    """An engine by name with its settings; ``step_size=None`` is the engine's default (APGD: 2 eps,
    adaptive; PGD: 2.5 eps / steps)."""

    engine: str = "apgd"
    steps: int = 100
    step_size: Optional[float] = None
    norm: str = "linf"
    random_start: bool = True

    def build(self, eps: float) -> AttackEngine:
        return build_engine(self.engine, eps=eps, steps=self.steps, step_size=self.step_size, norm=self.norm,
                            random_start=self.random_start)

    def longer(self, factor: int) -> "EngineSettings":
        """``factor`` times the steps (a fixed step size divided by ``factor``, so the reach stays the same)."""
        step_size = None if self.step_size is None else self.step_size / factor
        return replace(self, steps=factor * self.steps, step_size=step_size)


@dataclass(frozen=True)
class EnsembleSettings:
    """How the ensemble runs its members: the engine, the restarts of every member (the targeted member
    restarts per target class) and whether a query already misranked gets more steps (``early_stop``)."""

    engine: EngineSettings = EngineSettings()
    restarts: int = 1
    early_stop: bool = True
