"""Load a trained run back: its config, its test split and its selected checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch

from robustdml.engine.checkpoint import load_checkpoint
from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.engine.setup import DataSplits, build_model_for, build_splits, select_device
from robustdml.models.multibn import multi_bn_modules, set_distribution


@dataclass
class LoadedRun:
    run: RunDirectory
    config: TrainConfig
    model: torch.nn.Module
    splits: DataSplits
    device: torch.device


def load_run(run_dir, checkpoint: str = "best", device: str = "auto", distribution: str = "clean") -> LoadedRun:
    """Rebuild the model of ``run_dir`` with the weights of its ``best`` (validation-selected) or ``last`` checkpoint.

    Models trained with one BN per input distribution (MDProp, AdvProp) run with the ``distribution``
    BN (``clean`` by default).
    """
    run = RunDirectory.open(run_dir)
    config = TrainConfig.load(run.config_path).resolved()
    path = run.best_checkpoint if checkpoint == "best" and run.best_checkpoint.is_file() else run.last_checkpoint
    target = select_device(device)
    state = load_checkpoint(path, map_location=target)
    splits = build_splits(config)
    model = build_model_for(config, splits.test.image_shape, from_checkpoint=True)
    model.load_state_dict(state["model"])
    if any(True for _ in multi_bn_modules(model)):
        set_distribution(model, distribution)
    elif distribution != "clean":
        raise ValueError(f"--bn {distribution!r}: this model has a single batch norm per layer")
    model.to(target).eval()
    return LoadedRun(run=run, config=config, model=model, splits=splits, device=target)


def evaluate_run(run_dir, checkpoint: str = "best", device: str = "auto", distribution: str = "clean") -> Dict[str, Any]:
    from robustdml.evaluation import compute_embeddings, evaluate_embeddings

    loaded = load_run(run_dir, checkpoint=checkpoint, device=device, distribution=distribution)
    embeddings, labels = compute_embeddings(loaded.model, loaded.splits.test,
                                            batch_size=loaded.config.eval_batch_size, device=loaded.device)
    metrics = evaluate_embeddings(embeddings, labels)
    loaded.run.write_json("evaluation.json", {"checkpoint": checkpoint, **metrics})
    return metrics
