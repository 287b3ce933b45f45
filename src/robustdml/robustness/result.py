"""The one typed record of a robustness evaluation, and its JSON schema (``robustness.json``).

Written and read back with the same types: an evaluation builds a :class:`RobustnessResult`, the result
store writes ``to_dict()``, and the reports read ``RobustnessResult.from_dict`` — nobody above this module
digs in string-keyed dictionaries or turns eps keys back into floats. The JSON's fields are those of
schema version 1 (``"R@1"``, ``"R@1_ci"``, eps as string keys) plus ``"schema"``, ``"version"``, the attacked
query indices and each headline's per-query outcomes; a file without a version is read as version 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from robustdml.evaluation.intervals import binomial_interval

SCHEMA = "robustdml-robustness"
VERSION = 2
# Keys of an attack row that are not scores (everything else numeric in a row is a score, e.g. CA+).
_ROW_FIELDS = ("attack", "eps", "R@1", "R@1_ci", "queries", "mAP@R", "passes_per_query", "seconds", "broken_by",
               "after", "stronger")


class ResultFormatError(ValueError):
    """A robustness.json that is not a robustness result (or of a newer version); the message says which."""


@dataclass(frozen=True)
class Rate:
    """A rate over the attacked queries (R@1 as a fraction) with its 95% Clopper-Pearson interval."""

    value: float
    low: float
    high: float
    queries: int

    @classmethod
    def of(cls, outcomes: np.ndarray) -> "Rate":
        """The rate of a per-query boolean array (True: the query is still correctly retrieved)."""
        hits, count = int(np.sum(outcomes)), len(outcomes)
        low, high = binomial_interval(hits, count)
        return cls(hits / count, low, high, count)

    def to_dict(self) -> Dict[str, Any]:
        return {"R@1": self.value, "R@1_ci": [self.low, self.high], "queries": self.queries}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Rate":
        low, high = values["R@1_ci"]
        return cls(float(values["R@1"]), float(low), float(high), int(values.get("queries", 0)))

    def text(self) -> str:
        """e.g. ``72.5 [56.1, 85.4]`` (percent)."""
        return f"{100 * self.value:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass
class AttackRow:
    """One attack (or ensemble, or escalation) at one eps on every attacked query.

    ``r1`` / ``map_r``: retrieval after the attack (None for attacks that only produce scores, e.g. TMA);
    ``scores``: the attack's own measures (CA+, ES:D, GTT, ...); ``broken_by``: which run first misranked how
    many queries; ``after``: robust R@1 after each ensemble member (cumulative); ``stronger``: for an
    escalation, the attack it ran."""

    attack: str
    eps: float
    passes_per_query: float
    seconds: float = 0.0
    r1: Optional[Rate] = None
    map_r: Optional[float] = None
    scores: Dict[str, float] = field(default_factory=dict)
    broken_by: Dict[str, int] = field(default_factory=dict)
    after: Dict[str, float] = field(default_factory=dict)
    stronger: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        values: Dict[str, Any] = {"attack": self.attack, "eps": self.eps}
        if self.r1 is not None:
            values.update(self.r1.to_dict())
        if self.map_r is not None:
            values["mAP@R"] = _finite(self.map_r)
        values.update({"passes_per_query": self.passes_per_query, "seconds": self.seconds})
        values.update(self.scores)
        if self.broken_by:
            values["broken_by"] = dict(self.broken_by)
        if self.after:
            values["after"] = dict(self.after)
        if self.stronger is not None:
            values["stronger"] = self.stronger
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "AttackRow":
        return cls(attack=str(values["attack"]), eps=float(values["eps"]),
                   passes_per_query=float(values.get("passes_per_query", 0.0)),
                   seconds=float(values.get("seconds", 0.0)),
                   r1=Rate.from_dict(values) if "R@1" in values else None,
                   map_r=_number(values["mAP@R"]) if "mAP@R" in values else None,
                   scores={k: float(v) for k, v in values.items() if k not in _ROW_FIELDS and _is_number(v)},
                   broken_by={str(k): int(v) for k, v in (values.get("broken_by") or {}).items()},
                   after={str(k): float(v) for k, v in (values.get("after") or {}).items()},
                   stronger=values.get("stronger"))


@dataclass
class WorstCase:
    """The headline at one eps: the per-query worst case over every attack run, and what it cost in all.

    ``correct``: per attacked query (in the order of ``RobustnessResult.queries``), whether it survived every
    attack; two models attacked on the same queries are compared query by query with it (paired tests). In
    JSON, a string of 0/1; None in version-1 results."""

    r1: Rate
    map_r: float
    passes_per_query: float
    correct: Optional[List[bool]] = None

    def to_dict(self) -> Dict[str, Any]:
        values = {**self.r1.to_dict(), "mAP@R": _finite(self.map_r), "passes_per_query": self.passes_per_query}
        if self.correct is not None:
            values["correct"] = "".join("1" if hit else "0" for hit in self.correct)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "WorstCase":
        correct = values.get("correct")
        return cls(Rate.from_dict(values), _number(values.get("mAP@R")), float(values["passes_per_query"]),
                   correct=None if correct is None else [c == "1" for c in correct])


@dataclass
class FailedCheck:
    """The convergence check that an escalation answered."""

    probe: int
    r1: float
    stronger_r1: float
    drop: float

    def to_dict(self) -> Dict[str, Any]:
        return {"probe": self.probe, "R@1": self.r1, "stronger_R@1": self.stronger_r1, "drop": self.drop}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FailedCheck":
        return cls(int(values["probe"]), float(values["R@1"]), float(values["stronger_R@1"]), float(values["drop"]))


@dataclass
class Escalation:
    """Every surviving query re-attacked with the check's stronger attack after a failed check."""

    attack: str
    r1_before: float
    r1: float
    passes_per_query: float
    failed_check: FailedCheck

    def to_dict(self) -> Dict[str, Any]:
        return {"attack": self.attack, "R@1_before": self.r1_before, "R@1": self.r1,
                "passes_per_query": self.passes_per_query, "failed_check": self.failed_check.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Escalation":
        return cls(str(values["attack"]), float(values["R@1_before"]), float(values["R@1"]),
                   float(values["passes_per_query"]), FailedCheck.from_dict(values["failed_check"]))


@dataclass
class ConvergenceCheck:
    """A probe of the attacked queries re-attacked by a stronger attack (see :mod:`robustdml.robustness.checks`)."""

    probe: int
    r1: float
    stronger_r1: float
    drop: float
    converged: bool
    stronger: str
    passes_per_query: float
    newly_broken_by: Dict[str, int] = field(default_factory=dict)
    escalations: List[Escalation] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"probe": self.probe, "R@1": self.r1, "stronger_R@1": self.stronger_r1, "drop": self.drop,
                "converged": self.converged, "newly_broken_by": dict(self.newly_broken_by),
                "stronger": self.stronger, "passes_per_query": self.passes_per_query,
                "escalations": [escalation.to_dict() for escalation in self.escalations]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ConvergenceCheck":
        return cls(probe=int(values["probe"]), r1=float(values["R@1"]), stronger_r1=float(values["stronger_R@1"]),
                   drop=float(values["drop"]), converged=bool(values["converged"]),
                   stronger=str(values.get("stronger", "")),
                   passes_per_query=float(values.get("passes_per_query", 0.0)),
                   newly_broken_by={str(k): int(v) for k, v in (values.get("newly_broken_by") or {}).items()},
                   escalations=[Escalation.from_dict(e) for e in values.get("escalations", ())])

    def failed(self) -> FailedCheck:
        return FailedCheck(self.probe, self.r1, self.stronger_r1, self.drop)


@dataclass
class ERSResult:
    """ERS (Zhou & Patel, CVPR 2022) on the attacked queries: the score, its interval over the queries
    (None in results that predate it), each query's own ERS, the ten terms (0-100), the raw inputs as the
    reference prints them, the profile's rows, and whether the profile is the published one."""

    ers: float
    terms: Dict[str, float]
    scores: Dict[str, float]
    rows: List[AttackRow]
    spec: Dict[str, Any]
    spec_text: str
    published: bool
    interval: Optional[Tuple[float, float]] = None
    level: float = 0.95
    per_query: List[float] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"ERS": self.ers, "interval": list(self.interval) if self.interval is not None else None,
                "level": self.level, "per_query": list(self.per_query), "terms": dict(self.terms),
                "scores": dict(self.scores), "rows": [row.to_dict() for row in self.rows], "spec": self.spec,
                "spec_text": self.spec_text, "published": self.published}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ERSResult":
        interval = values.get("interval")
        return cls(ers=float(values["ERS"]), terms={k: float(v) for k, v in values["terms"].items()},
                   scores={k: float(v) for k, v in values["scores"].items()},
                   rows=[AttackRow.from_dict(row) for row in values.get("rows", ())], spec=dict(values["spec"]),
                   spec_text=str(values.get("spec_text", "")), published=bool(values.get("published", False)),
                   interval=None if interval is None else (float(interval[0]), float(interval[1])),
                   level=float(values.get("level", 0.95)),
                   per_query=[float(v) for v in values.get("per_query", ())])

    def text(self) -> str:
        """e.g. ``9.8 [8.9, 10.7]`` (the interval left out where there is none)."""
        interval = "" if self.interval is None else f" [{self.interval[0]:.1f}, {self.interval[1]:.1f}]"
        return f"{self.ers:.1f}{interval}"


