"""Benchmark suites: the experiment protocols of the seed papers, as lists of runs plus an attack protocol.

Each suite has a CPU-sized default (a subset of Fashion-MNIST, few epochs; the report says so) and a
``full`` paper-sized setting. Every run is an ordinary training config, so any row of a report can be
reproduced with ``robustdml train --config RUN_DIR/config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from robustdml.registry import Registry

SUITES: Registry = Registry("benchmark suite")


@dataclass
class RunSpec:
    name: str
    label: str
    config: Dict[str, Any]


@dataclass
class AttackProtocol:
    attacks: Tuple[str, ...] = ("nn",)
    eps_list: Tuple[float, ...] = (0.01, 0.05, 0.1)
    steps: int = 5
    engine: str = "pgd"
    seeds: Tuple[int, ...] = (0,)
    max_queries: Optional[int] = 300
    with_ers: bool = False
    ers_steps: Optional[int] = None

    def tag(self, seed: int) -> str:
        return f"{self.engine}{self.steps}-q{self.max_queries or 'all'}-s{seed}" + (
            f"-ers{self.ers_steps or 32}" if self.with_ers else "")


@dataclass
class Suite:
    name: str
    description: str
    runs: List[RunSpec]
    protocol: AttackProtocol
    scale: str
    notes: List[str] = field(default_factory=list)


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


def _cpu_note(full: bool) -> List[str]:
    if full:
        return ["Paper-sized setting: full Fashion-MNIST training and test sets, 8 epochs."]
    return ["CPU-sized setting: 600 training images per class, 100 test images per class, 2 epochs, batch 64; "
            "attacks on 300 random test queries. Run with --full for the paper-sized protocol."]


@SUITES.register("natural-robustness")
def natural_robustness(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Naturally trained contrastive and triplet models under the NN attack, 5 attack seeds (Panum et al., Table 1)."""
    runs = [RunSpec(f"natural-{loss}", f"natural {loss}", {**_base(full), "loss": loss})
            for loss in ("contrastive", "triplet")]
    protocol = AttackProtocol(seeds=(0, 1, 2, 3, 4), max_queries=None if full else 300)
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
    return Suite("attack-rate", attack_rate.__doc__, runs, AttackProtocol(max_queries=None if full else 300),
                 "full" if full else "cpu", _cpu_note(full))


@SUITES.register("perturbation-target")
def perturbation_target(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Robust triplet training perturbing the positive vs the anchor vs the negative."""
    runs = [RunSpec(f"robust-triplet-{target}", f"perturb {target}",
                    {**_base(full), "loss": "triplet", "defense": "robust-triplet",
                     "defense_options": {"perturb": target, **({"steps": eta} if eta else {})}})
            for target in ("positive", "anchor", "negative")]
    return Suite("perturbation-target", perturbation_target.__doc__, runs,
                 AttackProtocol(max_queries=None if full else 300), "full" if full else "cpu", _cpu_note(full))


@SUITES.register("defenses")
def defenses(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Natural, robust triplet, EST, ACT, HM variants and MDProp side by side (Zhou & Patel, CVPR 2022 table)."""
    steps = eta or (8 if full else 3)
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
    protocol = AttackProtocol(max_queries=None if full else 300, with_ers=True)
    notes = _cpu_note(full) + [f"Adversarial training with eta = {steps} PGD steps at eps = 77/255 "
                               "(robust triplet: eps 0.1, 5 steps by default; MDProp: eps 0.03, 3 steps).",
                               "ERS uses the published 28px profile (PGD, 32 steps of 3/255, eps 77/255)."]
    return Suite("defenses", defenses.__doc__, runs, protocol, "full" if full else "cpu", notes)


@SUITES.register("synthetic")
def synthetic(full: bool = False, eta: Optional[int] = None) -> Suite:
    """Two-Gaussian set with a 2-d embedding: natural vs robust training (Panum et al., Figure 2)."""
    base = {"dataset": "synthetic-gaussian", "embedding_dim": 2, "epochs": 20 if full else 10}
    runs = [RunSpec("natural", "natural", {**base, "loss": "triplet"}),
            RunSpec("robust-triplet", "robust triplet",
                    {**base, "loss": "triplet", "defense": "robust-triplet", "defense_options": {"eps": 0.15}})]
    protocol = AttackProtocol(eps_list=(0.05, 0.1, 0.2), max_queries=None)
    return Suite("synthetic", synthetic.__doc__, runs, protocol, "full" if full else "cpu",
                 ["Two classes, means 0.25 and 0.75, sigma 0.025, 2-d inputs, MLP with a 2-d embedding."])


def build_suite(name: str, full: bool = False, eta: Optional[int] = None) -> Suite:
    return SUITES.get(name)(full=full, eta=eta)
