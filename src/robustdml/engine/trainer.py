"""The training loop: m-per-class (or SPC-2 pair) batches -> defense step -> optimiser, with crash-safe checkpoints.

What it guarantees:
- resume from ``checkpoints/last.pt`` continues the exact same sequence of batches and random
  numbers (sampler reseeded per epoch, mid-epoch position stored, the run generator's state saved);
- model selection uses the validation split carved from training data, never the test split;
- a NaN/inf loss or collapsed embeddings stop the run with a clear message, and the last good
  checkpoint stays on disk.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

from robustdml.data.base import movable_to_device
from robustdml.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from robustdml.engine.config import ConfigError, TrainConfig, resume_config
from robustdml.engine.distributed import DistributedContext, init_distributed, shutdown_distributed
from robustdml.engine.failures import RunFailed, RunInterrupted, resume_hint, runtime_failure
from robustdml.engine.run_dir import RunDirectory, RunLock
from robustdml.engine.resume import capture_global_rng, checked_resume_state, restore_global_rng
from robustdml.engine.setup import Components, build_components, build_sampler, select_device
from robustdml.models.mode import eval_mode
from robustdml.progress import progress_bar, write_line


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or the embeddings collapsed; the last good checkpoint is kept."""


# In-memory training images up to this size are copied to the GPU once (uint8 Fashion-MNIST: 47 MB).
MAX_DEVICE_DATASET_BYTES = 2 << 30
# Mean pairwise distance of unit embeddings below this, for this many steps in a row, is a collapse.
COLLAPSE_DISTANCE = 1e-3
COLLAPSE_PATIENCE = 20


def mean_pairwise_distance(embeddings: torch.Tensor) -> float:
    centred = embeddings.float() - embeddings.float().mean(dim=0, keepdim=True)
    # E||x_i - x_j||^2 = 2 * mean squared deviation from the mean: O(B*D), no B x B matrix.
    return math.sqrt(max(2.0 * centred.pow(2).sum(dim=1).mean().item(), 0.0))


def batches(dataset, sampler, num_workers: int, pin_memory: bool) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) for the sampler's index lists; in-memory sets skip per-item collation."""
    if hasattr(dataset, "get_batch"):
        for indices in sampler:
            yield dataset.get_batch(torch.as_tensor(indices))
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                             pin_memory=pin_memory)
        for images, labels in loader:
            yield images, labels