@dataclass
class Settings:
    """What was evaluated and how: the spec (as its dict, its key and one readable line), the attack seed,
    how many queries against how large a gallery, library versions, the time it took, the unbounded-attack
    probe (None when the sanity checks did not run), and ``source``: what the result store adds (the run,
    the checkpoint file, its training step, the batch norm, the data's digest)."""

    spec: Dict[str, Any]
    spec_key: str
    spec_text: str
    seed: int
    queries: int
    gallery: int
    versions: Dict[str, str] = field(default_factory=dict)
    seconds: Optional[float] = None
    unbounded_r1: Optional[float] = None
    source: Dict[str, Any] = field(default_factory=dict)

    _FIELDS = ("spec", "spec_key", "spec_text", "seed", "queries", "gallery", "versions", "seconds", "unbounded_R@1")

    def to_dict(self) -> Dict[str, Any]:
        values = {"spec": self.spec, "spec_key": self.spec_key, "spec_text": self.spec_text, "seed": self.seed,
                  "queries": self.queries, "gallery": self.gallery, "versions": dict(self.versions),
                  "seconds": self.seconds}
        if self.unbounded_r1 is not None:
            values["unbounded_R@1"] = self.unbounded_r1
        return {**values, **self.source}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Settings":
        return cls(spec=dict(values["spec"]), spec_key=str(values.get("spec_key", "")),
                   spec_text=str(values.get("spec_text", "")), seed=int(values.get("seed", 0)),
                   queries=int(values["queries"]), gallery=int(values["gallery"]),
                   versions={str(k): str(v) for k, v in (values.get("versions") or {}).items()},
                   seconds=_number(values.get("seconds")), unbounded_r1=_number(values.get("unbounded_R@1")),
                   source={k: v for k, v in values.items() if k not in cls._FIELDS})


