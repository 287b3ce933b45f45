"""Benchmark suites: the experiment protocols of the seed papers, as lists of runs plus an attack protocol.

Each suite has a CPU-sized default (a subset of Fashion-MNIST, few epochs; the report says so) and a
``full`` paper-sized setting. Every run is an ordinary training config, so any row of a report can be
reproduced with ``robustdml train --config RUN_DIR/config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from robustdml.attacks.spec import AttackSpec, ers_spec
from robustdml.registry import Registry

if TYPE_CHECKING:  # the report imports this module; the types are only for readers
    from robustdml.reporting.blocks import Block
    from robustdml.reporting.report import RunSummary

SUITES: Registry = Registry("benchmark suite")


@dataclass
class RunSpec:
    name: str
    label: str
    config: Dict[str, Any]


@dataclass
class AttackProtocol:
    """How a suite measures robustness: one attack specification, run once per attack seed.

    The spec's ``worst case`` over its attacks is the headline robust R@1 of every report.
    """

    spec: AttackSpec = field(default_factory=AttackSpec)
    seeds: Tuple[int, ...] = (0,)

    @property
    def eps_list(self) -> Tuple[float, ...]:
        return self.spec.eps

    @property
    def with_ers(self) -> bool:
        return self.spec.ers is not None

    def to_dict(self) -> Dict[str, Any]:
        return {"spec": self.spec.to_dict(), "spec_key": self.spec.key(), "seeds": list(self.seeds)}


@dataclass
class Suite:
    """A benchmark: runs, how robustness is measured, and what its report says beyond the standard.

    ``sections(runs, figures)``, when given, returns extra report blocks (``robustdml.reporting.blocks``:
    ``Heading``, ``Paragraph``, ``Table``, ``Figure``, ...) placed after the standard results and
    costs; ``runs`` are the report's ``RunSummary`` objects in suite order (``run.label``,
    ``run.path.name`` = the RunSpec name, ``run.config``, ``run.benign("R@1")``,
    ``run.robust_r1(eps)`` -> ``Estimate`` with ``value``, ``low``, ``high``, ``cell()``, ``run.ers``),
    ``figures`` the folder to save PNGs into (``plots.lines`` draws a readable line plot).
    """

    name: str
    description: str
    runs: List[RunSpec]
    protocol: AttackProtocol
    scale: str
    notes: List[str] = field(default_factory=list)
    sections: Optional[Callable[[List["RunSummary"], Path], List["Block"]]] = None


def select_runs(suite: Suite, names: List[str]) -> Suite:
    """The suite restricted to the named runs, in the suite's order (e.g. to finish one run on another machine)."""
    wanted = [name.strip() for name in names if name.strip()]
    valid = [spec.name for spec in suite.runs]
    unknown = [name for name in wanted if name not in valid]
    if unknown or not wanted:
        raise ValueError(f"--runs: unknown run name(s) {', '.join(unknown) or '(none given)'} for suite "
                         f"{suite.name}; valid: {', '.join(valid)}")
    return replace(suite, runs=[spec for spec in suite.runs if spec.name in wanted])


def _base(full: bool, dataset: str = "fashion-mnist") -> Dict[str, Any]:
    """Shared training budget: full = all of Fashion-MNIST for 8 epochs; CPU = 600 images per class, 2 epochs."""
    if full:
        return {"dataset": dataset, "epochs": 8}
    return {"dataset": dataset, "epochs": 2, "train_per_class": 600, "test_per_class": 100, "batch_size": 64,
            "samples_per_class": 8}


# CPU budgets cut the attacked queries, never the attack's strength (steps, restarts, ERS profile).
CPU_QUERIES = 300


def _protocol(full: bool, seeds: Tuple[int, ...] = (0,), ers: bool = False, **spec) -> AttackProtocol:
    """The default evaluation (auto ensemble) on all test items (full) or CPU_QUERIES of them."""
    spec.setdefault("max_queries", None if full else CPU_QUERIES)
    if ers:
        spec["ers"] = ers_spec(28)
    return AttackProtocol(spec=AttackSpec(**spec), seeds=seeds)


def _cpu_note(full: bool) -> List[str]:
    if full:
        return ["Paper-sized setting: full Fashion-MNIST training and test sets, 8 epochs; every test item attacked."]
    return ["CPU-sized setting: 600 training images per class, 100 test images per class, 2 epochs, batch 64; "
            f"the full-strength attack on {CPU_QUERIES} random test queries (hence the confidence intervals). "
            "Run with --full for the paper-sized protocol."]


