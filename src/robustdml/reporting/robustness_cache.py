"""Robustness results of run directories, computed once per (attack spec, checkpoint, BN, seed).

``RUN/robustness/<key>/`` holds ``robustness.json`` (the cache itself), ``robustness.md``,
``robustness.csv`` and a plot; the key names the checkpoint, a digest of its weights, the batch
norm, the attack seed and the hash of the whole :class:`~robustdml.attacks.spec.AttackSpec`, so
changing any of them (eps, attacks, steps, ERS profile, retraining the run, ``--bn``) never
reuses an old result.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict

from robustdml.engine.evaluate import load_run
from robustdml.engine.run_dir import RunDirectory
from robustdml.reporting.suites import AttackProtocol


def checkpoint_file(run_path: Path, checkpoint: str = "best") -> Path:
    """The file ``load_run`` uses for ``checkpoint`` (best.pt when it exists for "best", else last.pt)."""
    run = RunDirectory(run_path)
    if checkpoint == "best" and run.best_checkpoint.is_file():
        return run.best_checkpoint
    return run.last_checkpoint


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def robustness_key(run_path: Path, protocol: AttackProtocol, seed: int, checkpoint: str = "best",
                   bn: str = "clean") -> str:
    """The folder name of a result: checkpoint, weights digest, batch norm, seed, spec hash."""
    RunDirectory.open(run_path)  # a clear error when it is not a run directory
    weights = file_digest(checkpoint_file(run_path, checkpoint))[:10]
    return f"{checkpoint}-{weights}-bn-{bn}-seed{seed}-spec-{protocol.spec.key()}"


def robustness_folder(run_path: Path, protocol: AttackProtocol, seed: int, checkpoint: str = "best",
                      bn: str = "clean") -> Path:
    return Path(run_path) / "robustness" / robustness_key(run_path, protocol, seed, checkpoint, bn)


def robustness_for(run_path: Path, protocol: AttackProtocol, seed: int, device: str = "auto",
                   progress: bool = True, checkpoint: str = "best", bn: str = "clean") -> Dict:
    """The run's robustness under ``protocol`` with attack seed ``seed``, computed once and cached."""
    from robustdml.attacks.suite import evaluate_robustness

    folder = robustness_folder(run_path, protocol, seed, checkpoint, bn)
    cache = folder / "robustness.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    loaded = load_run(run_path, checkpoint=checkpoint, device=device, distribution=bn)
    report = evaluate_robustness(loaded.model, loaded.splits.test, protocol.spec, seed=seed,
                                 batch_size=loaded.config.eval_batch_size, device=loaded.device, progress=progress)
    report.settings.update({"run": str(run_path), "checkpoint": checkpoint, "bn": bn})
    report.write(folder)
    return report.to_dict()
