"""Robustness results of run directories, computed once per (checkpoint, data, batch norm, seed, spec).

``RUN/robustness/<key>/`` holds ``robustness.json`` (the stored result), ``robustness.md``, ``robustness.csv``
and a plot. The key names the checkpoint and a digest of its weights, a digest of the test data (the
config's data fields and, for data read from a folder, the listing of its files), the batch norm, the attack
seed and :meth:`~robustdml.robustness.spec.AttackSpec.key`, so changing any of them (eps, attacks, a
member, an option, retraining, ``test_per_class``, images added to a folder, ``--bn``) never reuses an old
result. A stored result that cannot be read (a torn write, a full disk) is computed again, and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from robustdml.engine.config import TrainConfig
from robustdml.engine.evaluate import checkpoint_to_load, load_run
from robustdml.engine.run_dir import RunDirectory, lock_run_dir
from robustdml.files import real_subfolder
from robustdml.robustness import render
from robustdml.robustness.result import ResultFormatError, RobustnessResult
from robustdml.robustness.spec import AttackProtocol

# The config fields that decide which test items an evaluation sees.
DATA_FIELDS = ("dataset", "data_root", "image_size", "test_per_class")
RESULT_FILE = "robustness.json"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_listing_digest(root: Path) -> str:
    """A digest of every file under ``root`` (relative path, size, modification time): adding, removing or
    replacing an image changes it, reading the images does not."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            info = path.stat()
            digest.update(f"{path.relative_to(root)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def data_digest(config: TrainConfig) -> str:
    """What decides the test data of a run: its data fields and, when its data root is a folder, its files."""
    values = {name: getattr(config, name) for name in DATA_FIELDS}
    if config.data_root and Path(config.data_root).is_dir():
        values["files"] = folder_listing_digest(Path(config.data_root))
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class RunSource:
    """A run directory opened once: its config, the checkpoint file an evaluation loads and the digests."""

    path: Path
    checkpoint: str
    checkpoint_file: Path
    weights: str
    data: str

    @classmethod
    def open(cls, run_path, checkpoint: str = "best") -> "RunSource":
        run = RunDirectory.open(run_path)
        config = TrainConfig.load(run.config_path, run_directory=True).resolved()
        used = checkpoint_to_load(run, config, checkpoint)
        path = run.best_checkpoint if used == "best" else run.last_checkpoint
        return cls(Path(run_path), checkpoint, path, file_digest(path), data_digest(config))

    def key(self, protocol: AttackProtocol, seed: int, bn: str = "clean") -> str:
        return (f"{self.checkpoint_file.stem}-{self.weights[:10]}-data-{self.data[:8]}-bn-{bn}-seed{seed}"
                f"-spec-{protocol.spec.key()}")

    def folder(self, protocol: AttackProtocol, seed: int, bn: str = "clean") -> Path:
        return self.path / "robustness" / self.key(protocol, seed, bn)


def robustness_key(run_path: Path, protocol: AttackProtocol, seed: int, checkpoint: str = "best",
                   bn: str = "clean") -> str:
    """The folder name of a result (see the module docstring)."""
    return RunSource.open(run_path, checkpoint).key(protocol, seed, bn)


def robustness_folder(run_path: Path, protocol: AttackProtocol, seed: int, checkpoint: str = "best",
                      bn: str = "clean") -> Path:
    return RunSource.open(run_path, checkpoint).folder(protocol, seed, bn)


def stored_result(folder: Path) -> Optional[RobustnessResult]:
    """The result stored in ``folder``, or None when there is none or it cannot be read (then it says which
    file and why on stderr: the caller computes it again)."""
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        return RobustnessResult.from_dict(json.loads(path.read_text()), source=str(path))
    except (ValueError, ResultFormatError, UnicodeDecodeError) as error:
        print(f"robustdml: the stored result {path} cannot be read ({error}); computing it again",
              file=sys.stderr)
        return None


def robustness_for(run_path: Path, protocol: AttackProtocol, seed: int, device: str = "auto",
                   progress: bool = True, checkpoint: str = "best", bn: str = "clean",
                   source: Optional[RunSource] = None) -> RobustnessResult:
    """The run's robustness under ``protocol`` with attack seed ``seed``, computed once and stored.

    The run directory is locked while the result is computed (one process at a time); a result another
    process stored meanwhile is used."""
    from robustdml.robustness.evaluate import evaluate_robustness

    source = source or RunSource.open(run_path, checkpoint)
    folder = source.folder(protocol, seed, bn)
    found = stored_result(folder)
    if found is not None:
        return found
    with lock_run_dir(run_path):
        found = stored_result(folder)
        if found is not None:
            return found
        loaded = load_run(run_path, checkpoint=checkpoint, device=device, distribution=bn)
        result = evaluate_robustness(loaded.model, loaded.splits.test, protocol.spec, seed=seed,
                                     batch_size=loaded.config.eval_batch_size, device=loaded.device,
                                     progress=progress)
        result.settings.source = {"run": str(run_path), **loaded.describe(), "weights_sha256": source.weights,
                                  "data_digest": source.data}
        render.write(result, real_subfolder(real_subfolder(run_path, "robustness"), folder.name))
    return result
