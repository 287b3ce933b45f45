"""One object that describes a robustness evaluation: :class:`AttackSpec`.

The same specification is used by ``evaluate_robustness``, the ERS profile, the benchmark suites'
protocol, the result store (keyed by :meth:`AttackSpec.key` plus checkpoint, data, batch norm and seed)
and the CLI, whose attack flags are built from the metadata of the spec's fields and of the units'
options (:mod:`robustdml.robustness.flags`), so a number in a report always names exactly the attack
behind it and a default, its help and its check live in one place.

The default is the ``auto`` ensemble (:data:`robustdml.attacks.members.AUTO`): APGD on the ranking
margin, targeted APGD towards the nearest other classes and APGD on the nearest-neighbour push, with
per-query early stop and a convergence check. Its steps and restarts were chosen with
``benchmarks/attack_strength.py`` (docs: "How strong is the default attack").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from robustdml.attacks import members as M
from robustdml.attacks.engines import ENGINES, NORMS
from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS
from robustdml.attacks.units import Unit, one_of, positive_int
from robustdml.robustness.unit_flags import flag_options

DEFAULT_EPS = (0.01, 0.05, 0.1)
AUTO = "auto"
# Chosen by measurement (benchmarks/attack_strength.py): past this point doubling both the steps and the
# restarts moved robust R@1 by less than one point on a natural and a defended model; at 50 steps it still
# moved by one point at eps 0.1 (more steps helped there; more restarts or target classes did not).
AUTO_STEPS = 100
AUTO_RESTARTS = 1
PROBE_QUERIES = 100
# When the convergence check fails at an eps, every surviving query is re-attacked with the check's
# stronger attack and the probe checks again, at most this many times (measured: at 100 steps some
# adversarially trained models still lost 3-4 points on the probe at eps 0.1).
AUTO_ESCALATIONS = 2

ERS_ATTACKS = ("ca+", "ca-", "qa+", "qa-", "tma", "es", "ltm", "gtm", "gtt")
# What an ERS result holds; the key of a spec with an ERS profile names it, so a stored result without it
# is not reused. Revision 2: the 95% interval over the queries and each query's ERS.
ERS_RESULT_REVISION = 2


def _non_negative_int(value: Any) -> Optional[str]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return None
    return f"must be an integer >= 0, got {value!r}"


def _optional(check: Callable[[Any], Optional[str]], meaning: str) -> Callable[[Any], Optional[str]]:
    def optional(value: Any) -> Optional[str]:
        problem = None if value is None else check(value)
        return problem and f"{problem} (or None: {meaning})"

    return optional


def _positive_number(value: Any) -> Optional[str]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return None
    return f"must be > 0, got {value!r}"


def _boolean(value: Any) -> Optional[str]:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def setting(default: Any, *, help: str, check: Callable[[Any], Optional[str]], flag: Optional[str] = None,
            kind: str = "value"):
    """A field of the spec: ``default``, ``help``, ``check`` and its command-line ``flag``; ``kind`` says how
    the flag reads a value: ``int``, ``number`` (8/255 ok), ``choice``, ``off`` (a boolean whose flag turns it
    off, e.g. ``--no-early-stop``)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "flag": flag, "kind": kind})


def unit_class(name: str) -> type:
    """The class of an attack unit: an ensemble member or a retrieval attack."""
    return M.MEMBERS.get(name) if name in M.MEMBERS else RETRIEVAL_ATTACKS.get(name)


def attack_names() -> Tuple[str, ...]:
    """Every valid entry of ``AttackSpec.attacks``."""
    return (AUTO, *(cls.name for cls in M.AUTO), *(n for n in M.MEMBERS.names() if n not in _auto_names()),
            *RETRIEVAL_ATTACKS.names())


def _auto_names() -> Tuple[str, ...]:
    return tuple(cls.name for cls in M.AUTO)


