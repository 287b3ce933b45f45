"""What every benchmark suite is made of: its runs (ordinary training configs), its attack protocol and what its
report says beyond the standard; and the shared CPU-sized and paper-sized budgets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from robustdml.reporting.blocks import Block
from robustdml.reporting.model import RunSummary
from robustdml.registry import Registry
from robustdml.robustness.spec import AttackProtocol, AttackSpec, ers_spec

SUITES: Registry = Registry("benchmark suite")


@dataclass
class RunSpec:
    name: str
    label: str
    config: Dict[str, Any]


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
    ``sections_first`` puts them before the per-run results; ``featured`` names the runs the per-run
    figures and galleries show when a suite has too many runs for them (empty: all).
    """

    name: str
    description: str
    runs: List[RunSpec]
    protocol: AttackProtocol
    scale: str
    notes: List[str] = field(default_factory=list)
    sections: Optional[Callable[[List[RunSummary], Path], List[Block]]] = None
    sections_first: bool = False
    featured: Tuple[str, ...] = ()


def select_runs(suite: Suite, names: List[str]) -> Suite:
    """The suite restricted to the named runs, in the suite's order (e.g. to finish one run on another machine)."""
    wanted = [name.strip() for name in names if name.strip()]
    valid = [spec.name for spec in suite.runs]
    unknown = [name for name in wanted if name not in valid]
    if unknown or not wanted:
        raise ValueError(f"--runs: unknown run name(s) {', '.join(unknown) or '(none given)'} for suite "
                         f"{suite.name}; valid: {', '.join(valid)}")
    kept = [spec for spec in suite.runs if spec.name in wanted]
    if len(kept) == len(suite.runs):
        return suite
    left = [spec.label for spec in suite.runs if spec.name not in wanted]
    note = (f"This report holds {len(kept)} of the suite's {len(suite.runs)} runs; not run here: {', '.join(left)} "
            "(add them with `--runs`, or run the whole suite, into the same output folder).")
    return replace(suite, runs=kept, description=f"{suite.description.rstrip()} {note}")


def base_config(full: bool, dataset: str = "fashion-mnist") -> Dict[str, Any]:
    """Shared training budget: full = all of Fashion-MNIST for 8 epochs; CPU = 600 images per class, 2 epochs."""
    if full:
        return {"dataset": dataset, "epochs": 8}
    return {"dataset": dataset, "epochs": 2, "train_per_class": 600, "test_per_class": 100, "batch_size": 64,
            "samples_per_class": 8}


# CPU budgets cut the attacked queries, never the attack's strength (steps, restarts, ERS profile).
CPU_QUERIES = 200


def protocol_for(full: bool, seeds: Tuple[int, ...] = (0,), ers: bool = False, **spec) -> AttackProtocol:
    """The default evaluation (auto ensemble) on all test items (full) or CPU_QUERIES of them."""
    spec.setdefault("max_queries", None if full else CPU_QUERIES)
    if ers:
        spec["ers"] = ers_spec(28)
    return AttackProtocol(spec=AttackSpec(**spec), seeds=seeds)


def cpu_note(full: bool) -> List[str]:
    if full:
        return ["Paper-sized setting: full Fashion-MNIST training and test sets, 8 epochs; every test item attacked."]
    return ["CPU-sized setting: 600 training images per class, 100 test images per class, 2 epochs, batch 64; "
            f"the full-strength attack on {CPU_QUERIES} random test queries (hence the confidence intervals). "
            "Run with --full for the paper-sized protocol."]
