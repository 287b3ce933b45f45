"""robustdml: adversarially robust deep metric learning, and honest robustness evaluation.

The public API is re-exported here and resolved lazily (PEP 562), so ``import robustdml`` stays
cheap (no torch or faiss import until a name is used) and no lower layer imports a higher one:

    import robustdml
    report = robustdml.evaluate_robustness(model, dataset, robustdml.AttackSpec(max_queries=300))

Layers (a layer imports only from layers below it): cli > reporting > robustness > engine > defenses >
attacks > evaluation > losses > models > data.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: Dict[str, str] = {
    # measuring robustness of any embedding model
    "AttackSpec": "robustdml.robustness.spec",
    "AttackProtocol": "robustdml.robustness.spec",
    "ers_spec": "robustdml.robustness.spec",
    "evaluate_robustness": "robustdml.robustness.evaluate",
    "RobustnessReport": "robustdml.robustness.evaluate",
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