def _normalised_options(options: Any) -> Tuple[Tuple[str, Tuple[Tuple[str, Any], ...]], ...]:
    """``{unit: {option: value}}`` (or its tuple form) as sorted tuples with only the non-default options,
    each checked by its unit."""
    items = options.items() if isinstance(options, Mapping) else options
    normal = []
    for unit, values in items:
        cls = unit_class(unit)
        changed = cls.Options.build(unit, dict(values)).changed()
        if changed:
            normal.append((unit, tuple(sorted(changed.items()))))
    return tuple(sorted(normal))


@dataclass(frozen=True)
class AttackSpec:
    """Everything that decides a robustness number (and nothing that does not, such as batch size).

    ``attacks``: ``auto`` (the ensemble), a member (``margin``, ``targeted``, ``nn``...) or a retrieval
    attack (``es``, ``qa+``, ``ltm``...); ``eps``: radii in pixel units; ``options``: the attacks' own
    options as ``{attack: {option: value}}`` (see each attack's ``Options``; an option for an attack the
    spec does not run is an error); ``ers``: the ERS profile (another spec) run on the same queries, or
    None. The other fields are described by their ``help``.
    """

    attacks: Tuple[str, ...] = (AUTO,)
    eps: Tuple[float, ...] = DEFAULT_EPS
    engine: str = setting("apgd", flag="--engine", kind="choice", check=one_of(tuple(ENGINES.names())),
                          help="the attack engine")
    steps: int = setting(AUTO_STEPS, flag="--steps", kind="int", check=positive_int, help="gradient steps per run")
    step_size: Optional[float] = setting(None, flag="--step-size", kind="number",
                                         check=_optional(_positive_number, "the engine's default"),
                                         help="step size (default: the engine's; APGD: 2 eps, adaptive)")
    norm: str = setting("linf", flag="--norm", kind="choice", check=one_of(NORMS), help="the threat model's norm")
    random_start: bool = setting(True, flag="--no-random-start", kind="off", check=_boolean,
                                 help="start at the clean image instead of a random point of the ball")
    restarts: int = setting(AUTO_RESTARTS, flag="--restarts", kind="int", check=positive_int,
                            help="random restarts of each ensemble member (the targeted one: per target class)")
    early_stop: bool = setting(True, flag="--no-early-stop", kind="off", check=_boolean,
                               help="keep attacking queries already misranked (same robust R@1, more cost)")
    max_queries: Optional[int] = setting(None, flag="--max-queries", kind="int",
                                         check=_optional(positive_int, "all test items"),
                                         help="random test queries attacked (0 = all); a CPU budget cuts queries, "
                                              "never steps")
    probe_queries: int = setting(PROBE_QUERIES, flag="--probe-queries", kind="int", check=_non_negative_int,
                                 help="queries re-attacked with 2x steps and one more restart to check "
                                      "convergence (0 = no check)")
    escalations: int = setting(AUTO_ESCALATIONS, flag="--escalations", kind="int", check=_non_negative_int,
                               help="when the convergence check fails at an eps, re-attack every surviving "
                                    "query with its stronger attack and check again, at most this many times "
                                    "(0 = only warn)")
    sanity_checks: bool = setting(True, flag="--no-sanity-checks", kind="off", check=_boolean,
                                  help="skip the eps-monotonicity and unbounded-attack checks")
    options: Tuple[Tuple[str, Tuple[Tuple[str, Any], ...]], ...] = ()
    ers: Optional["AttackSpec"] = None

    def __post_init__(self):
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "eps", tuple(float(e) if isinstance(e, numbers.Real) and not isinstance(e, bool)
                                              else e for e in self.eps))
        if isinstance(self.ers, dict):
            object.__setattr__(self, "ers", AttackSpec.from_dict(self.ers))
        self.validate()
        object.__setattr__(self, "options", _normalised_options(self.options))
        unused = sorted({unit for unit, _ in self.options} - set(self.unit_names))
        if unused:
            raise ValueError(f"options given for {', '.join(unused)}, which this spec does not run "
                             f"(it runs {', '.join(self.unit_names) or 'no attack'})")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Reject impossible settings before any work, naming the field and how to fix it."""
        if not self.attacks and self.ers is None:
            raise ValueError("attacks is empty: name at least one attack (e.g. auto) or give an ERS profile")
        for name in self.attacks:
            if name != AUTO and name not in M.MEMBERS and name not in RETRIEVAL_ATTACKS:
                raise ValueError(f"unknown attack {name!r}; valid: {', '.join(attack_names())}")
        if len(set(self.attacks)) != len(self.attacks):
            raise ValueError(f"attacks lists a name twice: {list(self.attacks)}")
        if not self.eps and self.attacks:
            raise ValueError("eps is empty: give at least one radius (e.g. 0.01,0.05,8/255)")
        for eps in self.eps:
            if not isinstance(eps, float) or math.isnan(eps) or eps < 0 or math.isinf(eps):
                raise ValueError(f"eps values must be numbers >= 0 (pixel units, e.g. 8/255), got {list(self.eps)}")
        for item in dataclasses.fields(self):
            if "check" in item.metadata:
                problem = item.metadata["check"](getattr(self, item.name))
                if problem:
                    raise ValueError(f"{item.name} {problem}")
        if self.ers is not None and not isinstance(self.ers, AttackSpec):
            raise ValueError(f"ers must be an AttackSpec (see ers_spec) or None, got {type(self.ers).__name__}")

    # ------------------------------------------------------------------ what runs
    @property
    def unit_names(self) -> Tuple[str, ...]:
        """The attacks actually run, with ``auto`` expanded into its members (no duplicates)."""
        names = []
        for name in self.attacks:
            for unit in (_auto_names() if name == AUTO else (name,)):
                if unit not in names:
                    names.append(unit)
        return tuple(names)

    def unit(self, name: str) -> Unit:
        """The unit ``name`` with this spec's options for it."""
        return unit_class(name).with_options(dict(dict(self.options).get(name, ())))

    def members_of(self, name: str) -> Tuple[M.Member, ...]:
        """The ensemble members an entry of ``attacks`` runs (``auto``: all of ``AUTO``; a retrieval attack: none)."""
        names = _auto_names() if name == AUTO else (name,) if name in M.MEMBERS else ()
        return tuple(self.unit(unit) for unit in names)

    @property
    def members(self) -> Tuple[M.Member, ...]:
        """Every ensemble member this spec runs, in order."""
        return tuple(self.unit(name) for name in self.unit_names if name in M.MEMBERS)

    def ensemble_settings(self):
        from robustdml.attacks.settings import EngineSettings, EnsembleSettings

        return EnsembleSettings(EngineSettings(self.engine, self.steps, self.step_size, self.norm, self.random_start),
                                restarts=self.restarts, early_stop=self.early_stop)

    def engine_settings(self):
        return self.ensemble_settings().engine

    def stronger(self, level: int = 1) -> "AttackSpec":
        """The convergence check's attack: one more restart of every member, from fresh random starts, with
        twice the steps (half the step size when one is fixed). Taken per query together with the
        evaluation's own runs it is the evaluation plus one restart, the new one twice as long, at about
        twice the evaluation's cost (not four times). ``level`` k doubles k times (the k-th escalation)."""
        factor = 2 ** level
        step_size = None if self.step_size is None else self.step_size / factor
        return dataclasses.replace(self, steps=factor * self.steps, restarts=1, step_size=step_size,
                                   probe_queries=0, escalations=0, ers=None)

    def describe(self) -> str:
        """One line a person can read, e.g. ``auto: APGD-100, linf, random start, 1 restart, 3 target classes``."""
        step = "" if self.step_size is None else f" x {self.step_size:.4g}"
        start = "random start" if self.random_start else "clean start"
        parts = [f"{self.engine.upper()}-{self.steps}{step}", self.norm, start]
        if self.members:
            parts.append(f"{self.restarts} restart{'s' if self.restarts > 1 else ''}")
        parts += [note for note in (self.unit(name).note() for name in self.unit_names) if note]
        if self.early_stop:
            parts.append("per-query early stop")
        return f"{','.join(self.attacks)}: " + ", ".join(parts)

    # ------------------------------------------------------------------ serialisation and key
    def option_values(self) -> Dict[str, Dict[str, Any]]:
        return {unit: dict(values) for unit, values in self.options}

    def to_dict(self) -> Dict[str, Any]:
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)
                  if item.name not in ("options", "ers")}
        values["attacks"], values["eps"] = list(self.attacks), list(self.eps)
        if self.options:
            values["options"] = self.option_values()
        values["ers"] = None if self.ers is None else self.ers.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "AttackSpec":
        """A spec from :meth:`to_dict`'s output, also with the flat option fields of version-1 robustness.json
        files (``targets``, ``candidates``, ``qa_candidates``, ``ca_queries``, ``gtt_k``, ``gtm_target``): each
        one is the option of every attack run that has the flag of that name."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = dict(values)
        flat = {name: values.pop(name) for name in list(values) if name not in known}
        for name in ("attacks", "eps"):
            if name in values:
                values[name] = tuple(values[name])
        ers = values.pop("ers", None)
        if ers is not None and not isinstance(ers, AttackSpec):
            ers = cls.from_dict(ers)
        spec = cls(**values)
        if flat:
            spec = flag_options(spec, {"--" + name.replace("_", "-"): value for name, value in flat.items()},
                                source="attack-spec field", strict=False)
        return dataclasses.replace(spec, ers=ers)

    def key(self) -> str:
        """A short stable hash of what decides the result: every field (floats at full precision), every unit
        run with its revision and non-default options (``auto`` expanded, so a new member changes it) and,
        with an ERS profile, the profile's key material and what an ERS result holds."""
        return hashlib.sha256(json.dumps(self._key_material(), sort_keys=True, default=repr).encode()).hexdigest()[:12]

    def _key_material(self) -> Dict[str, Any]:
        values = self.to_dict()
        values.pop("options", None)
        values["units"] = [self.unit(name).fingerprint() for name in self.unit_names]
        if self.ers is not None:
            values["ers"] = {**self.ers._key_material(), "result": ERS_RESULT_REVISION}
        return values


