"""Benchmark suites: the experiment protocols of the seed papers, as lists of runs plus an attack protocol.

Each suite has a CPU-sized default (a subset of Fashion-MNIST, few epochs; the report says so) and a ``full``
paper-sized setting. Every run is an ordinary training config, so any row of a report can be reproduced with
``robustdml train --config RUN_DIR/config.yaml``. A suite is one module here: a function registered with
``@SUITES.register(name)`` returning a :class:`Suite` (with its own report ``sections`` when it has any),
plus its line in the import below.
"""

from robustdml.reporting.suites.base import CPU_QUERIES, SUITES, RunSpec, Suite, select_runs
from robustdml.reporting.suites import (attack_rate, defenses, mdprop, natural_robustness,  # noqa: F401
                                        perturbation_target, robrank_fashion, synthetic)
from robustdml.reporting.suites.mdprop import MDPROP_OURS


def build_suite(name: str, full: bool = False, eta=None) -> Suite:
    return SUITES.get(name)(full=full, eta=eta)


__all__ = ["CPU_QUERIES", "MDPROP_OURS", "SUITES", "RunSpec", "Suite", "build_suite", "select_runs"]
