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
    ``run.robust_r1(eps)`` -> ``Estimate`` with ``value``, ``low``, ``high``, ``cell()``, ``run.ers``,
    ``run.ers_terms()`` (0-100 terms), ``run.ers_scores()`` (raw inputs as published)),
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
    protocol = _protocol(full, ers=True)
    notes = _cpu_note(full) + [f"Adversarial training with eta = {steps} PGD steps at eps = 77/255 for EST, ACT "
                               f"and HM; robust triplet: eta = {steps} steps at its own eps 0.1; MDProp: the "
                               "reference's one step of eps 0.01 in normalised input space (each run's exact options: "
                               "Setting and configuration).",
                               "ERS uses the published 28px profile (PGD, 32 steps of 3/255 from the clean image, "
                               "eps 77/255) on the same queries."]
    return Suite("defenses", defenses.__doc__, runs, protocol, "full" if full else "cpu", notes)


# RobRank's recipe for Fashion-MNIST (robrank/configs/configs_rank.py ``rc2f2`` with the loss ``ptripletN``):
# the rc2f2 model (512-d embedding), batches of 128 SPC-2 pairs (256 images), the spc2-random miner, the
# triplet loss with margin 0.2 averaged over all triplets, Adam lr 1e-3 with weight decay 1e-7, 8 epochs
# (maxepoch 16 // 2 for pair losses).
ROBRANK_RECIPE = {"dataset": "fashion-mnist", "model": "rc2f2", "loss": "triplet",
                  "loss_options": {"reduction": "mean"}, "miner": "spc2-random", "sampler": "pairs",
                  "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-7, "epochs": 8}
# CPU size (40 minutes on 2 cores for all seven runs, evaluation included): a subset and fewer epochs;
# never the attack steps, eta or the ERS profile.
ROBRANK_CPU = {"train_per_class": 400, "epochs": 2}
PUBLISHED_ETA, EQUAL_COST_ETA = 32, 8


@SUITES.register("robrank-fashion")
def robrank_fashion(full: bool = False, eta: Optional[int] = None) -> Suite:
    """RobRank's published Fashion-MNIST table (natural, EST and ACT at eta 32) and the equal-cost runs at
    eta 8 (EST, ACT, HM, HM + LGA + ICS), trained with the reference's recipe, ours beside the published
    values for R@1 and every ERS term (Zhou & Patel, CVPR 2022)."""
    from robustdml.reporting.robrank_fashion import comparison_section

    base = {**ROBRANK_RECIPE, **({} if full else ROBRANK_CPU)}
    cheap = eta or EQUAL_COST_ETA

    def run(name: str, label: str, defense: str = "natural", **options) -> RunSpec:
        return RunSpec(name, label, {**base, "defense": defense, **({"defense_options": options} if options else {})})

    runs = [run("natural", "natural"),
            run("est", f"EST (eta {PUBLISHED_ETA})", "est", steps=PUBLISHED_ETA),
            run("act", f"ACT (eta {PUBLISHED_ETA})", "act", steps=PUBLISHED_ETA),
            run(f"est-eta{cheap}", f"EST (eta {cheap})", "est", steps=cheap),
            run(f"act-eta{cheap}", f"ACT (eta {cheap})", "act", steps=cheap),
            run(f"hm-eta{cheap}", f"HM (eta {cheap})", "hm", steps=cheap),
            run(f"hm-lga-ics-eta{cheap}", f"HM + LGA + ICS (eta {cheap})", "hm", steps=cheap, lga=True, ics=True)]
    recipe = ("The reference's training recipe in every run (robrank/configs/configs_rank.py `rc2f2`, loss "
              "`ptripletN`): model rc2f2 (512-d embedding), batches of 128 SPC-2 pairs (each anchor followed by a "
              "random image of its class; `sampler: pairs`), miner spc2-random (one random negative per pair), "
              "triplet loss with margin 0.2 averaged over all triplets (`reduction: mean`), Adam lr 1e-3, weight "
              "decay 1e-7. Adversaries: eps 77/255 in steps of 3/255 from the clean image, eta = "
              f"{PUBLISHED_ETA} (the published rows) or {cheap} (equal cost). 10% of the training data is held out "
              "to select the checkpoint (the reference trains on all 60,000 images and keeps the last one).")
    queries = "every test item" if full else f"{CPU_QUERIES} random test queries"
    attack = (f"Robust R@1: the default evaluation (auto ensemble) on {queries}; ERS: the published 28px profile "
              "(PGD, 32 steps of 3/255 from the clean image, eps 77/255) on the same queries.")
    if full:
        scale = (f"Paper-sized setting: all of Fashion-MNIST (54,000 training images after the validation split, "
                 f"10,000 test images), {ROBRANK_RECIPE['epochs']} epochs.")
    else:
        scale = (f"CPU-sized setting, cut from the reference protocol in three ways only: "
                 f"{ROBRANK_CPU['train_per_class']} training images per class (of 5,400 after the validation split), "
                 f"{ROBRANK_CPU['epochs']} epochs instead of {ROBRANK_RECIPE['epochs']}, and the attacks on "
                 f"{CPU_QUERIES} random test queries instead of all 10,000 (the gallery is the whole test set). "
                 "Attack steps, eta and the ERS profile are the reference's. Run with --full for the reference "
                 "protocol.")
    return Suite("robrank-fashion", " ".join(robrank_fashion.__doc__.split()), runs, _protocol(full, ers=True),
                 "full" if full else "cpu", [scale, recipe, attack], sections=comparison_section)


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