def ers_spec(image_size: int, options: Optional[Mapping[str, Mapping[str, Any]]] = None, **overrides) -> AttackSpec:
    """The published ERS profile (Zhou & Patel, CVPR 2022; RobRank's cmdline.py, profiles rob28 and rob224):
    PGD, 32 steps of 3/255 from the clean image (no random start) at eps 77/255 for inputs of <= 32 px and
    8/255 for larger (224px) inputs. ``overrides`` replace fields (e.g. steps=8) and ``options`` set the
    attacks' options (e.g. ``{"gtm": {"target": "reference"}}``); an override makes it a different,
    unpublished profile, and reports say so."""
    small = image_size <= 32
    values: Dict[str, Any] = {"attacks": ERS_ATTACKS, "eps": (77 / 255 if small else 8 / 255,), "engine": "pgd",
                              "steps": 32, "step_size": 3 / 255, "random_start": False,
                              "restarts": 1, "early_stop": False, "probe_queries": 0, "sanity_checks": False,
                              "options": options or ()}
    for name, value in overrides.items():
        if name not in {f.name for f in dataclasses.fields(AttackSpec)}:
            raise ValueError(f"unknown ERS profile override {name!r}; valid: eps, steps, step_size, engine, norm")
        if value is not None:
            values[name] = (value,) if name == "eps" and isinstance(value, numbers.Real) else value
    return AttackSpec(**values)


def is_published_ers(spec: AttackSpec, image_size: int) -> bool:
    """Whether ``spec`` is the published ERS profile for this input size (with either GTM target: the
    target is a reading of the published attack, named in the spec's description)."""
    other = tuple(item for item in spec.options if item[0] != "gtm")
    return dataclasses.replace(spec, options=other) == ers_spec(image_size)


@dataclass
class AttackProtocol:
    """How a suite measures robustness: one attack specification, run once per attack seed.

    The spec's worst case over its attacks is the headline robust R@1 of every report.
    """

    spec: AttackSpec = dataclasses.field(default_factory=AttackSpec)
    seeds: Tuple[int, ...] = (0,)

    @property
    def eps_list(self) -> Tuple[float, ...]:
        return self.spec.eps

    def to_dict(self) -> Dict[str, Any]:
        return {"spec": self.spec.to_dict(), "spec_key": self.spec.key(), "seeds": list(self.seeds)}