@SUITES.register("natural-robustness")
def natural_robustness(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Naturally trained contrastive and triplet models under the NN attack, 5 attack seeds (Panum et al., Table 1)."""
    runs = [RunSpec(f"natural-{loss}", f"natural {loss}", {**_base(full), "loss": loss})
            for loss in ("contrastive", "triplet")]
    protocol = _protocol(full, seeds=(0, 1, 2, 3, 4))
    return Suite("natural-robustness", natural_robustness.__doc__, runs, protocol, "full" if full else "cpu",
                 _cpu_note(full))


@SUITES.register("attack-rate")
def attack_rate(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Robust triplet training at attack rates P(gamma=1) in {0.1, 0.25, 0.5, 0.75, 1.0}."""
    runs = [RunSpec("natural-triplet", "natural", {**_base(full), "loss": "triplet"})]
    for rate in (0.1, 0.25, 0.5, 0.75, 1.0):
        runs.append(RunSpec(f"robust-triplet-rate{rate}", f"P(gamma=1)={rate}",
                            {**_base(full), "loss": "triplet", "defense": "robust-triplet",
                             "defense_options": {"attack_rate": rate, **({"steps": eta} if eta else {})}}))
    return Suite("attack-rate", attack_rate.__doc__, runs, _protocol(full), "full" if full else "cpu",
                 _cpu_note(full))


@SUITES.register("perturbation-target")
def perturbation_target(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Robust triplet training perturbing the positive vs the anchor vs the negative."""
    runs = [RunSpec(f"robust-triplet-{target}", f"perturb {target}",
                    {**_base(full), "loss": "triplet", "defense": "robust-triplet",
                     "defense_options": {"perturb": target, **({"steps": eta} if eta else {})}})
            for target in ("positive", "anchor", "negative")]
    return Suite("perturbation-target", perturbation_target.__doc__, runs,
                 _protocol(full), "full" if full else "cpu", _cpu_note(full))


@SUITES.register("defenses")
def defenses(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Natural, robust triplet, EST, ACT, HM variants and MDProp side by side (Zhou & Patel, CVPR 2022 table).

    The adversaries take eta = 8 steps at both scales: the CVPR paper's equal-cost setting, and with
    RobRank's fixed step of 3/255 from the clean image the reach (24/255) covers the evaluated eps.
    """
    steps = eta or 8
    adversarial = {"steps": steps}
    runs = [
        RunSpec("natural", "natural", {**_base(full), "loss": "triplet"}),
        RunSpec("robust-triplet", "robust triplet (Panum)", {**_base(full), "defense": "robust-triplet",
                                                             "defense_options": dict(adversarial)}),
        RunSpec("est", "EST", {**_base(full), "defense": "est", "defense_options": dict(adversarial)}),
        RunSpec("act", "ACT", {**_base(full), "defense": "act", "defense_options": dict(adversarial)}),
        RunSpec("hm", "HM (softhard)", {**_base(full), "defense": "hm", "defense_options": dict(adversarial)}),
        RunSpec("hm-lga-ics", "HM + LGA + ICS", {**_base(full), "defense": "hm",
                                                 "defense_options": {**adversarial, "lga": True, "ics": True}}),
        RunSpec("mdprop", "MDProp", {**_base(full), "defense": "mdprop"}),
    ]
    protocol = _protocol(full, ers=True)
    notes = _cpu_note(full) + [f"Adversarial training with eta = {steps} PGD steps at eps = 77/255 for EST, ACT "
                               f"and HM; robust triplet: eta = {steps} steps at its own eps 0.1; MDProp: the "
                               "reference's one step of eps 0.01 in normalised input space (each run's exact options: "
                               "Setting and configuration).",
                               "ERS uses the published 28px profile (PGD, 32 steps of 3/255 from the clean image, "
                               "eps 77/255) on the same queries."]
    return Suite("defenses", defenses.__doc__, runs, protocol, "full" if full else "cpu", notes)


@SUITES.register("synthetic")
def synthetic(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Two-Gaussian set with a 2-d embedding: natural vs robust training (Panum et al., Figure 2)."""
    base = {"dataset": "synthetic-gaussian", "embedding_dim": 2, "epochs": 20 if full else 10}
    runs = [RunSpec("natural", "natural", {**base, "loss": "triplet"}),
            RunSpec("robust-triplet", "robust triplet",
                    {**base, "loss": "triplet", "defense": "robust-triplet", "defense_options": {"eps": 0.15}})]
    protocol = _protocol(full, eps=(0.05, 0.1, 0.2), max_queries=None)
    return Suite("synthetic", synthetic.__doc__, runs, protocol, "full" if full else "cpu",
                 ["Two classes, means 0.25 and 0.75, sigma 0.025, 2-d inputs, MLP with a 2-d embedding."])


def build_suite(name: str, full: bool = False, eta: Optional[int] = None) -> Suite:
    return SUITES.get(name)(full=full, eta=eta)