@dataclass
class RobustnessResult:
    """What an evaluation measured (``robustness.json`` is ``to_dict()``).

    ``clean``: R@1 of the attacked queries before any attack, ``clean_map``: their mAP@R; ``rows``: one per
    attack and eps; ``worst_case``: per eps, the per-query worst case over every attack (the headline robust
    R@1); ``convergence``: per eps, the check of the attack's strength; ``ers``: the ERS and its terms, or
    None; ``warnings``: every check that failed, in words; ``queries``: the indices of the attacked test items
    (None in version-1 results)."""

    clean: Rate
    clean_map: float
    settings: Settings
    rows: List[AttackRow] = field(default_factory=list)
    worst_case: Dict[float, WorstCase] = field(default_factory=dict)
    convergence: Dict[float, ConvergenceCheck] = field(default_factory=dict)
    ers: Optional[ERSResult] = None
    warnings: List[str] = field(default_factory=list)
    queries: Optional[List[int]] = None

    @property
    def eps(self) -> Tuple[float, ...]:
        """The radii with a headline, smallest first."""
        return tuple(sorted(self.worst_case))

    def at(self, eps: float) -> Optional[WorstCase]:
        """The headline at ``eps`` (None where it was not measured); eps compared to 1e-9."""
        return _lookup(self.worst_case, eps)

    def check_at(self, eps: float) -> Optional[ConvergenceCheck]:
        return _lookup(self.convergence, eps)

    def not_converged(self) -> List[float]:
        """The eps at which the last convergence check still failed."""
        return sorted(eps for eps, check in self.convergence.items() if not check.converged)

    @property
    def passes_per_query(self) -> float:
        """Forward+backward passes per attacked query, summed over eps (every attack, escalations included)."""
        return sum(entry.passes_per_query for entry in self.worst_case.values())

    def to_dict(self) -> Dict[str, Any]:
        return {"schema": SCHEMA, "version": VERSION, "clean": {**self.clean.to_dict(), "mAP@R": _finite(self.clean_map)},
                "rows": [row.to_dict() for row in self.rows],
                "worst_case": {str(eps): entry.to_dict() for eps, entry in sorted(self.worst_case.items())},
                "convergence": {str(eps): check.to_dict() for eps, check in sorted(self.convergence.items())},
                "ers": None if self.ers is None else self.ers.to_dict(), "warnings": list(self.warnings),
                "settings": self.settings.to_dict(), "queries": self.queries}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "robustness result") -> "RobustnessResult":
        """Read ``to_dict()`` output, or a version-1 robustness.json (no version field)."""
        if not isinstance(values, Mapping):
            raise ResultFormatError(f"{source} is not a robustness result (a JSON object was expected)")
        version = values.get("version", 1)
        if values.get("schema", SCHEMA) != SCHEMA or not isinstance(version, int) or version > VERSION:
            raise ResultFormatError(f"{source}: schema {values.get('schema')!r} version {version!r} is not one this "
                                    f"robustdml reads ({SCHEMA} up to version {VERSION}); upgrade robustdml")
        try:
            return cls(clean=Rate.from_dict(values["clean"]), clean_map=_number(values["clean"].get("mAP@R")),
                       settings=Settings.from_dict(values["settings"]),
                       rows=[AttackRow.from_dict(row) for row in values.get("rows", ())],
                       worst_case={float(eps): WorstCase.from_dict(entry)
                                   for eps, entry in (values.get("worst_case") or {}).items()},
                       convergence={float(eps): ConvergenceCheck.from_dict(check)
                                    for eps, check in (values.get("convergence") or {}).items()},
                       ers=None if not values.get("ers") else ERSResult.from_dict(values["ers"]),
                       warnings=[str(w) for w in values.get("warnings", ())],
                       queries=None if values.get("queries") is None else [int(q) for q in values["queries"]])
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ResultFormatError(f"{source} is not a complete robustness result ({type(error).__name__}: "
                                    f"{error})") from None


def _lookup(mapping: Mapping[float, Any], eps: float):
    for key, value in mapping.items():
        if abs(key - eps) < 1e-9:
            return value
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value) -> float:
    """A stored number; None (written for a NaN, which JSON cannot hold) reads back as NaN."""
    return float("nan") if value is None else float(value)


def _finite(value: float):
    """NaN (e.g. mAP@R of queries without positives) is written as null: JSON has no NaN."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
