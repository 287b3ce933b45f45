"""One object that describes a robustness evaluation: :class:`AttackSpec`.

The same specification is used by ``evaluate_robustness``, the ERS profile, the benchmark suites'
protocol, the cache of robustness results (keyed by :meth:`AttackSpec.key` plus checkpoint, batch
norm and seed) and the CLI, so a number in a report always names exactly the attack behind it.

The default is the ``auto`` ensemble (see :mod:`robustdml.attacks.ensemble`): APGD on the ranking
margin, targeted APGD towards the nearest other classes and APGD on the nearest-neighbour push,
with per-query early stop and a convergence check. Its steps and restarts were chosen with
``benchmarks/attack_strength.py`` (README: "How strong is the default attack").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from robustdml.attacks.retrieval import GTM_TARGETS, check_gtm_target  # noqa: F401

DEFAULT_EPS = (0.01, 0.05, 0.1)
AUTO = "auto"
# The members of ``auto``, in the order they run (each one only attacks the queries the previous
# ones could not break). Each one is also an attack name of its own.
AUTO_MEMBERS = ("margin", "targeted", "nn")
ENSEMBLE_ATTACKS = AUTO_MEMBERS
# Chosen by measurement (benchmarks/attack_strength.py, README "How strong is the default attack"):
# past this point doubling both the steps and the restarts moved robust R@1 by less than one point
# on a natural and a defended model; at 50 steps it still moved by one point at eps 0.1 (more steps
# helped there; more restarts or target classes did not).
AUTO_STEPS = 100
AUTO_RESTARTS = 1
AUTO_TARGETS = 3
MARGIN_CANDIDATES = 16
PROBE_QUERIES = 100
# When the convergence check fails at an eps, every surviving query is re-attacked with the check's
# stronger attack and the probe checks again, at most this many times (measured: at 100 steps some
# adversarially trained models still lost 3-4 points on the probe at eps 0.1).
AUTO_ESCALATIONS = 2

ERS_ATTACKS = ("ca+", "ca-", "qa+", "qa-", "tma", "es", "ltm", "gtm", "gtt")
# Attacks whose implementation changed after results were cached, with the revision now in use: the
# key of a spec that runs one of them (itself or in its ERS profile) names it, so older results are
# never reused. Revision 2: QA+/QA-/CA+/CA-/GTT descend RobRank's ranking losses and LTM its
# negatives-first loss (revision 1: distance surrogates of our own, a weaker attack).
ATTACK_REVISIONS = {"qa+": 2, "qa-": 2, "ca+": 2, "ca-": 2, "ltm": 2, "gtt": 2}
# What an ERS result holds; the key of a spec with an ERS profile names it, so a cached result
# without it is not reused. Revision 2: the 95% interval over the queries and each query's ERS.
ERS_RESULT_REVISION = 2


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class AttackSpec:
    """Everything that decides a robustness number (and nothing that does not, such as batch size).

    - ``attacks``: ``auto`` (the ensemble), its members ``margin`` / ``targeted`` / ``nn``, and any
      other retrieval attack (``es``, ``qa+``, ``ltm``, ... see :mod:`robustdml.attacks.retrieval`);
    - ``eps``: radii in pixel units; ``engine``, ``steps``, ``step_size`` (None: the engine's
      default), ``norm``, ``random_start`` (False: start at the clean image);
    - ``restarts``: runs of each ensemble member from different random starts (the targeted member
      runs ``restarts`` times per target class); ``targets``: other classes the targeted member
      aims at; ``candidates``: nearest positives and negatives the margin objectives look at;
    - ``early_stop``: a query that is already misranked gets no more steps or restarts;
    - ``qa_candidates``, ``ca_queries``, ``gtt_k``, ``gtm_target``: options of the QA/CA/GTT/GTM attacks
      (``gtm_target``: one of ``GTM_TARGETS``);
    - ``max_queries``: random test items attacked (None: all); CPU budgets cut these, never steps;
    - ``probe_queries``: queries re-attacked by one more restart with twice the steps to check
      convergence (0: no check); ``escalations``: how many times an eps whose check failed is
      re-attacked on every surviving query with the check's stronger attack and checked again
      (0: only warn); ``sanity_checks``: eps monotonicity and an unbounded attack;
    - ``ers``: the ERS profile (another spec) run on the same queries, or None.
    """

    attacks: Tuple[str, ...] = (AUTO,)
    eps: Tuple[float, ...] = DEFAULT_EPS
    engine: str = "apgd"
    steps: int = AUTO_STEPS
    step_size: Optional[float] = None
    norm: str = "linf"
    random_start: bool = True
    restarts: int = AUTO_RESTARTS
    targets: int = AUTO_TARGETS
    candidates: int = MARGIN_CANDIDATES
    early_stop: bool = True
    qa_candidates: int = 1
    ca_queries: int = 1
    gtt_k: int = 4
    gtm_target: str = "nearest"
    max_queries: Optional[int] = None
    probe_queries: int = PROBE_QUERIES
    escalations: int = AUTO_ESCALATIONS
    sanity_checks: bool = True
    ers: Optional["AttackSpec"] = None

    def __post_init__(self):
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "eps", tuple(float(e) if isinstance(e, numbers.Real) and not isinstance(e, bool)
                                              else e for e in self.eps))
        if isinstance(self.ers, dict):
            object.__setattr__(self, "ers", AttackSpec.from_dict(self.ers))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Reject impossible settings before any work, naming the field and how to fix it."""
        from robustdml.attacks.engines import ENGINES, NORMS
        from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS

        if not self.attacks and self.ers is None:
            raise ValueError("attacks is empty: name at least one attack (e.g. auto) or give an ERS profile")
        for name in self.attacks:
            if name != AUTO and name not in ENSEMBLE_ATTACKS and name not in RETRIEVAL_ATTACKS:
                raise ValueError(f"unknown attack {name!r}; valid: {', '.join(attack_names())}")
        if len(set(self.attacks)) != len(self.attacks):
            raise ValueError(f"attacks lists a name twice: {list(self.attacks)}")
        if not self.eps and self.attacks:
            raise ValueError("eps is empty: give at least one radius (e.g. 0.01,0.05,8/255)")
        for eps in self.eps:
            if not isinstance(eps, float) or math.isnan(eps) or eps < 0 or math.isinf(eps):
                raise ValueError(f"eps values must be numbers >= 0 (pixel units, e.g. 8/255), got {list(self.eps)}")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown attack engine {self.engine!r}; valid: {', '.join(ENGINES.names())}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.step_size is not None and not (isinstance(self.step_size, numbers.Real) and self.step_size > 0):
            raise ValueError(f"step_size must be > 0 or None (the engine's default), got {self.step_size!r}")
        for name in ("steps", "restarts", "targets", "candidates", "qa_candidates", "ca_queries", "gtt_k"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        check_gtm_target(self.gtm_target)
        if self.max_queries is not None and (not _is_int(self.max_queries) or self.max_queries < 1):
            raise ValueError(f"max_queries must be an integer >= 1 or None (all test items), got {self.max_queries!r}")
        if not _is_int(self.probe_queries) or self.probe_queries < 0:
            raise ValueError(f"probe_queries must be an integer >= 0 (0: no convergence check), "
                             f"got {self.probe_queries!r}")
        if not _is_int(self.escalations) or self.escalations < 0:
            raise ValueError(f"escalations must be an integer >= 0 (0: warn only), got {self.escalations!r}")
        for name in ("random_start", "early_stop", "sanity_checks"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.ers is not None and not isinstance(self.ers, AttackSpec):
            raise ValueError(f"ers must be an AttackSpec (see ers_spec) or None, got {type(self.ers).__name__}")

    # ------------------------------------------------------------------ derived views
    @property
    def members(self) -> Tuple[str, ...]:
        """The attacks actually run, with ``auto`` expanded into its members (no duplicates)."""
        names = []
        for name in self.attacks:
            for member in (AUTO_MEMBERS if name == AUTO else (name,)):
                if member not in names:
                    names.append(member)
        return tuple(names)

    def stronger(self, level: int = 1) -> "AttackSpec":
        """The convergence check's attack: one more restart of every member, from fresh random
        starts, with twice the steps (half the step size when one is fixed). Taken per query
        together with the evaluation's own runs it is the evaluation plus one restart, the new one
        twice as long, at about twice the evaluation's cost (not four times). ``level`` k doubles
        k times (the attack of the k-th escalation)."""
        factor = 2 ** level
        step_size = None if self.step_size is None else self.step_size / factor
        return dataclasses.replace(self, steps=factor * self.steps, restarts=1, step_size=step_size,
                                   probe_queries=0, escalations=0, ers=None)

    def describe(self) -> str:
        """One line a person can read, e.g. ``auto: APGD-50, 1 restart, 3 targets, linf, early stop``."""
        step = "" if self.step_size is None else f" x {self.step_size:.4g}"
        start = "random start" if self.random_start else "clean start"
        parts = [f"{self.engine.upper()}-{self.steps}{step}", self.norm, start]
        if any(name in ENSEMBLE_ATTACKS for name in self.members):
            parts.append(f"{self.restarts} restart{'s' if self.restarts > 1 else ''}")
        if "targeted" in self.members:
            parts.append(f"{self.targets} target classes")
        if self.early_stop:
            parts.append("per-query early stop")
        if "gtm" in self.members and self.gtm_target != "nearest":
            parts.append(f"GTM towards the {self.gtm_target} target")
        return f"{','.join(self.attacks)}: " + ", ".join(parts)

    # ------------------------------------------------------------------ serialisation and cache key
    def to_dict(self) -> Dict[str, Any]:
        """Every field, except ``gtm_target`` at its default: it came after results were cached, and
        leaving it out there keeps their keys (and the results) valid."""
        values = dataclasses.asdict(self)
        values["attacks"], values["eps"] = list(self.attacks), list(self.eps)
        if self.gtm_target == "nearest":
            del values["gtm_target"]
        if self.ers is not None:
            values["ers"] = self.ers.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "AttackSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown attack-spec field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        values = dict(values)
        for name in ("attacks", "eps"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def key(self) -> str:
        """A short stable hash of every field (floats at full precision), of the revision of every
        attack it runs that has one (``ATTACK_REVISIONS``) and, with an ERS profile, of what an ERS
        result holds (``ERS_RESULT_REVISION``): the cache key."""
        values = self.to_dict()
        names = self.members + (self.ers.members if self.ers is not None else ())
        revisions = {name: ATTACK_REVISIONS[name] for name in sorted(set(names)) if name in ATTACK_REVISIONS}
        if revisions:
            values["revisions"] = revisions
        if self.ers is not None:
            values["ers_result"] = ERS_RESULT_REVISION
        text = json.dumps(values, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def attack_names() -> Tuple[str, ...]:
    """Every valid entry of ``AttackSpec.attacks``."""
    from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS

    return (AUTO, *ENSEMBLE_ATTACKS, *RETRIEVAL_ATTACKS.names())


def ers_spec(image_size: int, **overrides) -> AttackSpec:
    """The published ERS profile (Zhou & Patel, CVPR 2022; RobRank's cmdline.py, profiles rob28 and
    rob224): PGD, 32 steps of 3/255 from the clean image (no random start) at eps 77/255 for inputs
    of <= 32 px and 8/255 for larger (224px) inputs. ``overrides`` replace fields (e.g. steps=8), which makes it a
    different, unpublished profile: reports say so."""
    small = image_size <= 32
    values: Dict[str, Any] = {"attacks": ERS_ATTACKS, "eps": (77 / 255 if small else 8 / 255,), "engine": "pgd",
                              "steps": 32, "step_size": 3 / 255, "random_start": False,
                              "restarts": 1, "early_stop": False, "probe_queries": 0, "sanity_checks": False}
    for name, value in overrides.items():
        if name not in {f.name for f in dataclasses.fields(AttackSpec)}:
            raise ValueError(f"unknown ERS profile override {name!r}; valid: eps, steps, step_size, engine, norm")
        if value is not None:
            values[name] = (value,) if name == "eps" and isinstance(value, numbers.Real) else value
    return AttackSpec(**values)


def is_published_ers(spec: AttackSpec, image_size: int) -> bool:
    """Whether ``spec`` is the published ERS profile for this input size (with either GTM target:
    the target is a reading of the published attack, named in the spec's description)."""
    return dataclasses.replace(spec, gtm_target="nearest") == ers_spec(image_size)


@dataclass
class AttackProtocol:
    """How a suite measures robustness: one attack specification, run once per attack seed.

    The spec's ``worst case`` over its attacks is the headline robust R@1 of every report.
    """

    spec: AttackSpec = dataclasses.field(default_factory=AttackSpec)
    seeds: Tuple[int, ...] = (0,)

    @property
    def eps_list(self) -> Tuple[float, ...]:
        return self.spec.eps

    def to_dict(self) -> Dict[str, Any]:
        return {"spec": self.spec.to_dict(), "spec_key": self.spec.key(), "seeds": list(self.seeds)}
