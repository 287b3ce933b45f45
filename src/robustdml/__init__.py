"""robustdml: adversarially robust deep metric learning, and honest robustness evaluation.

The package in layers; a layer imports only from the layers below it (``tests/test_structure.py`` checks it):

    cli          the command line: parses flags, calls one function per command
    reporting    reports of run directories: read model (model.py), tables, figures, the page, suites/
    certify      randomized smoothing: certified and attacked bounds of a smoothed model
    robustness   the attack spec, the evaluation (state, checks, ERS), the typed result and its store
    engine       training and run directories: config, trainer, checkpoints, loading a run
    defenses     adversarial training methods (robust tuples, EST/ACT/HM, MDProp), one registry
    attacks      units: engines (PGD, APGD, C&W...), objectives, retrieval attacks, ensemble members
    evaluation   retrieval metrics (R@k, mAP@R, NMI), kNN, intervals, ERS arithmetic
    losses       metric losses and miners (pytorch-metric-learning), triplet sampling
    models       embedding networks and multi-BN
    data         datasets, their registry entries (facts, download), samplers
    shared       registry.py, options.py (numbers such as 8/255), files.py (safe writes), version.py,
                 console.py (-q/-v, threads, warnings), progress.py (bars, one line per stage off a terminal)

Each registry (datasets, models, losses, attack engines, retrieval attacks, ensemble members, defenses,
suites) is filled by its modules; adding one of each is one new file plus one registry line
(CONTRIBUTING.md shows how).

The public API is re-exported here and resolved lazily (PEP 562), so ``import robustdml`` stays
cheap (no torch or faiss import until a name is used) and no lower layer imports a higher one:

    import robustdml
    result = robustdml.evaluate_robustness(model, dataset, robustdml.AttackSpec(max_queries=300))
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

from robustdml.version import __version__

# public name -> module that defines it
_EXPORTS: Dict[str, str] = {
    # measuring robustness of any embedding model
    "AttackSpec": "robustdml.robustness.spec",
    "AttackProtocol": "robustdml.robustness.spec",
    "ers_spec": "robustdml.robustness.spec",
    "evaluate_robustness": "robustdml.robustness.evaluate",
    "RobustnessResult": "robustdml.robustness.result",
    "UntrustworthyEvaluation": "robustdml.robustness.checks",
    "certify_model": "robustdml.certify",
    "CertifySettings": "robustdml.certify",
    "empirical_robustness_score": "robustdml.evaluation.ers",
    # retrieval metrics
    "compute_embeddings": "robustdml.evaluation",
    "evaluate_embeddings": "robustdml.evaluation",
    "knn": "robustdml.evaluation",
    # training and run directories
    "TrainConfig": "robustdml.engine.config",
    "train": "robustdml.engine.trainer",
    "evaluate_run": "robustdml.engine.evaluate",
    "load_run": "robustdml.engine.evaluate",
    # building blocks
    "build_dataset": "robustdml.data",
    "limit_per_class": "robustdml.data",
    "DATASETS": "robustdml.data",
    "build_model": "robustdml.models",
    "EmbeddingModel": "robustdml.models",
    "build_defense": "robustdml.defenses",
    "DEFENSES": "robustdml.defenses",
    "build_loss": "robustdml.losses",
    "LOSSES": "robustdml.losses",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'robustdml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
