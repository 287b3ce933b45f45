"""Load a trained run back: its config, its test split and the checkpoint asked for, saying which one it used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from robustdml.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory, lock_run_dir
from robustdml.engine.setup import DataSplits, build_model_for, build_splits, select_device
from robustdml.models.multibn import CLEAN, multi_bn_modules, set_distribution

CHECKPOINTS = ("best", "last")


@dataclass
class LoadedRun:
    run: RunDirectory
    config: TrainConfig
    model: torch.nn.Module
    splits: DataSplits
    device: torch.device
    checkpoint: str = "best"        # the checkpoint file actually loaded: "best" or "last"
    requested: str = "best"         # the checkpoint asked for
    distribution: str = CLEAN       # the batch norm the model runs with (multi-BN models)
    step: Optional[int] = None      # training step at which the loaded checkpoint was written

    def describe(self) -> Dict[str, Any]:
        """What was evaluated, for the record next to the numbers."""
        path = self.run.best_checkpoint if self.checkpoint == "best" else self.run.last_checkpoint
        return {"checkpoint": self.checkpoint, "checkpoint_file": str(path), "step": self.step,
                "bn": self.distribution}

    def report_name(self, base: str) -> str:
        """``base`` keyed by the checkpoint and BN asked for: ``robustness`` for the run's selected checkpoint
        and the clean BN, ``robustness-last``, ``robustness-bn-uax``, ``robustness-last-bn-uax`` otherwise."""
        return base + ("-last" if self.requested == "last" else "") + (
            f"-bn-{self.distribution}" if self.distribution != CLEAN else "")


def checkpoint_to_load(run: RunDirectory, config: TrainConfig, requested: str) -> str:
    """``best`` or ``last``: the file that honestly stands for ``requested``.

    ``best`` is the checkpoint selected on validation; a run without a validation split has none, and its
    last checkpoint is the selected one. A run with validation but no best.pt is refused, never silently
    replaced by last.pt.
    """
    if requested not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {requested!r}")
    if requested == "best" and not run.best_checkpoint.is_file():
        if config.val_fraction == 0:
            return "last"
        raise CheckpointError(f"{run.best_checkpoint} does not exist (no epoch with validation has finished, or it "
                              "was deleted); evaluate the last checkpoint with --checkpoint last")
    return requested


def load_run(run_dir, checkpoint: str = "best", device: str = "auto", distribution: str = CLEAN) -> LoadedRun:
    """Rebuild the model of ``run_dir`` with the weights of its ``best`` (validation-selected) or ``last`` checkpoint.

    Models trained with one BN per input distribution (MDProp, AdvProp) run with the ``distribution``
    BN (``clean`` by default). The returned LoadedRun records which checkpoint and BN were used.
    """
    run = RunDirectory.open(run_dir)
    config = TrainConfig.load(run.config_path, run_directory=True).resolved()
    used = checkpoint_to_load(run, config, checkpoint)
    target = select_device(device)
    path = run.best_checkpoint if used == "best" else run.last_checkpoint
    state = load_checkpoint(path, map_location=target)
    splits = build_splits(config)
    model = build_model_for(config, splits.test.image_shape, from_checkpoint=True)
    load_model_state(model, state, path, config)
    if any(True for _ in multi_bn_modules(model)):
        set_distribution(model, distribution)
    elif distribution != CLEAN:
        raise ValueError(f"--bn {distribution!r}: this model has a single batch norm per layer")
    model.to(target).eval()
    return LoadedRun(run=run, config=config, model=model, splits=splits, device=target, checkpoint=used,
                     requested=checkpoint, distribution=distribution, step=state.get("global_step"))


def evaluate_run(run_dir, checkpoint: str = "best", device: str = "auto",
                 distribution: str = CLEAN) -> Dict[str, Any]:
    """Test-split metrics of a run, written to RUN_DIR/evaluation[-last][-bn-NAME].json with the checkpoint
    and BN used; returns that record. The run directory is locked meanwhile."""
    from robustdml.evaluation import compute_embeddings, evaluate_embeddings

    with lock_run_dir(run_dir):
        loaded = load_run(run_dir, checkpoint=checkpoint, device=device, distribution=distribution)
        embeddings, labels = compute_embeddings(loaded.model, loaded.splits.test,
                                                batch_size=loaded.config.eval_batch_size, device=loaded.device)
        record = {**loaded.describe(), **evaluate_embeddings(embeddings, labels)}
        loaded.run.write_json(f"{loaded.report_name('evaluation')}.json", record)
    return record
