"""Robustness results of run directories, computed once per (attack spec, checkpoint, BN, seed).

``RUN/robustness/<key>/`` holds ``robustness.json`` (the cache itself), ``robustness.md``,
``robustness.csv`` and a plot; the key names the checkpoint, a digest of its weights, the batch
norm, the attack seed and the hash of the whole :class:`~robustdml.robustness.spec.AttackSpec`, so
changing any of them (eps, attacks, steps, ERS profile, retraining the run, ``--bn``) never
reuses an old result.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict

from robustdml.engine.config import TrainConfig
from robustdml.engine.evaluate import checkpoint_to_load, load_run
from robustdml.engine.run_dir import RunDirectory, lock_run_dir
from robustdml.robustness.spec import AttackProtocol


def checkpoint_file(run_path: Path, checkpoint: str = "best") -> Path:
    """The file ``load_run`` loads for ``checkpoint`` (it refuses a missing best.pt the same way)."""
    run = RunDirectory.open(run_path)
    config = TrainConfig.load(run.config_path, run_directory=True).resolved()
    used = checkpoint_to_load(run, config, checkpoint)
    return run.best_checkpoint if used == "best" else run.last_checkpoint


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def robustness_key(run_path: Path, protocol: AttackProtocol, seed: int, checkpoint: str = "best",
                   bn: str = "clean") -> str:
    """The folder name of a result: checkpoint, weights digest, batch norm, seed, spec hash."""
    path = checkpoint_file(run_path, checkpoint)
    return f"{path.stem}-{file_digest(path)[:10]}-bn-{bn}-seed{seed}-spec-{protocol.spec.key()}"


def robustness_folder(run_path: Path, protocol: AttackProtocol, seed: int, checkpoint: str = "best",
                      bn: str = "clean") -> Path:
    return Path(run_path) / "robustness" / robustness_key(run_path, protocol, seed, checkpoint, bn)


def robustness_for(run_path: Path, protocol: AttackProtocol, seed: int, device: str = "auto",
                   progress: bool = True, checkpoint: str = "best", bn: str = "clean") -> Dict:
    """The run's robustness under ``protocol`` with attack seed ``seed``, computed once and cached.

    The run directory is locked while the result is computed (one process at a time)."""
    from robustdml.robustness.evaluate import evaluate_robustness

    folder = robustness_folder(run_path, protocol, seed, checkpoint, bn)
    cache = folder / "robustness.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    with lock_run_dir(run_path):
        loaded = load_run(run_path, checkpoint=checkpoint, device=device, distribution=bn)
        report = evaluate_robustness(loaded.model, loaded.splits.test, protocol.spec, seed=seed,
                                     batch_size=loaded.config.eval_batch_size, device=loaded.device,
                                     progress=progress)
        report.settings.update({"run": str(run_path), **loaded.describe()})
        report.write(folder)
    return report.to_dict()