class Trainer:
    def __init__(self, config: TrainConfig, run: RunDirectory, state: Optional[Dict[str, Any]] = None,
                 distributed: Optional[DistributedContext] = None, components: Optional[Components] = None):
        """``state``: the checkpoint to continue from, loaded and checked (see engine.resume); ``components``: the
        run's pieces as built by the validation pass (built here when not given). Writes nothing to the disk."""
        self.config = config.resolved()
        self.run = run
        self.dist = distributed or DistributedContext()
        self.rank = self.dist.rank
        self.world_size = self.dist.world_size
        self.is_main = self.dist.is_main
        # Same global seed on every rank (identical initial weights); per-rank stream for adversaries.
        components = components or build_components(self.config, self.rank, self.world_size)
        self.device = components.device
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.generator = torch.Generator().manual_seed(self.config.seed + self.rank)
        self.splits = components.splits
        self.model = components.model.to(self.device)
        if self.config.channels_last and self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.defense = components.defense
        self.defense.embedding_hook = self.dist.gather_embeddings
        self.defense.world_size = self.world_size
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.sampler = components.sampler if components.sampler is not None else build_sampler(
            self.config, self.splits.train.labels, self.rank, self.world_size)
        self.train_source = self._train_source()
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_val = -math.inf
        self.epoch_loss = [0.0, 0]  # sum and count of this epoch's step losses, kept in checkpoints
        self.total_passes = 0.0
        self.train_seconds = 0.0
        self._collapsed_steps = 0
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.config.amp == "fp16" and self.device.type == "cuda")
        if state is not None:
            self._apply(state)
        if self.epoch > self.config.epochs:
            raise ConfigError(f"invalid epochs={self.config.epochs}: the run in {run.path} has already trained "
                              f"{self.epoch} epochs; pass --epochs {self.epoch} or more")
        self._writer = None

    # ----------------------------------------------------------------------------- setup helpers
    def _train_source(self):
        """The training split, with its images on the GPU when they are in memory and small enough."""
        train = self.splits.train
        if self.device.type == "cuda" and movable_to_device(train) and train.nbytes <= MAX_DEVICE_DATASET_BYTES:
            return train.on_device(self.device)
        return train

    @property
    def writer(self):
        if self._writer is None and self.is_main:
            from robustdml.engine.events import event_writer

            self._writer = event_writer(self.run.subfolder("tb"))
        return self._writer

    def autocast(self):
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ----------------------------------------------------------------------------- checkpoints
    def _state(self) -> Dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "defense": self.defense.state_dict(),
            "generator": self.generator.get_state(),
            "global_rng": capture_global_rng(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "epoch_loss": list(self.epoch_loss),
            "total_passes": self.total_passes,
            "train_seconds": self.train_seconds,
            "config": self.config.to_dict(),
        }

    def save(self, path) -> None:
        if self.is_main:
            self.run.subfolder("checkpoints")  # a real folder of the run, never a symlink out of it
            save_checkpoint(self._state(), path)

    def _apply(self, state: Dict[str, Any]) -> None:
        """Continue from checkpoint ``state`` (of this run's last.pt)."""
        load_model_state(self.model, state, self.run.last_checkpoint, self.config)
        self.optimizer.load_state_dict(state["optimizer"])
        self.defense.load_state_dict(state.get("defense", {}))
        self.generator.set_state(state["generator"])
        if "global_rng" in state:
            restore_global_rng(state["global_rng"])
        self.epoch = state["epoch"]
        self.step_in_epoch = state["step_in_epoch"]
        self.global_step = state["global_step"]
        self.best_val = state["best_val"]
        if "epoch_loss" in state:  # checkpoints of earlier releases: the epoch's mean covers the resumed steps only
            self.epoch_loss = [float(state["epoch_loss"][0]), int(state["epoch_loss"][1])]
        self.total_passes = state["total_passes"]
        self.train_seconds = state["train_seconds"]

    # ----------------------------------------------------------------------------- loop
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.config.channels_last and images.dim() == 4 and self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with self.autocast():
            output = self.defense.step(self.model, images, labels, self.generator)
        loss = output.loss
        # The one host sync of a step, taken before backward: the GPU then runs backward and the
        # optimiser step while the host already prepares the next batch.
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingDiverged(
                f"loss became {loss_value} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}; "
                f"training stopped and the last good checkpoint {self.run.last_checkpoint} was kept. "
                "Try a lower --lr or --amp none.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.dist.sum_gradients(self.model)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._check_collapse(images)
        return {"loss": loss_value, "passes": output.passes, **output.info}

    def _check_collapse(self, images: torch.Tensor) -> None:
        """Every step is too costly; look at embeddings every 10 steps, in eval mode, without grad."""
        if self.global_step % 10:
            return
        with torch.no_grad(), eval_mode(self.model):
            spread = mean_pairwise_distance(self.model(images))
        self._collapsed_steps = self._collapsed_steps + 10 if spread < COLLAPSE_DISTANCE else 0
        if self._collapsed_steps >= COLLAPSE_PATIENCE:
            raise TrainingDiverged(
                f"embeddings collapsed (mean pairwise distance {spread:.2e} < {COLLAPSE_DISTANCE}) at epoch "
                f"{self.epoch + 1}; training stopped and the last good checkpoint {self.run.last_checkpoint} "
                "was kept. Try a lower --lr, a smaller attack eps, or another miner.")

    def fit(self) -> Dict[str, Any]:
        config = self.config
        pin = self.device.type == "cuda"
        while self.epoch < config.epochs:
            self.sampler.set_epoch(self.epoch)
            total = len(self.sampler)
            stream = itertools.islice(batches(self.train_source, self.sampler, config.num_workers, pin),
                                      self.step_in_epoch, None)
            bar = progress_bar(stream, total=total, initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{config.epochs}",
                       disable=not (config.progress and self.is_main), leave=False, dynamic_ncols=True)
            if self.step_in_epoch == 0:
                self.epoch_loss = [0.0, 0]
            epoch_start = time.perf_counter()
            for images, labels in bar:
                record = self.train_step(images, labels)
                self.epoch_loss = [self.epoch_loss[0] + record["loss"], self.epoch_loss[1] + 1]
                self.total_passes += record["passes"]
                self.step_in_epoch += 1
                self.global_step += 1
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                if self.is_main and self.global_step % 10 == 0:
                    self.writer.add_scalar("train/loss", record["loss"], self.global_step)
                if self.global_step % config.checkpoint_every == 0 and self.step_in_epoch < total:
                    # (an epoch's last step is checkpointed by _end_of_epoch, after its metrics row)
                    self.train_seconds += time.perf_counter() - epoch_start
                    epoch_start = time.perf_counter()
                    self.save(self.run.last_checkpoint)
            bar.close()
            self.train_seconds += time.perf_counter() - epoch_start
            self.epoch += 1
            self.step_in_epoch = 0
            self._end_of_epoch()
        return self.finish()

    def _end_of_epoch(self) -> None:
        record: Dict[str, Any] = {"epoch": self.epoch, "step": self.global_step,
                                  "train_loss": float(self.epoch_loss[0] / max(self.epoch_loss[1], 1)),
                                  "train_seconds": self.train_seconds, "passes": self.total_passes}
        if self.splits.val is not None and self.is_main:
            metrics = self.evaluate(self.splits.val, with_nmi=False)
            record.update({f"val/{k}": v for k, v in metrics.items()})
            if metrics["R@1"] > self.best_val:
                self.best_val = metrics["R@1"]
                self.save(self.run.best_checkpoint)
        self.dist.barrier()
        if self.is_main:
            self.run.log_metrics(record)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.writer.add_scalar(key if "/" in key else f"train/{key}", value, self.global_step)
            summary = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
            write_line(f"epoch {self.epoch}/{self.config.epochs}: {summary}")
        self.save(self.run.last_checkpoint)

    def evaluate(self, dataset, with_nmi: bool = True) -> Dict[str, float]:
        from robustdml.evaluation import compute_embeddings, evaluate_embeddings

        embeddings, labels = compute_embeddings(self.model, dataset, batch_size=self.config.eval_batch_size,
                                                device=self.device, progress=False)
        return evaluate_embeddings(embeddings, labels, with_nmi=with_nmi)

    def finish(self) -> Dict[str, Any]:
        """Test-set metrics of the model selected on validation (or the last one without validation)."""
        selected = "last"
        if self.splits.val is not None and self.run.best_checkpoint.is_file():
            best = load_checkpoint(self.run.best_checkpoint)
            load_model_state(self.model, best, self.run.best_checkpoint, self.config)
            selected = "best-val"
        results: Dict[str, Any] = {}
        if self.is_main:
            test = self.evaluate(self.splits.test)
            results = {"checkpoint": selected, "epochs": self.epoch, "train_seconds": self.train_seconds,
                       "passes": self.total_passes, **{f"test/{k}": v for k, v in test.items()}}
            self.run.write_json(RunDirectory.RESULTS, results)
            self.run.log_metrics({"final": True, "step": self.global_step, **results})
            if self._writer is not None:
                self._writer.close()
        self.dist.barrier()
        return results


def train(config: Optional[TrainConfig], resume_dir: Optional[str] = None, changes: Optional[Dict[str, Any]] = None,
          overwrite: bool = False) -> Tuple[RunDirectory, Dict[str, Any]]:
    """Train ``config`` into a new run directory, or resume the run in ``resume_dir``.

    A new run is validated (config, data source, model, defense, sampler, device: :func:`build_components`)
    before anything touches the disk; its directory must be new or empty (``overwrite`` empties an old run) and
    gets its config.yaml at once, so a run that fails before its first checkpoint can be resumed or
    overwritten. Resuming applies ``changes`` (the fields given again) where that is safe and refuses the rest
    (:func:`resume_config`), and loads and checks the checkpoint before anything changes
    (:func:`checked_resume_state`); a finished run is not trained again unless ``changes`` asks for more epochs.
    The run directory is locked while the run lasts (:class:`RunLock`).
    """
    if resume_dir and overwrite:
        raise ConfigError("--overwrite and --resume exclude each other: --resume continues the run, --overwrite "
                          "replaces it")
    if resume_dir:
        return _resume(RunDirectory.open(resume_dir), changes or {})
    config = config.resolved()
    components = build_components(config)  # the validation pass: nothing is on disk yet
    path = Path(config.output) if config.output else RunDirectory.default_path([config.dataset, config.loss,
                                                                               config.defense])
    context = init_distributed(components.device.type)
    with _leaving_on_error(context):
        components.sampler = build_sampler(config, components.splits.train.labels, context.rank, context.world_size)
        if context.is_main:
            RunDirectory.check_new(path, overwrite)  # before the lock file is made in a folder that is not a run
        with _main_rank_lock(context, path, create=True):
            run = RunDirectory(Path(context.broadcast(str(path))))
            with _reported_failures(run):
                trainer = Trainer(config, run, distributed=context, components=components)  # writes nothing
            if context.is_main:
                config.save(RunDirectory.create(str(run.path), [], overwrite=overwrite).config_path)
            return _fit(trainer, context)


def _resume(run: RunDirectory, changes: Dict[str, Any]) -> Tuple[RunDirectory, Dict[str, Any]]:
    if changes.get("output") and Path(changes["output"]).resolve() != run.path.resolve():
        raise ConfigError(f"--output {changes['output']} differs from the run being resumed ({run.path}); drop "
                          "--output, or start a new run there without --resume")
    saved = TrainConfig.load(run.config_path, run_directory=True)
    config, applied = resume_config(saved, changes)
    context = init_distributed(select_device(config.device).type)
    with _leaving_on_error(context), _main_rank_lock(context, run.path, create=False):
        finished = run.results_path.is_file()
        if finished and config.epochs <= saved.epochs:
            if config.epochs < saved.epochs:
                raise ConfigError(f"invalid epochs={config.epochs}: the run in {run.path} is finished after "
                                  f"{saved.epochs} epochs; pass --epochs {saved.epochs + 1} or more to train longer")
            shutdown_distributed(context)
            if context.is_main:
                print(f"{run.path} is finished ({saved.epochs} epochs); nothing to do (pass --epochs "
                      f"{saved.epochs + 1} or more to train it longer)", file=sys.stderr)
            return run, run.read_results()
        state = checked_resume_state(run, saved, required=finished)  # before this run changes anything
        components = build_components(config, context.rank, context.world_size)  # the validation pass
        with _reported_failures(run):
            trainer = Trainer(config, run, state=state, distributed=context, components=components)
        if context.is_main:  # the checkpoint fits: now the resumed run may write
            note: Dict[str, Any] = {"changed": applied} if applied else {}
            if finished:  # a finished run's reports describe checkpoints about to change
                note["removed"] = run.remove_reports()
            run.truncate_metrics(trainer.global_step)  # rows logged after the checkpoint would be logged twice
            trainer.config.save(run.config_path)
            if note:  # what changed on resuming is recorded with the metrics
                run.log_metrics({"event": "resume", "resumed_at_step": trainer.global_step, **note})
        return _fit(trainer, context)


@contextlib.contextmanager
def _leaving_on_error(context: DistributedContext):
    """On any error, leave the process group without waiting for peers that may never come."""
    try:
        yield
    except BaseException:
        shutdown_distributed(context, wait_for_peers=False)
        raise


def _main_rank_lock(context: DistributedContext, path: Path, create: bool):
    """The run directory's lock, held by the process that writes it (rank 0)."""
    return RunLock(path, create=create) if context.is_main else contextlib.nullcontext()


@contextlib.contextmanager
def _reported_failures(run: RunDirectory):
    """Runtime failures (disk full, out of memory) and Ctrl-C say where the last good checkpoint of ``run`` is."""
    try:
        yield
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; {resume_hint(run.path)}") from None
    except Exception as error:
        failure = runtime_failure(error)
        if failure:
            raise RunFailed(f"training stopped: {failure} ({type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no details'}); "
                            f"{resume_hint(run.path)} once that is fixed") from error
        raise


def _fit(trainer: Trainer, context: DistributedContext) -> Tuple[RunDirectory, Dict[str, Any]]:
    """Train ``trainer``'s run to its last epoch."""
    with _reported_failures(trainer.run):
        results = trainer.fit()
    shutdown_distributed(context)
    return trainer.run, results
